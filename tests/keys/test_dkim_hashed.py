"""keys.dkim.dkim_sign_hashed: a DKIM-Signature from a body hash taken as the body was
written equals the one signed from the file, and the one-pass tap sees the whole file."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from keys.dkim import (
    dkim_sign_file,
    dkim_sign_hashed,
    dkim_verify_file,
    dns_record,
    find_dkim_key,
    generate_dkim_key,
)
from keys.dkim_body import SIGNING_CANONICALIZATION, BodyHash

HEAD = b"From: alice@example.org\r\nTo: bob@example.net\r\nSubject: s\r\n"


def test_hashed_equals_file_and_tap_sees_every_byte(tmp_path: Path) -> None:
    generate_dkim_key(tmp_path / "dkim", "example.org", "sel", "ed25519")
    key = find_dkim_key(tmp_path / "dkim", "example.org")
    assert key is not None
    body = b"".join(os.urandom(48).hex().encode() + b"\r\n" for _ in range(5000)) + b"\r\n\r\n"
    path = tmp_path / "m.eml"
    path.write_bytes(HEAD + b"\r\n" + body)
    bh = BodyHash(SIGNING_CANONICALIZATION)
    for at in range(0, len(body), 7777):  # pieces that split lines and CRLFs
        bh.update(body[at : at + 7777])
    got = dkim_sign_hashed(HEAD, bh.digest(), key, timestamp=1_700_000_000)
    assert got == dkim_sign_file(path, key, timestamp=1_700_000_000)
    signed = tmp_path / "s.eml"
    signed.write_bytes(got + path.read_bytes())
    _, record = dns_record(key)
    tap = hashlib.sha256()
    dkim_verify_file(signed, dnsfunc=lambda q: record.encode(), tap=tap)
    assert tap.digest() == hashlib.sha256(signed.read_bytes()).digest()
