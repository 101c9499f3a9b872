"""POST /v1/ack with a CMS signature (the S/MIME acknowledgement, docs/ack.md) on the real app.

``openssl cms -sign`` (the independent peer) signs the acknowledgement text
with certificates of a test CA (tests/fixtures/smime.py); the notary trusts
that CA through ``ack_smime_ca`` in notary.toml. A forged signature, a
certificate of another CA or for another address, an expired one and a
signature replayed for another message are refused with 4xx JSON and log
nothing.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from starlette.testclient import TestClient

from notary.ackformat import Ack, ack_text
from notary.api import create_app
from notary.note import Verifier
from notary.receipt import Receipt
from notary.service import NotaryService
from tests.fixtures.notary import configure, init_notary_dir
from tests.fixtures.smime import SmimePerson, SmimePki, openssl

BOB = "bob@example.net"
T0 = datetime.datetime(2026, 5, 1, 12, 0, tzinfo=datetime.UTC)


@pytest.fixture
def pki(tmp_path: Path) -> SmimePki:
    return SmimePki(tmp_path / "pki")


@pytest.fixture
def notary(tmp_path: Path, pki: SmimePki) -> Iterator[NotaryService]:
    directory = init_notary_dir(tmp_path / "notary")
    configure(directory, ack_smime_ca=str(pki.ca))
    svc = NotaryService.open(directory)
    yield svc
    svc.close()


@pytest.fixture
def client(notary: NotaryService) -> Iterator[TestClient]:
    with TestClient(create_app(notary), raise_server_exceptions=False) as c:
        yield c


def _notarize(client: TestClient, notary: NotaryService, mid: str) -> str:
    _, token = notary.add_account([f"a{secrets.token_hex(4)}@example.org"])
    digest = hashlib.sha256(mid.encode()).hexdigest()
    auth = {"Authorization": f"Bearer {token}"}
    r = client.post("/v1/notarize", json={"sha256": digest, "message_id": mid}, headers=auth)
    assert r.status_code == 200, r.text
    return digest


def _sign(who: SmimePerson, text: str, tmp: Path, *more: str) -> str:
    """``openssl cms -sign`` of ``text`` (detached, binary: the exact bytes), base64 DER."""
    src = tmp / f"ack-{secrets.token_hex(4)}.txt"
    src.write_text(text, encoding="utf-8")
    der = openssl(
        "cms", "-sign", "-binary", "-outform", "DER", "-md", "sha256", "-in", str(src),
        "-signer", str(who.cert_pem), "-inkey", str(who.key_pem), *more,
    )  # fmt: skip
    return base64.b64encode(der).decode("ascii")


def _body(digest: str, mid: str, text: str, cms: str, who: str = BOB) -> dict[str, str]:
    return {"sha256": digest, "message_id": mid, "recipient": who, "signed": text, "cms": cms}


def _text(digest: str, mid: str, who: str = BOB, at: datetime.datetime = T0) -> str:
    return ack_text(Ack(digest, mid, who, at, "http://notary.test"))


def test_a_cms_acknowledgement_is_logged_with_its_signature_and_certificate(
    client: TestClient, notary: NotaryService, pki: SmimePki, tmp_path: Path
) -> None:
    bob = pki.person(BOB)
    digest = _notarize(client, notary, "<m1@example.org>")
    text = _text(digest, "<m1@example.org>")
    cms = _sign(bob, text, tmp_path)
    r = client.post("/v1/ack", json=_body(digest, "<m1@example.org>", text, cms))
    assert r.status_code == 200, r.text
    stmt: dict[str, Any] = Receipt.from_json(r.json()).verify(
        Verifier.from_vkey(client.get("/v1/vkey").text.strip())
    )
    der = bob.cert.public_bytes(serialization.Encoding.DER)
    assert stmt["event"] == "ContentHandover" and stmt["recipient"] == BOB
    assert stmt["signed"] == text and stmt["cms"] == cms
    assert stmt["certificate_sha256"] == hashlib.sha256(der).hexdigest()
    assert "signature" not in stmt and "fingerprint" not in stmt
    # The logged signature verifies with the stock tool, offline.
    (tmp_path / "logged.der").write_bytes(base64.b64decode(stmt["cms"]))
    (tmp_path / "logged.txt").write_text(stmt["signed"], encoding="utf-8")
    openssl(
        "cms", "-verify", "-binary", "-inform", "DER", "-in", str(tmp_path / "logged.der"),
        "-content", str(tmp_path / "logged.txt"), "-CAfile", str(pki.ca), "-purpose", "smimesign",
    )  # fmt: skip
    size = notary.tree_size()
    again = client.post("/v1/ack", json=_body(digest, "<m1@example.org>", text, cms))
    assert again.status_code == 200 and again.json()["entry"] == r.json()["entry"]
    assert notary.tree_size() == size  # the same acknowledgement is logged once


def test_forged_foreign_and_replayed_cms_acknowledgements_are_refused(
    client: TestClient, notary: NotaryService, pki: SmimePki, tmp_path: Path
) -> None:
    bob, carol = pki.person(BOB), pki.person("carol@example.com")
    other = SmimePki(tmp_path / "other", name="Another Root CA").person(BOB, stem="bob2")
    now = datetime.datetime.now(datetime.UTC)
    expired = pki.person(BOB, stem="bob-old", now=now - datetime.timedelta(days=60), days=30)
    m1, m2 = "<m1@example.org>", "<m2@example.org>"
    d1, d2 = _notarize(client, notary, m1), _notarize(client, notary, m2)
    text1, text2 = _text(d1, m1), _text(d2, m2)
    good1 = _sign(bob, text1, tmp_path)
    later = _text(d1, m1, at=T0 + datetime.timedelta(seconds=1))
    size = notary.tree_size()
    cases: list[tuple[dict[str, str], int, str]] = [
        # The text changed after signing (a forgery of the statement).
        (_body(d1, m1, later, good1), 422, "BAD signature"),
        # Bob's signature of message 1 replayed as the acknowledgement of message 2.
        (_body(d2, m2, text2, good1), 422, "BAD signature"),
        # A certificate for Bob's address from a CA the notary does not trust.
        (_body(d1, m1, text1, _sign(other, text1, tmp_path)), 422, "does not chain"),
        # A good certificate, but Carol's: it does not name Bob.
        (_body(d1, m1, text1, _sign(carol, text1, tmp_path)), 422, "not for bob@example.net"),
        (_body(d1, m1, text1, _sign(expired, text1, tmp_path)), 422, "expired"),
        # The request names another message than the signed text.
        (_body(d2, m2, text1, good1), 400, "another SHA-256"),
        # Not detached: the content is inside the SignedData.
        (_body(d1, m1, text1, _sign(bob, text1, tmp_path, "-nodetach")), 400, "detached"),
        (_body(d1, m1, text1, base64.b64encode(b"\x30\x03\x02\x01\x00").decode()), 400, "CMS"),
        (_body(d1, m1, text1, "not base64!"), 400, "base64"),
        ({**_body(d1, m1, text1, good1), "signature": "x"}, 400, "unknown members"),
    ]
    for body, status, why in cases:
        r = client.post("/v1/ack", json=body)
        assert r.status_code == status, (why, r.text)
        assert why in r.json()["message"], r.json()
    assert notary.tree_size() == size  # nothing was logged


def test_without_a_notary_ca_bundle_a_private_ca_is_not_trusted(
    tmp_path: Path, pki: SmimePki
) -> None:
    """``ack_smime_ca`` unset: the system store, which does not hold the test CA."""
    svc = NotaryService.open(init_notary_dir(tmp_path / "plain"))
    try:
        with TestClient(create_app(svc), raise_server_exceptions=False) as client:
            digest = _notarize(client, svc, "<m3@example.org>")
            text = _text(digest, "<m3@example.org>")
            cms = _sign(pki.person(BOB), text, tmp_path)
            r = client.post("/v1/ack", json=_body(digest, "<m3@example.org>", text, cms))
            assert r.status_code == 422 and "does not chain" in r.json()["message"]
    finally:
        svc.close()


def test_an_unreadable_notary_ca_bundle_is_the_notarys_fault(
    client: TestClient, notary: NotaryService, pki: SmimePki, tmp_path: Path
) -> None:
    """``ack_smime_ca`` gone: 503 (the operator's to fix), not a client error, no path."""
    digest = _notarize(client, notary, "<m4@example.org>")
    text = _text(digest, "<m4@example.org>")
    cms = _sign(pki.person(BOB), text, tmp_path)
    pki.ca.unlink()
    r = client.post("/v1/ack", json=_body(digest, "<m4@example.org>", text, cms))
    assert r.status_code == 503 and r.json()["error"] == "busy"
    assert str(pki.ca) not in r.text
