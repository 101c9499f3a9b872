"""The message file written and read past the page cache (certmail/directio.py): the
same bytes as ordinary I/O, at every size around the buffer and block boundaries,
with the DKIM room (``seek``) before them; and ordinary I/O with the fast paths
switched off (``CERTMAIL_REFERENCE_ONLY``)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from certmail.directio import ALIGN, BUFFER, DirectWriter, read_chunks

SIZES = [0, 1, ALIGN - 1, ALIGN, ALIGN + 1, BUFFER - 1, BUFFER, BUFFER + ALIGN + 7, 2 * BUFFER + 1]


def _roundtrip(path: Path, size: int, room: int) -> bool:
    data = os.urandom(size)
    with DirectWriter(path) as w:
        if room:
            w.seek(room)
        # pieces of odd sizes, as the armor writer hands them over
        for i in range(0, size, 999_983):
            assert w.write(data[i : i + 999_983]) == len(data[i : i + 999_983])
        direct = w.direct is not None
    want = bytes(room) + data
    assert path.read_bytes() == want
    assert b"".join(read_chunks(path, 1 << 20)) == want
    return direct


@pytest.mark.parametrize("size", SIZES)
def test_direct_writes_and_reads_the_exact_bytes(tmp_path: Path, size: int) -> None:
    assert _roundtrip(tmp_path / "m.eml", size, 0)  # the test directory's ext4 takes O_DIRECT
    assert _roundtrip(tmp_path / "d.eml", size, 613)


def test_ordinary_io_with_the_fast_paths_off(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CERTMAIL_REFERENCE_ONLY", "1")
    assert not _roundtrip(tmp_path / "r.eml", BUFFER + 5, 17)


def test_seek_only_before_the_first_write(tmp_path: Path) -> None:
    with DirectWriter(tmp_path / "m.eml") as w:
        w.write(b"x")
        with pytest.raises(ValueError):
            w.seek(10)
