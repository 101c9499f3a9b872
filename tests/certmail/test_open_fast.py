"""The pieces `certmail open` of big messages is fast with (issue 16): the canonical
check fed in pieces, the base64 fast path (pybase64) against binascii, the readers
gpg is fed from."""

from __future__ import annotations

import base64
import random

import pytest

import certmail.mime as mime
from certmail.fileio import ChunkReader, RangeReader
from certmail.mime import CanonicalCheck, decode_base64, is_canonical
from keys.errors import MalformedError


def test_canonical_check_fed_in_pieces_agrees_with_the_whole() -> None:
    cases = [b"a\r\nb\r\n", b"a\nb", b"\n", b"\r\n", b"\r", b"a\r\r\n", b"\n\r", b"x\r\n\n"]
    for data in cases:
        whole = data.count(b"\n") == data.count(b"\r\n")
        assert is_canonical(data) is whole
        for i in range(len(data) + 1):
            for j in range(i, len(data) + 1):
                check = CanonicalCheck()
                for piece in (data[:i], data[i:j], data[j:]):
                    check.update(piece)
                assert check.ok is whole, (data, i, j)


def _decoded(text: bytes) -> bytes | str:
    out: list[bytes] = []
    try:
        decode_base64(text, 0, len(text), out.append)
    except MalformedError as e:
        return str(e)
    return b"".join(out)


@pytest.mark.parametrize("chunk", [7, 64, 1 << 20])
def test_base64_fast_path_decodes_as_binascii(chunk: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """Line breaks, garbage, an "=" in the middle (binascii stops there: the fast path
    is not taken), partial groups: the same bytes or the same error either way."""
    assert mime._pybase64 is not None
    monkeypatch.setattr(mime, "DECODE_CHUNK", chunk)
    rnd = random.Random(16)
    alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    texts = [b"", b"QUJD\r\n", b"QQ==QQ==\r\n", b"QUJ\r\n", b"QUJD=\r\n", b"Q\r\n"]
    for _ in range(300):
        raw = bytearray(base64.encodebytes(rnd.randbytes(rnd.randint(0, 600))))
        for _ in range(rnd.randint(0, 4)):
            raw.insert(rnd.randint(0, len(raw)), rnd.choice(b"=\r\n \t-*\x00\xff" + alphabet))
        texts.append(bytes(raw).replace(b"\n", b"\r\n"))
    fast = [_decoded(t) for t in texts]
    monkeypatch.setenv("CERTMAIL_REFERENCE_ONLY", "1")
    assert [_decoded(t) for t in texts] == fast


def test_chunk_reader_reads_what_the_chunks_hold() -> None:
    with ChunkReader(iter([b"abc", b"", b"defgh"])) as r:
        assert r.read(2) == b"ab" and r.read(10) == b"c" and r.read(3) == b"def"
        assert r.read() == b"gh" and r.read(5) == b""

    def failing():  # type: ignore[no-untyped-def]
        yield b"x"
        raise MalformedError("bad armor")

    r = ChunkReader(failing())
    assert r.read(1) == b"x"
    with pytest.raises(MalformedError):
        r.read(1)


def test_range_reader_reads_the_range_in_steps(monkeypatch: pytest.MonkeyPatch) -> None:
    import certmail.fileio as fileio

    monkeypatch.setattr(fileio, "RANGE_STEP", 4)
    r = RangeReader(b"0123456789", 2, 9)
    assert [r.read(1) for _ in range(4)] == [b"2345", b"678", b"", b""]
