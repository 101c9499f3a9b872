"""certmail.armor: the CRC-24 of OpenPGP armor, libgcrypt's and the reference one."""

from __future__ import annotations

import base64
import os
import subprocess
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from certmail.armor import CRC24_INIT, Crc24, crc24_python, fast_crc24


def test_reference_vectors() -> None:
    # CRC-24/OPENPGP check value (the catalogue's "123456789") and the empty input.
    assert crc24_python(b"123456789") == 0x21CF02
    assert crc24_python(b"") == CRC24_INIT
    c = Crc24()
    c.update(b"123456789")
    assert c.value() == 0x21CF02
    assert c.checksum_line() == b"=" + base64.b64encode(bytes.fromhex("21cf02"))


def test_libgcrypt_is_used_here() -> None:
    # gnupg depends on libgcrypt, so wherever certmail runs gpg it is loadable.
    assert fast_crc24()


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(max_size=300), max_size=8))
def test_chunked_equals_reference(chunks: list[bytes]) -> None:
    c = Crc24()
    for ch in chunks:
        c.update(ch)
    assert c.value() == crc24_python(b"".join(chunks))


def test_checksum_line_matches_gpg_armor(tmp_path: Path) -> None:
    data = os.urandom(200_000)
    src = tmp_path / "d.bin"
    src.write_bytes(data)
    out = subprocess.run(
        ["gpg", "--homedir", str(tmp_path), "--batch", "--enarmor"],
        input=data,
        capture_output=True,
        check=True,
    ).stdout
    gpg_line = next(ln for ln in out.splitlines() if ln.startswith(b"=") and len(ln) == 5)
    c = Crc24()
    for i in range(0, len(data), 65_536):
        c.update(data[i : i + 65_536])
    assert c.checksum_line() == gpg_line
