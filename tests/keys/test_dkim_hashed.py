"""keys.dkim.dkim_sign_hashed: a DKIM-Signature from a body hash taken as the body was
written equals the one signed from the file, and the one-pass tap sees the whole file."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from keys.dkim import (
    dkim_sign_file,
    dkim_sign_hashed,
    dkim_verify_file,
    dns_record,
    find_dkim_key,
    generate_dkim_key,
)
from keys.dkim_body import SIGNING_CANONICALIZATION, BodyHash, crlf_only

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


@pytest.mark.parametrize("reference", ["", "1"])
def test_crlf_only_equals_the_two_counts(monkeypatch: pytest.MonkeyPatch, reference: str) -> None:
    """The one-count test of fixed-width lines answers as counting LF and CRLF does,
    for ranges of any shape: bare LF inside, after or between CRLF lines."""
    import random

    monkeypatch.setenv("CERTMAIL_REFERENCE_ONLY", reference)
    rnd = random.Random(16)
    pieces = [b"a", b"\r", b"\n", b"\r\n", b" ", b"abcdefgh"]
    for i in range(20000):
        if i % 2:
            data = b"".join(b"x" * rnd.randint(1, 5) + b"\r\n" for _ in range(rnd.randint(0, 5)))
            data *= rnd.randint(1, 3)
            if data and rnd.random() < 0.7:
                k = rnd.randrange(len(data))
                data = data[:k] + rnd.choice(pieces) + data[k + 1 :]
        else:
            data = b"".join(rnd.choice(pieces) for _ in range(rnd.randint(0, 12)))
        start = rnd.randint(0, len(data))
        end = rnd.randint(start, len(data))
        want = data.count(b"\n", start, end) == data.count(b"\r\n", start, end)
        assert crlf_only(data, start, end) == want, (data, start, end)
    armor = b"".join(os.urandom(48).hex().encode()[:64] + b"\r\n" for _ in range(100))
    assert crlf_only(armor, 0, len(armor))
    assert not crlf_only(armor[:-2] + b"x\n", 0, len(armor))
    assert not crlf_only(armor[:100] + b"\n" + armor[101:], 0, len(armor))
