"""notary.mime: the one multipart splitter (RFC 2046 §5.1.1), used by certmail and the relay."""

from __future__ import annotations

import mmap
import re
from pathlib import Path

import pytest

from notary.mime import split


def regex_split(body: bytes, boundary: bytes) -> list[bytes] | None:
    """The splitter this module replaced (a regex), kept here as the oracle."""
    pattern = re.compile(b"(?:^|\r\n)" + re.escape(b"--" + boundary) + b"(--)?[ \t]*(?:\r\n|$)")
    parts: list[bytes] = []
    start: int | None = None
    for m in pattern.finditer(body):
        if start is not None:
            parts.append(body[start : m.start()])
        if m.group(1):
            return parts
        start = m.end()
    return None


def pieces(body: bytes, boundary: bytes) -> list[bytes] | None:
    found = split(body, boundary)
    return [body[s:e] for s, e in found.parts] if found.closed else None


BODIES = [
    b"--b\r\nA\r\n--b--\r\n",
    b"preamble\r\n--b\r\nA\r\n--b\r\nB\r\n--b--\r\nepilogue\r\n",
    b"--b \t\r\nA\r\n--b\t\r\n\r\nB\r\n\r\n--b--",  # padding; close at the very end
    b"--b\r\nA\r\n--bx\r\nstill A\r\n--b--\r\n",  # --bx is not a delimiter
    b"--b\r\nA--b\r\n--b--\r\n",  # --b not after CRLF is data
    b"--b\r\n\r\n--b\r\n\r\n--b--\r\n",  # empty parts
    b"--b\r\nA\r\n--b\r\n",  # no close: truncated
    b"x--b\r\nA\r\n--b--\r\n",  # the body does not start with the delimiter
    b"",
]


@pytest.mark.parametrize("body", BODIES)
def test_agrees_with_the_regex_it_replaced(body: bytes) -> None:
    assert pieces(body, b"b") == regex_split(body, b"b")


def test_offsets_into_a_larger_buffer() -> None:
    head = b"Content-Type: multipart/mixed; boundary=b\r\n\r\n"
    body = b"--b\r\nA\r\n--b\r\nBB\r\n--b--\r\n"
    buf = head + body + b"--b\r\nnot ours\r\n"
    found = split(buf, b"b", len(head), len(head) + len(body))
    assert found.closed
    assert [buf[s:e] for s, e in found.parts] == [b"A", b"BB"]


def test_delimiter_at_the_start_offset_only_counts_there() -> None:
    buf = b"xx--b\r\nA\r\n--b--\r\n"
    assert [buf[s:e] for s, e in split(buf, b"b", 2).parts] == [b"A"]
    assert split(buf, b"b", 0).parts == []  # "xx--b" is preamble text


def test_max_parts_stops_early() -> None:
    body = b"".join(b"--b\r\n%d\r\n" % i for i in range(100)) + b"--b--\r\n"
    found = split(body, b"b", max_parts=16)
    assert not found.closed and len(found.parts) == 17
    assert split(body, b"b", max_parts=100).closed


def test_reads_an_mmap_in_place(tmp_path: Path) -> None:
    body = b"--b\r\n" + b"x" * (1 << 20) + b"\r\n--b\r\nB\r\n--b--\r\n"
    f = tmp_path / "m"
    f.write_bytes(body)
    with f.open("rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as mm:
        found = split(mm, b"b")
        assert found.closed and [e - s for s, e in found.parts] == [1 << 20, 1]


@pytest.mark.parametrize("boundary", [b"", b"x" * 201])
def test_unusable_boundary(boundary: bytes) -> None:
    with pytest.raises(ValueError):
        split(b"--\r\n", boundary)
