"""The TSA's fast path (remembered query shapes, spliced answer frames) answers byte for
byte what the reference path answers, and leaves every other query to it."""

from __future__ import annotations

import hashlib
import itertools
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography import x509

from keys.tsa import ROOT_CERT, TsaCredentials, generate_tsa_pki
from notary import fastpath
from notary.rfc3161 import DEFAULT_POLICY_OID, TimeStampAuthority, der, verify_token
from notary.rfc3161.oids import HASH_OIDS

NOW = datetime(2031, 5, 6, 7, 8, 9, 120000, tzinfo=UTC)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, TsaCredentials]:
    d = tmp_path_factory.mktemp("pki") / "tsa"
    return d, generate_tsa_pki(d, "Fast Path TSA")


class FixedKey:
    """A stand-in signing key: a fixed 'signature' of a chosen length (ECDSA DER
    signatures vary in length, and so do the answer frames)."""

    def __init__(self) -> None:
        self.size = 71

    def sign(self, data: bytes, algorithm: object) -> bytes:
        return (hashlib.sha256(data).digest() * 3)[: self.size]


def query(
    digest: bytes = bytes(range(32)),
    *,
    hash_name: str = "sha256",
    null: bool = True,
    policy: str | None = None,
    nonce: bytes | None = b"\x02\x08" + bytes(range(1, 9)),
    cert_req: bool | None = True,
) -> bytes:
    alg_oid = HASH_OIDS.get(hash_name, "1.3.14.3.2.26")  # else SHA-1's
    alg = der.seq(der.oid(alg_oid), *([b"\x05\x00"] if null else []))
    parts = [der.integer(1), der.seq(alg, der.octets(digest))]
    if policy is not None:
        parts.append(der.oid(policy))
    if nonce is not None:
        parts.append(nonce)
    if cert_req is not None:
        parts.append(b"\x01\x01" + (b"\xff" if cert_req else b"\x00"))
    return der.seq(*parts)


def pair(
    pki: tuple[Path, TsaCredentials], monkeypatch: pytest.MonkeyPatch, size: int = 71
) -> tuple[TimeStampAuthority, TimeStampAuthority]:
    """(a fast TSA, a reference TSA) with the same clock, serials and fixed 'signatures'."""
    made = []
    for reference in ("", "1"):
        monkeypatch.setenv(fastpath.ENV, reference)
        tsa = TimeStampAuthority(pki[1], clock=lambda: NOW)
        key = tsa._key = FixedKey()  # type: ignore[assignment]
        key.size = size
        made.append(tsa)
    monkeypatch.delenv(fastpath.ENV)
    made[1]._serial_base = made[0]._serial_base
    return made[0], made[1]


def both(tsas: tuple[TimeStampAuthority, TimeStampAuthority], q: bytes) -> tuple[bytes, bytes]:
    """(fast answer, reference answer) to ``q``, with the same serial."""
    fast, reference = tsas
    fast._counter = itertools.count(7)
    reference._counter = itertools.count(7)
    return fast.respond(q), reference.respond(q)


QUERIES = {
    "sha256, nonce, certReq": query(),
    "same shape, another digest and nonce": query(b"\xff" * 32, nonce=b"\x02\x08" + b"\x7f" * 8),
    "no certReq": query(cert_req=False),
    "certReq absent": query(cert_req=None),
    "no nonce": query(nonce=None),
    "one-byte nonce": query(nonce=b"\x02\x01\x00"),
    "negative nonce": query(nonce=b"\x02\x02\xff\x01"),
    "long nonce": query(nonce=b"\x02\x40" + b"\x11" * 64),
    "no NULL parameters": query(null=False),
    "the TSA's policy": query(policy=DEFAULT_POLICY_OID),
    "sha384": query(bytes(48), hash_name="sha384"),
    "sha512": query(bytes(64), hash_name="sha512"),
    "another policy": query(policy="1.2.3.4"),
    "bad digest length": query(bytes(31)),
    "non-minimal nonce": query(nonce=b"\x02\x02\x00\x01"),
    "sha1": query(bytes(20), hash_name="sha1"),
    "trailing byte": query() + b"\x00",
    "truncated": query()[:-1],
}


@pytest.mark.parametrize("size", [70, 71, 72])
def test_fast_answers_equal_the_reference(
    pki: tuple[Path, TsaCredentials], monkeypatch: pytest.MonkeyPatch, size: int
) -> None:
    tsas = pair(pki, monkeypatch, size)
    for _ in range(2):  # the second round: every shape and frame is known
        for name, q in QUERIES.items():
            fast, reference = both(tsas, q)
            assert fast == reference, name
    assert tsas[0]._shapes and tsas[0]._frames
    assert not tsas[1]._shapes and not tsas[1]._frames


def test_a_query_like_a_known_shape_is_parsed(
    pki: tuple[Path, TsaCredentials], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Same length as a remembered shape, other fixed bytes: the reference parser
    answers (a non-minimal nonce and another policy are refused, as it refuses them)."""
    tsas = pair(pki, monkeypatch)
    tsas[0].respond(query(nonce=b"\x02\x02\x01\x01"))  # the shape of a 2-byte nonce
    for q in (
        query(nonce=b"\x02\x02\x00\x01"),  # non-minimal: badDataFormat
        query(nonce=b"\x02\x02\xff\x80"),  # non-minimal negative
        query(nonce=b"\x02\x02\x01\x01")[:-1] + b"\x00",  # certReq FALSE, same length
    ):
        fast, reference = both(tsas, q)
        assert fast == reference
    assert b"\x03\x02\x02\x04" in both(tsas, query(nonce=b"\x02\x02\x00\x01"))[0]


def test_fast_tokens_verify(
    pki: tuple[Path, TsaCredentials], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(fastpath.ENV, raising=False)  # also in CI's reference-only pass
    tsa = TimeStampAuthority(pki[1])
    root = x509.load_pem_x509_certificate((pki[0] / ROOT_CERT).read_bytes())
    serials = set()
    for i in range(3):  # the first learns the shape, the others are spliced
        digest = hashlib.sha256(b"message %d" % i).digest()
        reply = tsa.respond(query(digest))
        _, start, end = der.read(reply, 0, len(reply))
        _, status, status_end = der.read(reply, start, end)
        assert reply[status:status_end] == b"\x02\x01\x00"  # granted
        token = reply[status_end:end]
        info = verify_token(token, roots=[root], digest=digest)
        assert info.nonce == int.from_bytes(bytes(range(1, 9)), "big")
        serials.add(info.serial)
    assert len(serials) == 3
    assert len(tsa._shapes) == 1


def test_reference_only_remembers_nothing(
    pki: tuple[Path, TsaCredentials], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(fastpath.ENV, "1")
    tsa = TimeStampAuthority(pki[1])
    for _ in range(2):
        tsa.respond(query())
    assert not tsa._shapes and not tsa._frames
