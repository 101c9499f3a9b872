"""ETSI EN 319 522-3 evidence: GET /v1/messages/{sha256}/evidence?format=etsi.

xmlsec1 (Debian's, not ours) verifies every signature against the evidence
root CA the notary publishes at /v1/evidence/chain; our verifier (signxml plus
the RFC 3161 check of the XAdES SignatureTimeStamp) agrees; a tampered XML
fails both.
"""

from __future__ import annotations

import hashlib
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from fastapi.testclient import TestClient
from lxml import etree

from notary.errors import VerificationError
from notary.etsi.sign import verify_evidence
from notary.sequencer import Submission
from notary.service import NotaryService
from tests.fixtures.notary import app_client, open_service

NS = {"erds": "http://uri.etsi.org/19522/v1#"}
MESSAGE = b"From: alice@example.test\r\nTo: bob@rcpt.test\r\nSubject: x\r\n\r\nhello\r\n"
SHA = hashlib.sha256(MESSAGE).hexdigest()
MID = "<etsi-1@example.test>"


@pytest.fixture(scope="module")
def notary(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NotaryService]:
    yield from open_service(tmp_path_factory.mktemp("etsi") / "notary")


@pytest.fixture(scope="module")
def client(notary: NotaryService) -> Iterator[TestClient]:
    yield from app_client(notary)


@pytest.fixture(scope="module")
def alice(notary: NotaryService, client: TestClient) -> dict[str, str]:
    acct, token = notary.add_account(["alice@example.test"])
    auth = {"Authorization": f"Bearer {token}"}
    r = client.post("/v1/notarize", json={"sha256": SHA, "message_id": MID}, headers=auth)
    assert r.status_code == 200, r.text
    later = [  # what the relay and the ack endpoint log, through the real sequencer
        Submission("RelayToNonERDS", SHA, MID, acct.id, {"recipient": "bob@rcpt.test"}, False),
        Submission(
            "RelayToNonERDSFailure",
            SHA,
            MID,
            acct.id,
            {"recipient": "carol@rcpt.test", "reason": "rejected", "reply": None},
            False,
        ),
        Submission("ContentHandover", SHA, MID, acct.id, {"recipient": "bob@rcpt.test"}, False),
        Submission("ContentAccessTracking", SHA, MID, acct.id, {"recipient": "bob@x"}, False),
    ]
    client.portal.call(notary.sequencer.submit, later)  # type: ignore[union-attr]
    return auth


@pytest.fixture(scope="module")
def ca_pem(client: TestClient, tmp_path_factory: pytest.TempPathFactory) -> Path:
    r = client.get("/v1/evidence/chain")
    assert r.status_code == 200
    chain = x509.load_pem_x509_certificates(r.content)
    assert len(chain) == 2 and "Evidence" in chain[0].subject.rfc4514_string()
    p = tmp_path_factory.mktemp("ca") / "ca.pem"
    p.write_bytes(r.content.split(b"-----END CERTIFICATE-----\n", 1)[1])  # the root alone
    return p


def xmlsec1(path: Path, ca: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            "xmlsec1",
            "--verify",
            "--trusted-pem",
            str(ca),
            "--id-attr:Id",
            "Evidence",
            "--id-attr:Id",
            "http://uri.etsi.org/01903/v1.3.2#:SignedProperties",
            str(path),
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )


def tsa_roots(client: TestClient) -> list[x509.Certificate]:
    return x509.load_pem_x509_certificates(client.get("/v1/tsa/chain").content)[-1:]


def test_every_event_is_signed_evidence_xmlsec1_verifies(
    client: TestClient, alice: dict[str, str], ca_pem: Path, tmp_path: Path
) -> None:
    r = client.get(f"/v1/messages/{SHA}/evidence", params={"format": "etsi"}, headers=alice)
    assert r.status_code == 200, r.text
    ev = r.json()["evidence"]
    assert [(e["event"], e["etsi_event"]) for e in ev] == [
        ("SubmissionAcceptance", "SubmissionAcceptance"),
        ("RelayToNonERDS", "RelayToNonERDS"),
        ("RelayToNonERDSFailure", "RelayToNonERDSFailure"),
        ("ContentHandover", "ConsignmentAcceptance"),
    ]  # ContentAccessTracking has no ETSI counterpart: left out
    for e in ev:
        xml = e["xml"].encode()
        p = tmp_path / f"{e['index']}.xml"
        p.write_bytes(xml)
        out = xmlsec1(p, ca_pem)
        assert out.returncode == 0 and "OK" in out.stdout + out.stderr, out.stderr
        doc = etree.fromstring(xml)
        code = doc.findtext("erds:EventCode", namespaces=NS)
        assert code == "http://uri.etsi.org/19522/Event/" + e["etsi_event"]
        ids = {
            a.get("scheme"): a.text
            for a in doc.findall("erds:SenderMessageDetails/erds:AppLayerIdentifier", NS)
        }
        assert ids == {"urn:ietf:rfc:5322:message-id": MID, "urn:certmail:message-sha256": SHA}
        proof = doc.findtext("erds:TransactionLogInformation/erds:TransactionLogProof", None, NS)
        assert proof is not None and proof.startswith("c2sp.org/tlog-proof@v1\n")
        v = verify_evidence(xml, evidence_ca=ca_pem.read_bytes(), tsa_roots=tsa_roots(client))
        assert (v.facts.message_id, v.facts.sha256) == (MID, SHA)
        assert v.facts.event_uri == code


