"""DATA as it arrives, straight to a spool file (RFC 5321 §4.1.1.4, §4.5.2; issue 10 item 5).

aiosmtpd gathers a whole message in memory (a list of lines, then joined);
the relay instead reads DATA as it comes, in blocks of whole lines (the same
``<CRLF>.<CRLF>`` end as aiosmtpd, whose reader splits at CRLF only), removes the
transparency dots (RFC 5321 §4.5.2) and appends the lines to a file in the notary's
``relay/incoming/`` directory. Each block is handled with ``bytes`` methods
(``find``, ``count``, ``replace``), never line by line in Python: a 7 MB
message is some 100 000 lines. On the way it

- refuses a line longer than RFC 5321 §4.5.3.1.6 allows (:data:`LINE_LIMIT`:
  998 octets before the CRLF, the transparency dot not counted), ``500``
  after the real end, since the next hop may refuse it and the relay must not
  rewrite what it notarizes (no splitting, as Postfix's cleanup would);
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

So a session holds at most one read block and one write buffer (1 MiB),
whatever the message's size; a message that fits in the buffer never touches the disk.
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
#: The longest text line taken, in octets before its CRLF, counted as the client means
#: it: after the transparency dot is removed (RFC 5321 §4.5.3.1.6: "1000 octets"
#: with the CRLF, "not counting the leading dot duplicated for transparency"). On
#: the wire a stuffed line may so be 999 octets; aiosmtpd, a common next hop, takes
#: up to 999 + CRLF as sent, so whatever the relay accepts, it can pass on.
LINE_LIMIT = 998
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


def _longest_over(block: bytes, limit: int) -> bool:
    """Whether a line of ``block`` (whole lines, each ending with CRLF) is longer than
    ``limit`` bytes, CRLF not counted; as ``max(map(len, block.split(CRLF))) > limit``.

    No list of lines: from each position the last CRLF within ``limit + 2`` bytes is
    found with ``rfind`` (every line up to it is short enough), so a block of short
    lines costs one search per ``limit`` bytes, not one object per line.
    """
    pos, n, window = 0, len(block), limit + 2
    while pos < n:
        cut = block.rfind(b"\r\n", pos, pos + window)
        if cut < 0:  # the line starting at pos has no CRLF within the limit
            return True
        pos = cut + 2
    return False


class Receiver:
    """Accumulates the lines of one DATA (see the module docstring). A message up to
    ``WRITE_BUFFER`` bytes stays in memory; the staging file is made at the first flush."""

    def __init__(self, directory: Path, limit: int | None, line_limit: int = LINE_LIMIT) -> None:
        self.directory = directory
        #: The longest line (CRLF and transparency dot not counted) taken; a longer
        #: one is refused (500).
        self.line_limit = line_limit
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

    def lines(self, block: bytes) -> None:
        """Whole lines as read: ``block`` starts a line and ends with CRLF (transparency
        dots still on)."""
        if self.too_long or not block:
            return
        data = (block[1:] if block[:1] == b"." else block).replace(b"\r\n.", b"\r\n")
        if _longest_over(data, self.line_limit):  # the lines as meant: dots removed
            self.too_long = True
            return
        if self.too_much or self.write_failed:
            return
        self.size += len(data)
        if self.limit and self.size > self.limit:
            self.too_much = True
            return
        # Every line ends with CRLF, so any other CR or LF is bare (the LF wins, as in
        # content.check_line_endings). Removing the dots changed no CR or LF.
        crlf = block.count(b"\r\n")
        if block.count(b"\n") != crlf:
            self._lf = True
        elif block.count(b"\r") != crlf:
            self._cr = True
        if b"\0" in block:
            self._nul = True
        if len(self._head) < MAX_HEADER_BYTES + 4:
            self._head += data[: MAX_HEADER_BYTES + 4 - len(self._head)]
        self._buf += data
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


async def _piece(reader: asyncio.StreamReader) -> bytes:
    """The next bytes of DATA, never past a ``.CRLF``: up to and with the next one, or as
    much as the reader holds before it (the reader's ``consumed``: no ``.CRLF`` starts
    in those bytes)."""
    try:
        return await reader.readuntil(b".\r\n")
    except asyncio.LimitOverrunError as e:
        return await reader.readexactly(e.consumed)


async def receive(reader: asyncio.StreamReader, receiver: Receiver) -> None:
    """Read DATA up to its final ``<CRLF>.<CRLF>`` into ``receiver`` (as aiosmtpd does).

    Nothing after the final dot is read (a pipelining client's next commands stay
    in ``reader``): each piece ends at a ``.CRLF`` or before one, and it is the end
    when it starts a line. What the pieces bring is handed on in whole lines.
    """
    pending = b""  # the start of a line not yet ended
    skipping = False  # inside an overlong line: dropped up to its CRLF
    while True:
        data = pending + await _piece(reader)
        if skipping:
            cut = data.find(b"\r\n")
            if cut < 0:
                pending = data[-1:] if data.endswith(b"\r") else b""
                continue
            data, skipping = data[cut + 2 :], False
        if data == b".\r\n" or data.endswith(b"\r\n.\r\n"):
            receiver.lines(data[:-3])
            return
        cut = data.rfind(b"\r\n") + 2 if b"\r\n" in data else 0
        receiver.lines(data[:cut])
        pending = data[cut:]
        # Over the limit even with a transparency dot and a CR before its LF: dropped
        # here (bounded memory); a line just over it is refused by receiver.lines().
        if len(pending) > receiver.line_limit + 2:
            receiver.overlong()
            pending, skipping = (b"\r" if pending.endswith(b"\r") else b""), True


def clear(directory: Path) -> None:
    """Remove what a previous run left in the staging directory."""
    if directory.is_dir():
        for p in directory.glob("data-*"):
            p.unlink(missing_ok=True)
