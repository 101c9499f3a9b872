"""ETSI evidence in proof bundles: export adds evidence/NN-<event>.xml, verify checks each
(XAdES signature, time-stamp, and that it states the bundle's own event), naming the file
that fails."""

from __future__ import annotations

import hashlib
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from certmail.bundle import export_bundle, read_members, verify_bundle, write_members
from keys.errors import VerificationError
from notary.api import create_app
from notary.sequencer import Submission
from notary.service import NotaryService
from tests.fixtures.notary import init_notary_dir

MESSAGE = (
    b"From: Alice <alice@example.org>\r\n"
    b"To: Bob <bob@example.net>\r\n"
    b"Subject: ETSI\r\n"
    b"Message-ID: <etsi-bundle-1@example.org>\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"\r\n"
    b"Evidence in two formats.\r\n"
)
SHA = hashlib.sha256(MESSAGE).hexdigest()
MID = "<etsi-bundle-1@example.org>"
XMLSEC1 = ["xmlsec1", "--verify", "--id-attr:Id", "Evidence"]
XMLSEC1 += ["--id-attr:Id", "http://uri.etsi.org/01903/v1.3.2#:SignedProperties"]


@dataclass
class World:
    client: TestClient
    auth: dict[str, str]
    bundle: bytes
    chain: bytes


def _export(client: TestClient, auth: dict[str, str], etsi: bool) -> bytes:
    receipts = client.get(f"/v1/messages/{SHA}/receipts", headers=auth).json()["receipts"]
    extra: dict[str, Any] = {}
    if etsi:
        ev = client.get(f"/v1/messages/{SHA}/evidence?format=etsi", headers=auth).json()
        extra = {
            "etsi": [e["xml"].encode() for e in ev["evidence"]],
            "etsi_chain_pem": client.get("/v1/evidence/chain").content,
            "etsi_pdf": client.get(f"/v1/messages/{SHA}/certificate.pdf", headers=auth).content,
        }

    def consistency(old: int, new: int) -> list[bytes]:
        import base64

        body = client.get("/v1/proof/consistency", params={"old": old, "new": new}).json()
        return [base64.b64decode(h) for h in body["proof"]]

    return export_bundle(
        MESSAGE,
        receipts,
        vkey=client.get("/v1/vkey").text,
        tsa_chain_pem=client.get("/v1/tsa/chain").content,
        consistency=consistency,
        **extra,
    )


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    d = init_notary_dir(tmp_path_factory.mktemp("etsib") / "notary")
    svc = NotaryService.open(d)
    try:
        with TestClient(create_app(svc), raise_server_exceptions=False) as client:
            acct, token = svc.add_account(["alice@example.org"])
            auth = {"Authorization": f"Bearer {token}"}
            r = client.post("/v1/notarize", json={"sha256": SHA, "message_id": MID}, headers=auth)
            assert r.status_code == 200, r.text
            later = [
                Submission(
                    "RelayToNonERDS", SHA, MID, acct.id, {"recipient": "bob@example.net"}, False
                ),
                Submission(
                    "ContentAccessTracking", SHA, MID, acct.id, {"recipient": "bob@x"}, False
                ),
            ]
            client.portal.call(svc.sequencer.submit, later)  # type: ignore[union-attr]
            bundle = _export(client, auth, etsi=True)
            yield World(client, auth, bundle, client.get("/v1/evidence/chain").content)
    finally:
        svc.close()


def test_export_adds_xml_beside_each_event_and_verify_checks_them(
    world: World, tmp_path: Path
) -> None:
    files = read_members(world.bundle)
    names = sorted(n for n in files if n.endswith(".xml"))
    assert names == ["evidence/01-SubmissionAcceptance.xml", "evidence/02-RelayToNonERDS.xml"]
    assert "evidence/03-ContentAccessTracking.json" in files  # no ETSI counterpart: no .xml
    assert files["evidence-chain.pem"] == world.chain
    report = verify_bundle(world.bundle, vkey=world.client.get("/v1/vkey").text.strip())
    etsi = [c for c in report.checks if c.item == "ETSI evidence"]
    assert etsi and etsi[0].status == "ok" and "2 XAdES-B-T" in etsi[0].detail
    pdf = [c for c in report.checks if c.item == "notary certificate.pdf"]
    assert pdf and pdf[0].status == "ok"
    assert files["notary-certificate.pdf"].startswith(b"%PDF-")
    assert any("evidence CA" in w for w in report.warnings)
    # xmlsec1 verifies the members as they are in the bundle
    ca = tmp_path / "ca.pem"
    ca.write_bytes(world.chain.split(b"-----END CERTIFICATE-----\n", 1)[1])
    for n in names:
        p = tmp_path / Path(n).name
        p.write_bytes(files[n])
        out = subprocess.run(
            [*XMLSEC1, "--trusted-pem", str(ca), str(p)],
            capture_output=True,
            timeout=30,
        )
        assert out.returncode == 0, out.stderr
    # without --etsi: no xml, no chain, and it still verifies
    plain = read_members(_export(world.client, world.auth, etsi=False))
    assert not [n for n in plain if n.endswith(".xml")] and "evidence-chain.pem" not in plain


def _rezip(files: dict[str, bytes]) -> bytes:
    return write_members(files)


@pytest.mark.parametrize(
    "how", ["tamper", "swap", "orphan-chain", "no-chain", "pdf-byte", "pdf-appended"]
)
def test_a_bad_xml_fails_naming_the_file(world: World, how: str) -> None:
    files = dict(read_members(world.bundle))
    a, b = "evidence/01-SubmissionAcceptance.xml", "evidence/02-RelayToNonERDS.xml"
    if how == "tamper":
        files[a] = files[a].replace(b"SubmissionTime>", b"SubmissionTime >", 1)
        files[a] = files[a].replace(b"bundle-1@", b"bundle-2@")
        expect = a
    elif how == "swap":  # validly signed, but another event's evidence
        files[a], files[b] = files[b], files[a]
        expect = a
    elif how == "orphan-chain":
        files = {k: v for k, v in files.items() if not k.endswith(".xml")}
        expect = "evidence-chain.pem"
    elif how == "no-chain":
        del files["evidence-chain.pem"]
        expect = "evidence-chain.pem"
    elif how == "pdf-byte":
        pdf = bytearray(files["notary-certificate.pdf"])
        pdf[1000] ^= 0x01
        files["notary-certificate.pdf"] = bytes(pdf)
        expect = "notary-certificate.pdf"
    else:  # an incremental update after the signature
        pdf = files["notary-certificate.pdf"]
        files["notary-certificate.pdf"] = pdf + b"\n1 0 obj\n(x)\nendobj\n"
        expect = "notary-certificate.pdf"
    with pytest.raises(VerificationError) as err:
        verify_bundle(_rezip(files), vkey=world.client.get("/v1/vkey").text.strip())
    assert expect in err.value.message


@pytest.mark.parametrize("xml", [b"garbage", b"<a/>", b'<!DOCTYPE a [<!ENTITY x "y">]><a>&x;</a>'])
def test_export_refuses_malformed_evidence_from_the_notary(world: World, xml: bytes) -> None:
    from keys.errors import MalformedError

    receipts = world.client.get(f"/v1/messages/{SHA}/receipts", headers=world.auth).json()
    with pytest.raises(MalformedError, match="ETSI evidence is malformed"):
        export_bundle(
            MESSAGE,
            receipts["receipts"][:1],
            vkey=world.client.get("/v1/vkey").text,
            tsa_chain_pem=world.client.get("/v1/tsa/chain").content,
            etsi=[xml],
            etsi_chain_pem=world.chain,
        )
