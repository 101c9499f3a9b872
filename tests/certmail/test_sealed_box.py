"""The sealed content and its key part (certmail/sealed/box.py, docs/formats.md §8.1)."""

from __future__ import annotations

import pytest

from certmail.sealed.box import MAGIC, KeyPart, join_key, open_content, seal_content
from keys.errors import MalformedError, VerificationError

INNER = b"Content-Type: text/plain\r\n\r\nthe secret terms\r\n"
MID = "<1@example.org>"


def test_only_the_joined_key_opens_the_content() -> None:
    blob, part, k_n = seal_content(INNER, MID, "http://127.0.0.1:1")
    assert blob.startswith(MAGIC) and INNER not in blob and part.size == len(INNER)
    assert open_content(blob, join_key(part.k_r, k_n), MID) == INNER
    for wrong in (part.k_r, k_n, bytes(32)):
        with pytest.raises(VerificationError):
            open_content(blob, wrong, MID)
    with pytest.raises(VerificationError):  # bound to its Message-ID
        open_content(blob, join_key(part.k_r, k_n), "<2@example.org>")


def test_every_flipped_byte_is_refused() -> None:
    blob, part, k_n = seal_content(INNER, MID, "http://127.0.0.1:1")
    key = join_key(part.k_r, k_n)
    for i in range(len(blob)):
        bad = bytearray(blob)
        bad[i] ^= 0x01
        with pytest.raises((VerificationError, MalformedError)):
            open_content(bytes(bad), key, MID)


def test_fresh_keys_every_time() -> None:
    a = seal_content(INNER, MID, "u")
    b = seal_content(INNER, MID, "u")
    assert a[0] != b[0] and a[1].k_r != b[1].k_r and a[2] != b[2]


def test_key_part_round_trip_and_strictness() -> None:
    _, part, _ = seal_content(INNER, MID, "http://notary.test")
    assert KeyPart.from_bytes(part.to_bytes()) == part
    for bad in (
        b"",
        b"[]",
        b'{"v": 2}',
        part.to_bytes().replace(b'"v":1', b'"v":2'),
        part.to_bytes().replace(b"A256GCM", b"A128GCM"),
        part.to_bytes().replace(b"sealed-content.bin", b"../x"),
        b" " * 5000,
    ):
        with pytest.raises(MalformedError):
            KeyPart.from_bytes(bad)
