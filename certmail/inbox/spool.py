"""Private temporary copies of received messages: streamed to disk, bounded in size.

A message read from a pipe or a server is written in chunks to a file in a
fresh 0700 directory (the file 0600), never held whole in memory; more than
:data:`certmail.mailfile.MAX_OPEN_SIZE` bytes is refused.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from keys.errors import MalformedError

from ..fileio import private_dir
from ..mailfile import MAX_OPEN_SIZE

__all__ = ["CHUNK", "Spool", "private_dir", "spool_stdin", "spool_stream"]

CHUNK = 1 << 20
_HEADER_START = re.compile(rb"[!-9;-~]+[ \t]*:")  # RFC 5322 §2.2 field name, then a colon


class Spool:
    """A 0600 file being written in chunks, refusing more than ``limit`` bytes."""

    def __init__(self, path: Path, limit: int = MAX_OPEN_SIZE) -> None:
        self.path = path
        self.limit = limit
        self.size = 0
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        self._f = os.fdopen(fd, "wb")

    def write(self, data: bytes) -> None:
        self.size += len(data)
        if self.size > self.limit:
            self.close()
            raise MalformedError(f"the message is larger than {self.limit >> 20} MB")
        self._f.write(data)

    def close(self) -> None:
        self._f.close()


def spool_stream(src: BinaryIO, dest: Path, limit: int = MAX_OPEN_SIZE) -> Path:
    """Copy ``src`` to ``dest`` (created 0600) in chunks; MalformedError past ``limit``."""
    out = Spool(dest, limit)
    try:
        while chunk := src.read(CHUNK):
            out.write(chunk)
    finally:
        out.close()
    return dest


def spool_stdin(on_close: Callable[[Callable[[], None]], object], src: BinaryIO) -> Path:
    """Standard input in a private temporary file for ``certmail open -``.

    ``on_close`` registers the clean-up (Click's ``ctx.call_on_close``).
    """
    d = Path(tempfile.mkdtemp(prefix="certmail-stdin-"))
    on_close(lambda: shutil.rmtree(d, ignore_errors=True))
    path = spool_stream(src, d / "message.eml")
    with open(path, "rb") as f:
        start = f.read(1024)
    if not start:
        raise MalformedError(
            "nothing came on standard input: no message to open",
            hint="pipe a message into it, e.g. certmail open - < message.eml",
        )
    if not (start.startswith(b"From ") or _HEADER_START.match(start)):
        raise MalformedError(
            "what came on standard input is not a mail message"
            " (it does not start with header fields)",
            hint="pipe the raw message (NeoMutt: unset pipe_decode; aerc: :pipe -m)",
        )
    return path
