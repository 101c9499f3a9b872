"""The send check's comparison of the payload fed to gpg with the plaintext the checking
decrypt gives back (certmail.selfcheck.PayloadMatch): byte for byte while the payload
is held, SHA-256 of both sides past the window; any difference, a missing or an extra
byte refuses, in either mode."""

from __future__ import annotations

import io
import os
import threading

import pytest

from certmail.selfcheck import PayloadMatch

PAYLOAD = [os.urandom(n) for n in (0, 1, 7, 4096, 70_000, 3, 100_000)]
WHOLE = b"".join(PAYLOAD)


def _verdict(plain: bytes, window: int) -> bool:
    m = PayloadMatch(window=window)
    reader = threading.Thread(target=m.drain, args=(io.BytesIO(plain), 1 << 16))
    reader.start()  # waits for the payload, as the drain thread does for gpg
    for chunk in PAYLOAD:
        m.update(chunk)
    m.finish()
    reader.join(10)
    assert not reader.is_alive()
    return m.equal


@pytest.mark.parametrize("window", [64 << 20, 10_000, 1], ids=["held", "split", "hashed"])
def test_equal_payload_passes(window: int) -> None:
    assert _verdict(WHOLE, window)


@pytest.mark.parametrize("window", [64 << 20, 10_000, 1], ids=["held", "split", "hashed"])
@pytest.mark.parametrize(
    "plain",
    [
        WHOLE[:-1] + bytes([WHOLE[-1] ^ 1]),  # the last byte
        bytes([WHOLE[0] ^ 0x80]) + WHOLE[1:],  # the first byte
        WHOLE[:5000] + bytes([WHOLE[5000] ^ 4]) + WHOLE[5001:],  # one inside
        WHOLE[:-1],  # one missing
        WHOLE + b"\0",  # one extra
        b"",  # nothing came back
    ],
    ids=["last", "first", "inside", "short", "long", "empty"],
)
def test_any_difference_refuses(plain: bytes, window: int) -> None:
    assert not _verdict(plain, window)


def test_a_feed_that_stops_does_not_hang_the_drain() -> None:
    m = PayloadMatch()
    m.update(b"abc")
    m.finish()  # the feeding failed after three bytes
    m.drain(io.BytesIO(b"abcdef"), 4)
    assert not m.equal