def test_tampered_evidence_fails(
    client: TestClient, alice: dict[str, str], ca_pem: Path, tmp_path: Path
) -> None:
    r = client.get(f"/v1/messages/{SHA}/evidence", headers=alice)
    xml = r.json()["evidence"][0]["xml"].encode()
    bad = xml.replace(MID.encode("ascii").replace(b"<", b"&lt;").replace(b">", b"&gt;"), b"x")
    assert bad != xml
    p = tmp_path / "bad.xml"
    p.write_bytes(bad)
    assert xmlsec1(p, ca_pem).returncode != 0
    with pytest.raises(VerificationError):
        verify_evidence(bad, evidence_ca=ca_pem.read_bytes(), tsa_roots=tsa_roots(client))
    # the unsigned time-stamp is bound to the signature value: swapping it fails
    other = client.get(f"/v1/messages/{SHA}/evidence", headers=alice).json()["evidence"][1]
    ts = etree.fromstring(other["xml"].encode()).findtext(
        ".//{http://uri.etsi.org/01903/v1.3.2#}EncapsulatedTimeStamp"
    )
    mine = etree.fromstring(xml).findtext(
        ".//{http://uri.etsi.org/01903/v1.3.2#}EncapsulatedTimeStamp"
    )
    assert ts and mine and ts != mine
    swapped = xml.replace(mine.encode(), ts.encode())
    with pytest.raises(VerificationError):
        verify_evidence(swapped, evidence_ca=ca_pem.read_bytes(), tsa_roots=tsa_roots(client))
    # another CA is not trusted
    with pytest.raises(VerificationError):
        verify_evidence(
            xml,
            evidence_ca=client.get("/v1/tsa/chain").content,
            tsa_roots=tsa_roots(client),
        )


def test_one_entry_as_xml_and_errors(
    client: TestClient, alice: dict[str, str], notary: NotaryService
) -> None:
    first = client.get(f"/v1/messages/{SHA}/evidence", headers=alice).json()["evidence"][0]
    r = client.get(f"/v1/messages/{SHA}/evidence?index={first['index']}", headers=alice)
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/xml")
    assert etree.fromstring(r.content).get("Id") == f"evidence-{first['index']}"
    assert client.get(f"/v1/messages/{SHA}/evidence").status_code == 401
    _, token = notary.add_account(["mallory@example.test"])
    other = {"Authorization": f"Bearer {token}"}
    r = client.get(f"/v1/messages/{SHA}/evidence", headers=other)
    assert r.status_code == 404 and "error" in r.json()
    r = client.get(f"/v1/messages/{SHA}/evidence?format=json", headers=alice)
    assert r.status_code == 400 and "format" in r.json()["message"]
    r = client.get("/v1/messages/XYZ/evidence", headers=alice)
    assert r.status_code == 400


