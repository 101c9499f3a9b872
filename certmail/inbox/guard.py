"""Bounds on what an IMAP server may send: literal size, bytes and time per command.

imaplib (under imapclient) reads a literal whole, however large the server
says it is, and waits for a tagged answer however many untagged lines come
first. :class:`Limits` bounds both, per command: a literal larger than
``max_literal`` is refused before it is read, and a command whose answer
passes ``max_response`` bytes or ``seconds`` is cut off (lines and literals are
read piece by piece, each read bounded by the deadline: a server trickling
bytes times out). Either is an
``imaplib.IMAP4.abort``, which :mod:`certmail.inbox.imap` turns into a
one-line error.
"""

from __future__ import annotations

import imaplib
import time
from dataclasses import dataclass
from typing import Any

from imapclient import IMAPClient
from imapclient.imap4 import IMAP4WithTimeout
from imapclient.tls import IMAP4_TLS

__all__ = ["GuardedIMAPClient", "Limits"]


@dataclass(frozen=True)
class Limits:
    """Per-command bounds (a FETCH of one chunk of a message is one command)."""

    max_literal: int = 4 << 20
    max_response: int = 16 << 20
    seconds: float = 60.0


class _Guard:
    """Mixin over an ``imaplib.IMAP4`` class: every read counts against the command's bounds."""

    limits: Limits
    _left: int
    _deadline: float

    def _arm(self) -> None:
        self._left = self.limits.max_response
        self._deadline = time.monotonic() + self.limits.seconds

    def _spend(self, n: int) -> None:
        self._left -= n
        if self._left < 0:
            raise imaplib.IMAP4.abort(
                f"the server's answer passed {self.limits.max_response >> 20} MB"
                " without ending (a never-ending response)"
            )
        if time.monotonic() > self._deadline:
            raise imaplib.IMAP4.abort(
                f"the server did not finish its answer within {self.limits.seconds:g} s"
            )

    def _command(self, name: str, *args: Any) -> Any:
        self._arm()
        return super()._command(name, *args)  # type: ignore[misc]

    def _tighten(self) -> None:
        """No single read may outlast the command's deadline."""
        left = self._deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("the command's deadline passed")
        sock = getattr(self, "sock", None)
        if sock is not None:
            sock.settimeout(left)

    def read(self, size: int) -> bytes:
        if size > self.limits.max_literal:
            raise imaplib.IMAP4.abort(
                f"the server announced a {size:,}-byte literal, more than the"
                f" {self.limits.max_literal:,} bytes asked for"
            )
        self._spend(size)
        f = self.file  # type: ignore[attr-defined]
        if not hasattr(f, "read1"):
            data: bytes = super().read(size)  # type: ignore[misc]
            return data
        buf = bytearray()
        while len(buf) < size:  # piece by piece: a trickling server meets the deadline
            self._tighten()
            piece = f.read1(min(size - len(buf), 1 << 16))
            if not piece:
                break
            buf += piece
        return bytes(buf)

    def readline(self) -> bytes:
        f = self.file  # type: ignore[attr-defined]
        if not hasattr(f, "peek"):
            line: bytes = super().readline()  # type: ignore[misc]
            self._spend(len(line))
            return line
        buf = bytearray()
        while True:
            self._tighten()
            ahead = f.peek(1)  # what one read of the socket brought, at least a byte
            if not ahead:
                break
            nl = ahead.find(b"\n")
            take = len(ahead) if nl < 0 else nl + 1
            buf += f.read(take)
            self._spend(take)
            if nl >= 0:
                break
        return bytes(buf)


class _GuardedTLS(_Guard, IMAP4_TLS):  # type: ignore[misc]
    def __init__(self, limits: Limits, *args: Any) -> None:
        self.limits = limits
        self._arm()
        super().__init__(*args)


class _GuardedPlain(_Guard, IMAP4WithTimeout):  # type: ignore[misc]
    def __init__(self, limits: Limits, *args: Any) -> None:
        self.limits = limits
        self._arm()
        super().__init__(*args)


class GuardedIMAPClient(IMAPClient):  # type: ignore[misc]
    """An :class:`imapclient.IMAPClient` whose connection keeps :class:`Limits`."""

    def __init__(self, host: str, *, limits: Limits, **kwargs: Any) -> None:
        self._limits = limits
        super().__init__(host, **kwargs)

    def _create_IMAP4(self) -> imaplib.IMAP4:  # imapclient's hook for the connection class
        connect = getattr(self._timeout, "connect", None)
        if self.ssl:
            return _GuardedTLS(self._limits, self.host, self.port, self.ssl_context, connect)
        return _GuardedPlain(self._limits, self.host, self.port, connect)
