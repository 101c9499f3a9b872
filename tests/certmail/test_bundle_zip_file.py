"""The bundle zip written from a file (message.eml as a FileMember, read in pieces) is
byte for byte the one written from bytes, and reading it back in pieces catches a
changed byte or a wrong CRC-32 (certmail/bundle/zipio.py)."""

from __future__ import annotations

import hashlib
import os
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from certmail.bundle.layout import CHAIN, MESSAGE, VKEY
from certmail.bundle.zipio import PIECE, FileMember, same_members, write_members, write_members_to
from certmail.mime import FileBuffer
from keys.errors import MalformedError

#: Two whole pieces and a part of a third: the piecewise paths meet every boundary case.
BIG = 2 * PIECE + 12345


def _files(message: bytes | FileMember) -> dict[str, bytes | FileMember]:
    return {MESSAGE: message, VKEY: b"origin+0123abcd+AQ==\n", CHAIN: b"x" * 70_000}


@pytest.fixture
def fds() -> Iterator[list[int]]:
    """Descriptors a test opens, closed after it."""
    opened: list[int] = []
    yield opened
    for fd in opened:
        os.close(fd)


def _written(
    tmp_path: Path, message: bytes, fds: list[int]
) -> tuple[Path, dict[str, bytes | FileMember]]:
    src = tmp_path / "message.eml"
    src.write_bytes(message)
    out = tmp_path / "out.zip"
    fds.append(os.open(src, os.O_RDONLY))
    files = _files(FileMember(FileBuffer(fds[-1])))
    with out.open("w+b") as f:
        size = write_members_to(f, files)
    assert size == out.stat().st_size
    return out, files


def test_from_a_file_as_from_bytes(tmp_path: Path, fds: list[int]) -> None:
    message = os.urandom(BIG)
    out, files = _written(tmp_path, message, fds)
    member = files[MESSAGE]
    assert isinstance(member, FileMember)
    assert member.sums() == (hashlib.sha256(message).digest(), zlib.crc32(message))
    assert out.read_bytes() == write_members(_files(message))  # type: ignore[arg-type]
    with out.open("rb") as f:
        assert same_members(FileBuffer(f.fileno()), files)
        assert same_members(FileBuffer(f.fileno()), _files(message))


def test_a_changed_byte_or_crc_is_caught(tmp_path: Path, fds: list[int]) -> None:
    message = os.urandom(BIG)
    out, files = _written(tmp_path, message, fds)
    raw = bytearray(out.read_bytes())
    start = raw.index(message[:64])
    for pos in (start, start + PIECE, start + BIG - 1):  # first, a piece's first, last byte
        changed = bytearray(message)
        changed[pos - start] ^= 1
        with out.open("rb") as f:
            assert not same_members(FileBuffer(f.fileno()), _files(bytes(changed)))
    bad = bytearray(raw)
    bad[start + PIECE] ^= 1  # the zip's copy changed: its CRC-32 no longer holds
    (tmp_path / "bad.zip").write_bytes(bad)
    with (tmp_path / "bad.zip").open("rb") as f, pytest.raises(MalformedError, match="CRC-32"):
        same_members(FileBuffer(f.fileno()), files)
    assert struct.unpack_from("<L", raw, 14)[0] == zlib.crc32(message)  # local header


def test_only_message_eml_is_written_from_a_file(tmp_path: Path) -> None:
    src = tmp_path / "m"
    src.write_bytes(b"x" * 10)
    with src.open("rb") as f, (tmp_path / "o").open("wb") as o:
        member = FileMember(FileBuffer(f.fileno()))
        with pytest.raises(ValueError, match=r"only message\.eml"):
            write_members_to(o, {VKEY: member})
        with pytest.raises(ValueError, match=r"only message\.eml"):
            write_members_to(o, {MESSAGE: member}, stored_up_to=-1)