def test_certificate_pdf_is_signed_pades_and_verifies(
    client: TestClient, alice: dict[str, str], ca_pem: Path, tmp_path: Path
) -> None:
    r = client.get(f"/v1/messages/{SHA}/certificate.pdf", headers=alice)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/pdf" and r.content.startswith(b"%PDF-")
    pdf = tmp_path / "certificate.pdf"
    pdf.write_bytes(r.content)
    out = subprocess.run(["pdfsig", str(pdf)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "Signature is Valid." in out.stdout, out.stdout + out.stderr
    assert "ETSI.CAdES.detached" in out.stdout  # PAdES, not adbe.pkcs7
    fonts = subprocess.run(["pdffonts", str(pdf)], capture_output=True, text=True, timeout=60)
    assert "DejaVuSans" in fonts.stdout and " yes " in fonts.stdout  # embedded
    text = subprocess.run(["pdftotext", str(pdf), "-"], capture_output=True, text=True).stdout
    assert MID in text and SHA in text and "does not prove" in text

    from pyhanko.pdf_utils.reader import PdfFileReader
    from pyhanko.sign.validation import validate_pdf_signature
    from pyhanko_certvalidator import ValidationContext

    root = x509.load_pem_x509_certificate(ca_pem.read_bytes())
    tsa_root = tsa_roots(client)[0]
    from asn1crypto import x509 as asn1_x509
    from cryptography.hazmat.primitives.serialization import Encoding

    def vc(c: x509.Certificate) -> ValidationContext:
        der = c.public_bytes(Encoding.DER)
        return ValidationContext(trust_roots=[asn1_x509.Certificate.load(der)])

    with pdf.open("rb") as f:
        sig = PdfFileReader(f).embedded_signatures[0]
        status = validate_pdf_signature(sig, vc(root), ts_validation_context=vc(tsa_root))
    assert status.intact and status.valid and status.trusted, status.pretty_print_details()
    assert status.timestamp_validity is not None and status.timestamp_validity.trusted
    # a changed byte in the signed range fails both verifiers
    raw = bytearray(r.content)
    i = 1000  # a byte of the original document, inside the signed byte range
    raw[i] ^= 0x01
    bad = tmp_path / "bad.pdf"
    bad.write_bytes(bytes(raw))
    out = subprocess.run(["pdfsig", str(bad)], capture_output=True, text=True, timeout=60)
    assert "Signature is Valid." not in out.stdout
    with bad.open("rb") as f:
        sig = PdfFileReader(f).embedded_signatures[0]
        status = validate_pdf_signature(sig, vc(root), ts_validation_context=vc(tsa_root))
    assert not status.intact


def test_the_same_evidence_is_signed_once_and_answers_the_same_bytes(
    client: TestClient, alice: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Asked twice against the same checkpoint, the evidence is byte-identical and
    signed (and time-stamped) once; once the log moves on it is signed afresh."""
    import notary.etsi.sign

    signed: list[bytes] = []
    real = notary.etsi.sign.sign_evidence

    def counting(evidence: object, creds: object, stamp: object) -> bytes:
        out = real(evidence, creds, stamp)  # type: ignore[arg-type]
        signed.append(out)
        return out

    monkeypatch.setattr(notary.etsi.sign, "sign_evidence", counting)
    other = hashlib.sha256(b"moves the checkpoint").hexdigest()
    body = {"sha256": other, "message_id": "<etsi-2@example.test>"}
    assert client.post("/v1/notarize", json=body, headers=alice).status_code == 200
    url = f"/v1/messages/{SHA}/evidence"
    first = client.get(url, headers=alice)
    assert first.status_code == 200, first.text
    n = len(first.json()["evidence"])
    assert len(signed) == n
    again = client.get(url, headers=alice)
    assert again.content == first.content and len(signed) == n
    one = first.json()["evidence"][0]
    alone = client.get(url, params={"index": one["index"]}, headers=alice)
    assert alone.content == one["xml"].encode() and len(signed) == n
    later = {**body, "sha256": SHA[::-1]}
    assert client.post("/v1/notarize", json=later, headers=alice).status_code == 200
    moved = client.get(url, headers=alice)
    assert len(signed) == 2 * n and moved.content != first.content


def test_signing_a_certificate_encodes_its_asn1_a_bounded_number_of_times(
    notary: NotaryService, alice: dict[str, str]
) -> None:
    """pyHanko shared the TSA certificates' objects between the token and the signature,
    and about half the signatures then re-encoded their ASN.1 millions of times (9 s of
    CPU each); twelve signatures now stay near the 28,000 encodings each needs."""
    import sys
    from types import FrameType
    from typing import Any

    from notary.etsi.api import _issuer
    from notary.etsi.certificate import render_certificate, sign_certificate

    assert notary.tsa is not None
    pdf = render_certificate(
        [{"event": "SubmissionAcceptance", "time": "2026-12-02T00:00:00Z", "message": {"id": MID}}],
        origin=notary.origin,
        sha256=SHA,
        message_id=MID,
    )
    creds = _issuer(notary).creds()
    sign_certificate(pdf, creds, notary.tsa.respond)  # imports and caches before counting
    calls = 0

    def count(frame: FrameType, event: str, arg: Any) -> None:
        nonlocal calls
        if (
            event == "call"
            and frame.f_code.co_name == "dump"
            and "asn1crypto" in frame.f_code.co_filename
        ):
            calls += 1

    sys.setprofile(count)
    try:
        signed = [sign_certificate(pdf, creds, notary.tsa.respond) for _ in range(12)]
    finally:
        sys.setprofile(None)
    assert all(s.startswith(pdf[:8]) and len(s) > len(pdf) for s in signed)
    assert calls < 12 * 100_000, calls  # about 28,000 each; a shared one: millions
