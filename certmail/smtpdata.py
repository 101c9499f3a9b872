"""The DATA of an SMTP transaction (RFC 5321 §4.1.1.4): a CRLF message streamed in
chunks, dot-stuffed (§4.5.2) as it goes, and the terminating ``.`` line."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

__all__ = ["CHUNK", "DotStuffer", "chunks", "dot_stuff"]

#: How much of the message is read and sent at a time.
CHUNK = 1 << 20


class DotStuffer:
    """Dot-stuffing (RFC 5321 §4.5.2) over a CRLF message streamed in chunks."""

    def __init__(self) -> None:
        self.carry = b""

    def feed(self, chunk: bytes) -> bytes:
        data = self.carry + chunk
        cut = data.rfind(b"\n") + 1
        self.carry = data[cut:]
        return self._stuff(data[:cut])

    def end(self) -> bytes:
        tail = self._stuff(self.carry)
        self.carry = b""
        if tail and not tail.endswith(b"\r\n"):
            tail += b"\r\n"
        return tail + b".\r\n"

    @staticmethod
    def _stuff(lines: bytes) -> bytes:
        # Each piece starts at a line start.
        if lines.startswith(b"."):
            lines = b"." + lines
        return lines.replace(b"\n.", b"\n..")


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
    with source.open("rb") as f:
        while chunk := f.read(CHUNK):
            yield chunk
