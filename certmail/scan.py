"""Virus scanning with ClamAV's daemon, clamd, over its socket protocol.

Implements the clamd commands described in clamd(8): ``zVERSION``, ``zPING``
and ``zINSTREAM`` (the data follows as chunks, each prefixed with its length
as a 4-byte unsigned big-endian integer, ended by a zero-length chunk; the
reply is ``stream: OK``, ``stream: <signature> FOUND`` or ``<reason> ERROR``).
The ``z`` prefix makes every command and reply NUL-terminated.

Files are streamed in chunks, never read whole. An unreachable clamd is a
:class:`~keys.errors.TemporaryError`; what to do without a scanner (warn, or
refuse with ``--require-scan``) is the caller's decision.
"""

from __future__ import annotations

import socket
import struct
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from keys.errors import Error, NotFoundError, TemporaryError

CHUNK_SIZE = 1 << 20
MAX_REPLY = 64 * 1024

# Where Debian's clamav-daemon puts its socket (LocalSocket in clamd.conf).
DEFAULT_SOCKETS = (Path("/var/run/clamav/clamd.ctl"), Path("/run/clamav/clamd.ctl"))

START_HINT = (
    "start clamd (systemctl start clamav-daemon) or: certmail config set clamd unix:///PATH"
)


@dataclass(frozen=True)
class ScanVerdict:
    """The result of one scan.

    ``signature`` names what was found (``None`` when clean); ``engine`` is
    clamd's VERSION answer, ``ClamAV <engine>/<signature db version>/<db date>``.
    """

    clean: bool
    signature: str | None
    engine: str | None


def parse_address(address: str) -> tuple[int, str | tuple[str, int]]:
    """``unix:///path`` (or an absolute path) or ``tcp://host:port`` -> family, address."""
    if address.startswith("/"):
        return socket.AF_UNIX, address
    parts = urlsplit(address)
    if parts.scheme == "unix" and parts.path:
        return socket.AF_UNIX, parts.path
    if parts.scheme == "tcp" and parts.hostname:
        try:
            port = parts.port or 3310
        except ValueError as e:
            raise Error(f"bad clamd address {address!r}: {e}") from e
        return socket.AF_INET6 if ":" in parts.hostname else socket.AF_INET, (parts.hostname, port)
    raise Error(
        f"bad clamd address {address!r}: use unix:///PATH or tcp://HOST:PORT",
        hint="certmail config set clamd unix:///run/clamav/clamd.ctl",
    )


class Scanner:
    """A clamd reachable at ``address`` (``unix:///path`` or ``tcp://host:port``)."""

    def __init__(self, address: str, *, timeout: float = 60.0) -> None:
        self.address = address
        self.timeout = timeout
        self._family, self._sockaddr = parse_address(address)
        self._version: str | None = None

    @classmethod
    def from_settings(cls, clamd: str | None) -> Scanner | None:
        """The configured scanner, else Debian's default socket if present, else ``None``."""
        if clamd:
            return cls(clamd)
        for path in DEFAULT_SOCKETS:
            if path.is_socket():
                return cls(f"unix://{path}")
        return None

    # -- protocol --------------------------------------------------------------

    def _connect(self) -> socket.socket:
        sock = socket.socket(self._family, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self._sockaddr)
        except OSError as e:
            sock.close()
            raise TemporaryError(
                f"clamd is not reachable at {self.address}: {e.strerror or e}",
                hint=START_HINT,
            ) from e
        return sock

    @staticmethod
    def _read_reply(sock: socket.socket) -> str:
        buf = bytearray()
        while b"\0" not in buf and len(buf) < MAX_REPLY:
            chunk = sock.recv(4096)
            if not chunk:
                break
            buf += chunk
        return bytes(buf).split(b"\0", 1)[0].decode("utf-8", "replace").strip()

    def _command(self, command: bytes) -> str:
        sock = self._connect()
        try:
            sock.sendall(b"z" + command + b"\0")
            return self._read_reply(sock)
        except OSError as e:
            raise TemporaryError(f"clamd at {self.address} failed: {e}", hint=START_HINT) from e
        finally:
            sock.close()

    def ping(self) -> None:
        """Raise :class:`TemporaryError` unless clamd answers ``PONG``."""
        reply = self._command(b"PING")
        if reply != "PONG":
            raise TemporaryError(f"clamd at {self.address} answered {reply!r} to PING")

    def version(self) -> str:
        """clamd's VERSION: ``ClamAV 1.0.3/27100/Mon Nov 20 09:27:18 2023``."""
        if self._version is None:
            reply = self._command(b"VERSION")
            if not reply.startswith("ClamAV"):
                raise TemporaryError(f"clamd at {self.address} answered {reply!r} to VERSION")
            self._version = reply
        return self._version

    def _verdict(self, reply: str, what: str) -> ScanVerdict:
        if reply.endswith(" ERROR"):
            reason = reply.removesuffix(" ERROR").strip()
            if "size limit" in reason.lower():
                raise Error(
                    f"{what} is larger than clamd accepts ({reason})",
                    hint="raise StreamMaxLength (and MaxScanSize, MaxFileSize) in clamd.conf",
                )
            raise TemporaryError(f"clamd could not scan {what}: {reason}", hint=START_HINT)
        body = reply.split(": ", 1)[1] if ": " in reply else reply
        if body == "OK":
            return ScanVerdict(clean=True, signature=None, engine=self._version)
        if body.endswith(" FOUND"):
            return ScanVerdict(
                clean=False, signature=body.removesuffix(" FOUND").strip(), engine=self._version
            )
        raise TemporaryError(f"clamd gave an unexpected answer for {what}: {reply!r}")

    def _instream(self, chunks: list[bytes] | None, path: Path | None, what: str) -> ScanVerdict:
        self.version()
        sock = self._connect()
        try:
            try:
                sock.sendall(b"zINSTREAM\0")
                if path is not None:
                    with open(path, "rb") as f:
                        while chunk := f.read(CHUNK_SIZE):
                            sock.sendall(struct.pack(">I", len(chunk)) + chunk)
                else:
                    for chunk in chunks or []:
                        for i in range(0, len(chunk), CHUNK_SIZE):
                            part = chunk[i : i + CHUNK_SIZE]
                            sock.sendall(struct.pack(">I", len(part)) + part)
                sock.sendall(struct.pack(">I", 0))
            except (BrokenPipeError, ConnectionResetError):
                # clamd stops reading once a limit is hit; its reply says why.
                pass
            try:
                reply = self._read_reply(sock)
            except OSError as e:
                raise TemporaryError(f"clamd at {self.address} failed: {e}", hint=START_HINT) from e
        except TimeoutError as e:
            raise TemporaryError(
                f"clamd at {self.address} timed out scanning {what}", hint=START_HINT
            ) from e
        finally:
            sock.close()
        if not reply:
            raise TemporaryError(
                f"clamd at {self.address} closed the connection scanning {what}", hint=START_HINT
            )
        return self._verdict(reply, what)

    def scan_file(self, path: Path) -> ScanVerdict:
        """Scan a file, streamed to clamd in chunks (INSTREAM)."""
        path = Path(path)
        if not path.is_file():
            raise NotFoundError(f"no such file: {path}")
        return self._instream(None, path, str(path))

    def scan_bytes(self, data: bytes) -> ScanVerdict:
        """Scan bytes in memory (INSTREAM)."""
        return self._instream([data], None, f"{len(data)} bytes")
