"""The DATA of an SMTP transaction (RFC 5321 §4.1.1.4): a CRLF message streamed in
chunks, dot-stuffed (§4.5.2) as it goes, and the terminating ``.`` line."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from .directio import read_chunks

__all__ = ["CHUNK", "DotStuffer", "chunks", "dot_stuff"]

#: How much of the message is read and sent at a time.
CHUNK = 1 << 20


class DotStuffer:
    """Dot-stuffing (RFC 5321 §4.5.2) over a CRLF message streamed in chunks.

    A chunk may end anywhere (between a LF and the dot after it): only
    whether the next byte starts a line is carried over, so a chunk without a
    dot (all of an armored body: base64 has none) is passed on as it is, not copied,
    after one memchr (a search for LF-dot stops at every line end).
    """

    def __init__(self) -> None:
        self.line_start = True  # the next byte fed starts a line

    def feed(self, chunk: bytes) -> bytes:
        if not chunk:
            return chunk
        if b"." in chunk:  # one memchr; an armored body has no dot at all
            chunk = chunk.replace(b"\n.", b"\n..")
        if self.line_start and chunk[:1] == b".":
            chunk = b"." + chunk
        self.line_start = chunk[-1:] == b"\n"
        return chunk

    def end(self) -> bytes:
        tail = b"" if self.line_start else b"\r\n"
        self.line_start = True
        return tail + b".\r\n"


def dot_stuff(data: bytes) -> bytes:
    """``data`` as it travels after DATA, terminator included (for tests)."""
    d = DotStuffer()
    return d.feed(data) + d.end()


def chunks(source: Path | bytes) -> Iterator[bytes]:
    """``source`` (bytes, or a file read as it goes) in pieces of :data:`CHUNK` bytes."""
    if isinstance(source, bytes):
        view = memoryview(source)
        for i in range(0, len(source), CHUNK):
            yield bytes(view[i : i + CHUNK])
        return
    yield from read_chunks(source, CHUNK)  # past the page cache where it can
