"""The send-side check's decoder of certmail's own armor (:class:`certmail.selfcheck.BodyDecoder`).

The check decrypts what the armor as written decodes to: the decoder must give
back exactly the ciphertext for any way the body is cut into chunks, refuse
anything a strict decoder would not read (and lines that are not 64 wide), and
the pipeline must hand it exactly the bytes it writes to the message.
"""

from __future__ import annotations

import base64
import hashlib
import os
import random
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

import certmail.seal as seal_module
import certmail.selfcheck as selfcheck
from certmail.armor import Crc24
from certmail.compose import Headers, ScanRecord
from certmail.pipeline import EncryptPipeline
from certmail.seal import seal
from keys.errors import Error, MalformedError
from keys.gpg import Keyring
from tests.fixtures.tamper import tamper_stream

ALICE, BOB = "alice@example.org", "bob@example.net"


def _armor_body(data: bytes) -> bytes:
    """``base64 -w 64``'s output for ``data``: 64-character LF lines."""
    b = base64.b64encode(data)
    return b"".join(b[i : i + 64] + b"\n" for i in range(0, len(b), 64))


def _decode(body: bytes, cuts: int, seed: int) -> tuple[bytes, bytes]:
    """Feed ``body`` to a decoder in ``cuts`` random pieces: (what it wrote, its CRC line)."""
    r, w = os.pipe()
    out: list[bytes] = []

    def read() -> None:
        with os.fdopen(r, "rb") as f:
            out.append(f.read())

    reader = threading.Thread(target=read)
    reader.start()
    d = selfcheck.BodyDecoder(w)
    rng = random.Random(seed)
    points = sorted(rng.sample(range(1, len(body)), min(cuts, len(body) - 1))) if body else []
    start = 0
    try:
        for p in [*points, len(body)]:
            d.put(body[start:p])
            start = p
        line = d.close()
    finally:
        reader.join()
    return out[0], line


@pytest.mark.parametrize("size", [1, 47, 48, 49, 95, 96, 4800, 100_003])
def test_decoder_gives_back_the_ciphertext_however_cut(size: int) -> None:
    data = os.urandom(size)
    for seed in range(3):
        got, line = _decode(_armor_body(data), cuts=1 + size // 500, seed=seed)
        assert got == data
        crc = Crc24()
        crc.update(data)
        assert line == crc.checksum_line()


BODY = _armor_body(bytes(range(256)) * 40)  # 213 full lines, a last one of 24 characters


@pytest.mark.parametrize(
    "tamper",
    [
        lambda b: b[:100] + b"-" + b[101:],  # not in the alphabet (a URL-safe character)
        lambda b: b[:100] + b"\x00" + b[101:],
        lambda b: b[:100] + b"=" + b[101:],  # padding inside the body
        lambda b: b[:100] + b"\r" + b[101:],
        lambda b: b[:100] + b"\n" + b[101:],  # a line broken in two
        lambda b: b[:65] + b[66:],  # a line one character short
        lambda b: b[:65] + b"A" + b[65:],  # a line one character long
        lambda b: b + b"QUJD",  # a last line without its line end after a full one
        lambda b: b[:-1] + b"A\n",  # a last line whose length is not a base64 one
        lambda b: b[:-2] + b"?\n",
    ],
    ids=["dash", "nul", "inner-pad", "cr", "extra-lf", "short", "long", "tail", "odd", "junk"],
)
def test_decoder_refuses_what_a_strict_decoder_would_not_read(
    tamper: Callable[[bytes], bytes],
) -> None:
    bad = tamper(BODY)
    assert bad != BODY
    for seed in range(3):
        with pytest.raises(MalformedError, match="armor"):
            _decode(bad, cuts=7, seed=seed)


@pytest.fixture
def alice(keyring_factory: Callable[[str, str], tuple[Keyring, str]]) -> Keyring:
    a, _ = keyring_factory(ALICE, "Alice")
    b, _ = keyring_factory(BOB, "Bob")
    a.import_keys(b.export_public(BOB).encode())
    a.trust(BOB)
    return a


def _seal(alice: Keyring, tmp_path: Path, size: int = 1_000_003) -> Path:
    f = tmp_path / "deal.bin"
    f.write_bytes(os.urandom(size))
    headers = Headers(ALICE, (BOB,), "deal", "<m1@example.org>", "Mon, 01 Jan 2024 00:00:00 +0000")
    s = seal(alice, tmp_path / "w", headers, b"Hello Bob\n", [(f, ScanRecord("clean"))])
    return s.path


def test_the_check_reads_exactly_the_armor_written(
    alice: Keyring, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The SHA-256 of the stream the check was given equals the SHA-256 of the armor body in
    the message file (its CRLFs back to LFs), and the CRC-24 line is of its decoding."""
    monkeypatch.delenv("CERTMAIL_REFERENCE_ONLY", raising=False)
    seen = hashlib.sha256()
    real = selfcheck.BodyDecoder.put

    def put(self: selfcheck.BodyDecoder, chunk: bytes) -> None:
        seen.update(chunk)
        real(self, chunk)

    monkeypatch.setattr(selfcheck.BodyDecoder, "put", put)
    raw = _seal(alice, tmp_path).read_bytes()
    start = raw.index(b"-----BEGIN PGP MESSAGE-----\r\n\r\n") + 31
    end = raw.index(b"\r\n=", start) + 2
    body = raw[start:end].replace(b"\r\n", b"\n")
    assert b"\r" not in body and len(body) > 1_000_000
    assert hashlib.sha256(body).digest() == seen.digest()
    crc = Crc24()
    crc.update(base64.b64decode(body))
    assert raw[end : end + 5] == crc.checksum_line()


class ArmorTampering(EncryptPipeline):
    """The real pipeline with one character of ``base64 -w 64``'s armor changed."""

    at = 30_000
    to = b"A"

    def _start_armor(self) -> None:
        super()._start_armor()
        assert self.b64e is not None
        to = self.to
        self.b64e.stdout = tamper_stream(
            self.b64e.stdout, self.at, lambda c: to if c != to else b"B"
        )


@pytest.mark.parametrize("to", [b"A", b"-"], ids=["other-letter", "not-base64"])
def test_changed_armor_is_refused(
    alice: Keyring, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, to: bytes
) -> None:
    """A valid base64 letter changed (the decoding differs: gpg's integrity check fails)
    or a character that is not base64: nothing is left to send."""
    monkeypatch.delenv("CERTMAIL_REFERENCE_ONLY", raising=False)
    monkeypatch.setattr(ArmorTampering, "to", to)
    monkeypatch.setattr(seal_module, "EncryptPipeline", ArmorTampering)
    with pytest.raises(Error, match="refusing to send: the finished message did not re-verify"):
        _seal(alice, tmp_path)
    assert not (tmp_path / "w" / "message.eml").exists()
