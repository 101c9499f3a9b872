"""DATA as it arrives, straight to a spool file (RFC 5321 §4.1.1.4, §4.5.2; issue 10 item 5).

aiosmtpd gathers a whole message in memory (a list of lines, then joined);
the relay instead reads DATA line by line (the same reader, the same
``<CRLF>.<CRLF>`` end and the same line-length limit as aiosmtpd), removes
the transparency dot (RFC 5321 §4.5.2) and appends the line to a file in
the notary's ``relay/incoming/`` directory. On the way it

- hashes the exact bytes (SHA-256, what the notary notarizes);
- counts them against the size limit (over it: the rest is read and dropped,
  and the reply is ``552``, as aiosmtpd answers);
- notes a CR or LF outside a CRLF pair and a NUL (SMTP smuggling,
  :func:`notary.relay.content.check_line_endings`): the data is still read to
  its real end, then refused;
- notes a failed write (the disk is full): the data is read to its end, then
  ``451``;
- keeps the first ``MAX_HEADER_BYTES + 4`` bytes, where the header section
  must end, so the header checks run without reading the file back.

So a session holds at most one line and one write buffer (1 MiB), whatever
the message's size; a message that fits in the buffer never touches the disk.
The file is only a staging area: the message is durable once
the queue has spooled it (the database), and the file is removed then, or
when the session ends; :func:`clear` empties the directory at start.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from notary.relay.headers import MAX_HEADER_BYTES

log = logging.getLogger("certmail.notary.relay")

WRITE_BUFFER = 1024 * 1024
#: The 5xx replies for data read to its end but not taken (aiosmtpd's wording).
TOO_LONG = "500 Line too long (see RFC5321 4.5.3.1.6)"
TOO_MUCH = "552 Error: Too much mail data"
#: The staging file could not be written (e.g. the disk is full): read to the end, then this.
CANNOT_STORE = "451 4.3.0 Cannot store the message now; try again later"


@dataclass(frozen=True)
class Incoming:
    """One message as received: where its bytes are and what was seen on the way."""

    #: The staging file, or None when the message is small enough to stay in ``data``.
    path: Path | None
    size: int
    sha256: str
    #: The first ``MAX_HEADER_BYTES + 4`` bytes (the header section ends within them).
    head: bytes
    #: ``"CR"``/``"LF"`` when one was seen outside a CRLF pair, else None.
    bare: str | None
    nul: bool
    data: bytes | None = None

    def read(self) -> bytes:
        """The whole message (blocking when it is staged: call it in a thread)."""
        if self.path is None:
            assert self.data is not None
            return self.data
        return self.path.read_bytes()

    def remove(self) -> None:
        if self.path is not None:
            self.path.unlink(missing_ok=True)


class Receiver:
    """Accumulates the lines of one DATA (see the module docstring). A message up to
    ``WRITE_BUFFER`` bytes stays in memory; the staging file is made at the first flush."""

    def __init__(self, directory: Path, limit: int | None) -> None:
        self.directory = directory
        self.path: Path | None = None
        self._file: BinaryIO | None = None
        self._hash = hashlib.sha256()
        self._buf = bytearray()
        self._head = bytearray()
        self.limit = limit
        self.size = 0
        self.too_much = False
        self.too_long = False
        self.write_failed = False
        self._lf = self._cr = self._nul = False

    def line(self, line: bytes) -> None:
        """One line as read, CRLF included (a leading transparency dot still on)."""
        if line[:1] == b".":
            line = line[1:]
        self.size += len(line)
        if self.too_much or self.too_long or self.write_failed:
            return
        if self.limit and self.size > self.limit:
            self.too_much = True
            return
        text = line[:-2]
        if b"\n" in text:
            self._lf = True
        elif b"\r" in text:
            self._cr = True
        if b"\0" in text:
            self._nul = True
        if len(self._head) < MAX_HEADER_BYTES + 4:
            self._head += line[: MAX_HEADER_BYTES + 4 - len(self._head)]
        self._buf += line
        if len(self._buf) >= WRITE_BUFFER:
            self._flush()

    def overlong(self) -> None:
        """A line over the reader's limit: the rest is read and dropped (500)."""
        self.too_long = True

    def _open(self) -> BinaryIO:
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix="data-", dir=self.directory)
        self.path = Path(name)
        return os.fdopen(fd, "wb", buffering=0)

    def _flush(self) -> None:
        if not self._buf:
            return
        self._hash.update(self._buf)
        try:
            if self._file is None:
                self._file = self._open()
            self._file.write(self._buf)
        except OSError as e:  # the rest is still read (never taken as commands), then 451
            log.error("cannot stage DATA in %s: %s", self.directory, e)
            self.write_failed = True
        self._buf.clear()

    def refusal(self) -> str | None:
        """The reply when the data was read but cannot be taken (too long, too much,
        not stored)."""
        if self.too_long:
            return TOO_LONG
        if self.too_much:
            return TOO_MUCH
        if self.write_failed:
            return CANNOT_STORE
        return None

    def finish(self) -> Incoming:
        """The message received (when :meth:`refusal` is None)."""
        bare = "LF" if self._lf else "CR" if self._cr else None
        head = bytes(self._head)
        if self._file is None:  # small: it never left memory
            data = bytes(self._buf)
            self._hash.update(data)
            self._buf.clear()
            return Incoming(None, self.size, self._hash.hexdigest(), head, bare, self._nul, data)
        self._flush()
        self._file.close()
        return Incoming(self.path, self.size, self._hash.hexdigest(), head, bare, self._nul)

    def discard(self) -> None:
        self._buf.clear()
        if self._file is not None:
            self._file.close()
        if self.path is not None:
            self.path.unlink(missing_ok=True)


async def receive(reader: asyncio.StreamReader, receiver: Receiver) -> None:
    """Read DATA up to its final ``<CRLF>.<CRLF>`` into ``receiver`` (as aiosmtpd does)."""
    partial = False
    while True:
        try:
            line = await reader.readuntil(b"\r\n")
        except asyncio.LimitOverrunError as e:
            receiver.overlong()
            await reader.readexactly(e.consumed)
            partial = True
            continue
        if partial:  # the end of an overlong line
            partial = False
            continue
        if line == b".\r\n":
            return
        receiver.line(line)


def clear(directory: Path) -> None:
    """Remove what a previous run left in the staging directory."""
    if directory.is_dir():
        for p in directory.glob("data-*"):
            p.unlink(missing_ok=True)
