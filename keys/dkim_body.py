"""The DKIM body hash of a message file, computed incrementally (RFC 6376).

RFC 6376 §3.4.3 (simple) and §3.4.4 (relaxed) body canonicalization and the
§3.7 body hash (``bh=``, SHA-256), fed in pieces of any size, so that signing
and verifying a message file (:func:`keys.dkim.dkim_sign_file`,
:func:`keys.dkim.dkim_verify_file`) never holds the body in memory. The result
equals dkimpy's for the same bytes (tests).
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any

from keys import fastpath
from keys.errors import MalformedError

__all__ = [
    "MAX_HEADER_BLOCK",
    "SIGNING_CANONICALIZATION",
    "BodyHash",
    "body_hash_file",
    "crlf_only",
    "read_head",
]

_EOL = re.compile(rb"\r?\n")
_TRAILING_WSP = re.compile(rb"[\t ]+\r\n")
_WSP = re.compile(rb"[\t ]+")
_CHUNK = 1 << 20
MAX_HEADER_BLOCK = 256 * 1024
#: The body canonicalization certmail signs with (``c=relaxed/relaxed``).
SIGNING_CANONICALIZATION = b"relaxed"


def crlf_only(data: bytes, start: int, end: int) -> bool:
    """Whether every LF in ``data[start:end]`` follows a CR (no bare LF to rewrite).

    The reference is two counts (LF, CRLF: 0.26 CPU s per 185 MB). Lines of one
    width (armor, base64: the bulk of a big message) take one count of LF: when
    the first line is ``w`` bytes and every ``w``-th byte pair is CR LF, the
    range has no other LF exactly when it holds one LF per line; what follows
    the last whole ``w``-byte line, or a range that is not of that shape, is
    counted the reference way.
    """
    width = data.find(b"\n", start, end) + 1 - start
    if width <= 0:
        return True
    lines = (end - start) // width
    stop = start + lines * width
    if (
        width >= 2
        and lines > 1
        and fastpath.enabled()
        and data[start + width - 2 : stop : width].count(b"\r") == lines
        and data[start + width - 1 : stop : width].count(b"\n") == lines
        and data.count(b"\n", start, stop) == lines
    ):
        start = stop  # else: an LF inside a line; the reference decides
    return data.count(b"\n", start, end) == data.count(b"\r\n", start, end)


class BodyHash:
    """The DKIM body hash (``bh=``, SHA-256) of a body fed in pieces of any size.

    ``canonicalization`` is ``b"relaxed"`` (RFC 6376 §3.4.4) or ``b"simple"``
    (§3.4.3). The result equals dkimpy's for the same body: line ends are
    normalised to CRLF as dkimpy's parser does (a bare LF counts as CRLF), and
    all empty lines at the end are ignored (§3.4.3/§3.4.4; an empty body
    hashes as nothing for relaxed and as one CRLF for simple).

    Pieces are processed up to their last LF; what follows waits for the next
    piece, so whitespace runs and CR LF pairs are never split.
    """

    def __init__(self, canonicalization: bytes = b"relaxed") -> None:
        if canonicalization not in (b"relaxed", b"simple"):
            raise ValueError(f"unknown body canonicalization {canonicalization!r}")
        self.relaxed = canonicalization == b"relaxed"
        self._h = hashlib.sha256()
        self._carry = b""
        self._pending = 0  # CRLFs held back: they count only if a non-empty line follows
        self._hashed = False
        self.size = 0  # canonical bytes hashed so far (pending CRLFs excluded)

    def _canon(self, piece: bytes) -> bytes:
        if not crlf_only(piece, 0, len(piece)):
            piece = _EOL.sub(b"\r\n", piece)
        if self.relaxed and (b" " in piece or b"\t" in piece):
            piece = _WSP.sub(b" ", _TRAILING_WSP.sub(b"\r\n", piece))
        return piece

    def _emit(self, data: bytes | memoryview) -> None:
        if self._pending:
            self._h.update(b"\r\n" * self._pending)
            self.size += 2 * self._pending
            self._pending = 0
        self._h.update(data)
        self.size += len(data)
        self._hashed = True

    def _lines(self, piece: bytes) -> None:
        canon = self._canon(piece)
        end = len(canon)
        while end >= 2 and canon[end - 2 : end] == b"\r\n":
            end -= 2
        if end:
            self._emit(canon[:end] if end != len(canon) else canon)
        self._pending += (len(canon) - end) // 2

    def _canonical(self, data: bytes, start: int, end: int) -> bool:
        """Whether ``data[start:end]`` is already in canonical form (nothing to rewrite)."""
        if not crlf_only(data, start, end):
            return False
        return not self.relaxed or (
            data.find(b" ", start, end) < 0 and data.find(b"\t", start, end) < 0
        )

    def _span(self, data: bytes, start: int, end: int) -> None:
        """Whole lines ``data[start:end]``: hashed in place when already canonical (the
        usual case: base64 and armor lines), without a copy; rewritten otherwise."""
        if not self._canonical(data, start, end):
            self._lines(data[start:end])
            return
        stop = end
        while stop - start >= 2 and data[stop - 2 : stop] == b"\r\n":
            stop -= 2
        if stop > start:
            self._emit(memoryview(data)[start:stop])
        self._pending += (end - stop) // 2

    def update(self, data: bytes) -> None:
        """Feed the next bytes of the body."""
        start = 0
        if self._carry:
            first = data.find(b"\n") + 1
            if not first:
                self._carry += data
                return
            self._lines(self._carry + data[:first])  # the line split across pieces
            self._carry = b""
            start = first
        end = data.rfind(b"\n", start) + 1
        if end > start:
            self._span(data, start, end)
            start = end
        self._carry = data[start:] if start < len(data) else b""

    def digest(self) -> bytes:
        """The SHA-256 of the canonical body (call once, after the last update)."""
        rest = self._carry
        self._carry = b""
        if rest:
            self._emit(self._canon(rest) + b"\r\n")  # a last line without CRLF gets one
        elif self._hashed:
            self._pending = 0  # trailing empty lines collapse into the last line's CRLF
            self._emit(b"\r\n")
        elif not self.relaxed:
            self._pending = 0
            self._emit(b"\r\n")  # simple: an empty body is one CRLF; relaxed: nothing
        return self._h.digest()


def read_head(f: Any) -> tuple[bytes, int]:
    """The header block of a message file (lines up to the first empty one) and the
    offset where its body starts, as dkimpy's parser splits them."""
    head = b""
    while True:
        chunk = f.read(64 * 1024)
        head += chunk
        m = re.search(rb"(?:\A|\n)(\r?\n)", head)
        if m is not None:
            return head[: m.start(1)], m.end(1)
        if not chunk:
            return head, len(head)
        if len(head) > MAX_HEADER_BLOCK:
            raise MalformedError("the message's header block is too large for DKIM")


def body_hash_file(
    path: Path, canonicalization: bytes = b"relaxed", *, tap: Any = None
) -> tuple[bytes, bytes]:
    """(header block, DKIM body hash) of the message in ``path``, streaming the body.

    ``tap`` (e.g. a :mod:`hashlib` object), when given, is fed every byte of the
    file, head and body, in the same pass.
    """
    with open(path, "rb") as f:
        head, body_at = read_head(f)
        f.seek(0)
        start = f.read(body_at)
        if tap is not None:
            tap.update(start)
        bh = BodyHash(canonicalization)
        while chunk := f.read(_CHUNK):
            bh.update(chunk)
            if tap is not None:
                tap.update(chunk)
    return head, bh.digest()
