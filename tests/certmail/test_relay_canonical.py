"""The relay's CRLF check and hash, over bytes and over a file read in pieces."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from certmail.relay_client import canonical_sha256
from certmail.smtpdata import CHUNK


def _both(tmp_path: Path, data: bytes) -> list[tuple[str, int]]:
    f = tmp_path / "m.eml"
    f.write_bytes(data)
    return [canonical_sha256(data), canonical_sha256(f)]


def test_a_crlf_split_between_two_pieces_is_one_line_end(tmp_path: Path) -> None:
    data = b"a" * (CHUNK - 1) + b"\r\n" + b"b" * 10 + b"\r\n"  # CR ends piece one
    want = (hashlib.sha256(data).hexdigest(), len(data))
    assert _both(tmp_path, data) == [want, want]


@pytest.mark.parametrize(
    "data",
    [
        b"a" * CHUNK + b"\nb\r\n",  # a bare LF starting the second piece
        b"a" * (CHUNK - 1) + b"\r\r\nb\n\r\n",  # a bare LF later in it
        b"line\r\nno end",
        b"line\r\n\r",
        b"",
    ],
)
def test_a_bare_lf_or_a_missing_final_crlf_is_refused(tmp_path: Path, data: bytes) -> None:
    f = tmp_path / "m.eml"
    f.write_bytes(data)
    for source in (data, f):
        with pytest.raises(ValueError, match="CRLF"):
            canonical_sha256(source)
