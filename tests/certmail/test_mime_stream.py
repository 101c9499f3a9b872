"""certmail.mime read in place: the file buffer, streamed decoding, line-end mending.

Big messages are read through :class:`FileBuffer` (pread and mapped windows,
never the whole file) and their bodies decoded a chunk at a time: each of
these must give exactly what the whole-bytes reading gives.
"""

from __future__ import annotations

import base64
import os
import random
from pathlib import Path

import pytest

import certmail.mime as mime
from certmail.mime import (
    FileBuffer,
    canonical_chunks,
    canonicalize,
    decode_base64,
    decode_body,
    decode_to,
    is_canonical,
    parse_entity,
    parts,
)
from keys.errors import MalformedError


@pytest.fixture
def small_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Windows and chunks of a few KB, so that every boundary case is crossed."""
    monkeypatch.setattr(mime, "DECODE_CHUNK", 4096)
    monkeypatch.setattr(mime, "FIND_WINDOW", 70_000)
    monkeypatch.setattr(mime, "CANON_CHUNK", 4096)


def file_buffer(tmp_path: Path, data: bytes) -> FileBuffer:
    p = tmp_path / "buf"
    p.write_bytes(data)
    fd = os.open(p, os.O_RDONLY)
    return FileBuffer(fd)


@pytest.mark.usefixtures("small_chunks")
def test_file_buffer_finds_what_bytes_find(tmp_path: Path) -> None:
    rng = random.Random(7)
    data = bytes(rng.choice(b"ab\r\n-") for _ in range(300_000))
    fb = file_buffer(tmp_path, data)
    try:
        assert len(fb) == len(data) and fb[10:20] == data[10:20] and fb[5:2] == b""
        for sub in (b"\r\n--ab", b"ba-a", b"\r\n\r\n", b"zz"):
            for start, end in ((0, len(data)), (69_990, 140_020), (123, 4097), (0, 0)):
                assert fb.find(sub, start, end) == data.find(sub, start, end)
                assert fb.rfind(sub, start, end) == data.rfind(sub, start, end)
    finally:
        os.close(fb.fd)


@pytest.mark.usefixtures("small_chunks")
def test_streamed_base64_equals_whole(tmp_path: Path) -> None:
    raw = os.urandom(50_000)
    enc = base64.b64encode(raw)
    for width in (76, 64, 73):  # 73: lines that are not whole 4-character groups
        body = b"\r\n".join(enc[i : i + width] for i in range(0, len(enc), width)) + b"\r\n"
        entity = parse_entity(b"Content-Transfer-Encoding: base64\r\n\r\n" + body)
        out: list[bytes] = []
        decode_to(entity, out.append)
        assert b"".join(out) == raw == decode_body(entity)
        assert len(out) > 1  # it really was streamed


@pytest.mark.usefixtures("small_chunks")
def test_streamed_quoted_printable_equals_whole() -> None:
    text = ("caf\u00e9 " * 3000 + "\r\n").encode() * 3
    import binascii

    qp = binascii.b2a_qp(text, istext=False)
    entity = parse_entity(b"Content-Transfer-Encoding: quoted-printable\r\n\r\n" + qp)
    assert decode_body(entity) == binascii.a2b_qp(qp)


def test_truncated_base64_is_malformed() -> None:
    out: list[bytes] = []
    with pytest.raises(MalformedError, match="base64"):
        decode_base64(b"QUJD\r\nRA\r\nQ", 0, 11, out.append)


@pytest.mark.usefixtures("small_chunks")
def test_entities_read_in_place_from_a_file(tmp_path: Path) -> None:
    payload = os.urandom(20_000)
    enc = base64.encodebytes(payload).replace(b"\n", b"\r\n")
    msg = (
        b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n--b\r\n'
        b"Content-Type: text/plain\r\n\r\nhi\r\n--b\r\n"
        b"Content-Transfer-Encoding: base64\r\n\r\n" + enc + b"\r\n--b--\r\n"
    )
    fb = file_buffer(tmp_path, msg)
    try:
        top = parse_entity(fb)
        text, blob = parts(top)
        assert text.body == b"hi" and decode_body(blob) == payload
        assert blob.buf is fb  # offsets into the file, not copies
    finally:
        os.close(fb.fd)


@pytest.mark.usefixtures("small_chunks")
def test_line_ends_mended_in_chunks(tmp_path: Path) -> None:
    data = b"a\nb\r\nc\r" + b"x" * 4088 + b"\r\nd\n" * 3000  # a CR ends the first chunk
    fb = file_buffer(tmp_path, data)
    try:
        assert not is_canonical(fb) and is_canonical(canonicalize(data))
        assert b"".join(canonical_chunks(fb)) == canonicalize(data)
    finally:
        os.close(fb.fd)
