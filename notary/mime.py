"""The raw-bytes multipart splitter (RFC 2046 §5.1.1): where each body part lies.

The one boundary splitter of the project: certmail's MIME reader
(:mod:`certmail.mime`) and the relay's content checks
(:mod:`notary.relay.content`) both use it. A pure format module: it imports
nothing of the service, reads any buffer with ``find`` (``bytes``, ``mmap``)
by offsets and never copies the body, so a message of hundreds of megabytes
is split in place.

RFC 2046 §5.1.1: a delimiter line is ``--`` boundary at the very start of the
body or right after a CRLF (the CRLF belongs to the delimiter, not to the part
before it), then optional linear white space and CRLF; the close delimiter
has ``--`` after the boundary, and the CRLF after it may be missing at the end
of the body. Delimiters are found by searching the literal ``CRLF--boundary``
(``find`` of a fixed string, linear), and the start of the body is checked
on its own, never with a regular expression whose ``^`` alternative would stop
the engine from searching the literal.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

__all__ = ["MAX_BOUNDARY", "Buffer", "Delimiter", "Split", "delimiters", "split"]

#: RFC 2046 §5.1.1 allows 1-70 characters; longer ones seen in the wild are read up to this.
MAX_BOUNDARY = 200


class Buffer(Protocol):
    """What the splitter reads: ``bytes``, ``bytearray`` or ``mmap.mmap``."""

    def find(self, sub: bytes, start: int = ..., end: int = ..., /) -> int: ...

    def rfind(self, sub: bytes, start: int = ..., end: int = ..., /) -> int: ...

    def __getitem__(self, index: slice, /) -> bytes: ...

    def __len__(self) -> int: ...


@dataclass(frozen=True)
class Delimiter:
    """A delimiter line: from ``start`` (its CRLF, or the body start) to ``after`` its CRLF."""

    start: int
    after: int
    close: bool


@dataclass(frozen=True)
class Split:
    """The body parts of a multipart body: (start, end) offsets into the buffer."""

    parts: list[tuple[int, int]]
    #: Whether the close delimiter was found (False: the body is truncated).
    closed: bool


def _line_end(buf: Buffer, pos: int, end: int, *, close: bool) -> int:
    """The offset past the delimiter line's CRLF after ``pos``, or -1 if this is no delimiter.

    Linear white space may come before the CRLF; a close delimiter may end the body.
    """
    i = pos
    while i < end and buf[i : i + 1] in (b" ", b"\t"):
        i += 1
    if buf[i : i + 2] == b"\r\n" and i + 2 <= end:
        return i + 2
    if close and i == end:
        return end
    return -1


def delimiters(
    buf: Buffer, boundary: bytes, start: int = 0, end: int | None = None
) -> Iterator[Delimiter]:
    """The delimiter lines of ``boundary`` in ``buf[start:end]``, in order, up to the close."""
    end = len(buf) if end is None else end
    dash = b"--" + boundary
    needle = b"\r\n" + dash
    if buf[start : start + len(dash)] == dash:
        pos = start - 2  # as if the body began with the CRLF the delimiter owns
    else:
        pos = buf.find(needle, start, end)
    while pos != -1 and pos < end:
        at = pos + len(needle)
        close = buf[at : at + 2] == b"--"
        after = _line_end(buf, at + 2 if close else at, end, close=close)
        if after != -1:
            yield Delimiter(max(pos, start), after, close)
            if close:
                return
            pos = buf.find(needle, after, end)
        else:
            pos = buf.find(needle, at, end)


def split(
    buf: Buffer,
    boundary: bytes,
    start: int = 0,
    end: int | None = None,
    *,
    max_parts: int | None = None,
) -> Split:
    """Where the body parts of the multipart body ``buf[start:end]`` lie (RFC 2046 §5.1.1).

    The preamble before the first delimiter and the epilogue after the close
    are not parts. ``boundary`` must be 1 to :data:`MAX_BOUNDARY` bytes
    (ValueError otherwise). With ``max_parts`` the search stops once more
    parts than that were found (the result then has ``max_parts + 1`` parts
    and is not closed), so a hostile body costs no more than that.
    """
    if not 0 < len(boundary) <= MAX_BOUNDARY:
        raise ValueError("a multipart boundary must have 1 to 200 characters")
    parts: list[tuple[int, int]] = []
    part_start: int | None = None
    for d in delimiters(buf, boundary, start, end):
        if part_start is not None:
            parts.append((part_start, d.start))
            if max_parts is not None and len(parts) > max_parts:
                return Split(parts, closed=False)
        if d.close:
            return Split(parts, closed=True)
        part_start = d.after
    return Split(parts, closed=False)
