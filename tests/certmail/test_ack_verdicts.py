"""Virus-scan verdicts at both ends (issue 11 item 6), end to end with a real clamd.

Alice sends Bob an attachment scanned by the clamd fixture (the manifest states the
verdict); Bob opens it with ``--ack``, his terminal scans it again, and the signed
acknowledgement (text version 2, notary/ackformat.py) carries both verdicts. Alice's
``receipts --json`` and ``proof verify --json`` show them, each labelled with who
asserted it; a verdict changed in the signed text no longer verifies.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest

from certmail.bundle.openpgp import check_acknowledgement
from certmail.bundle.verify import check_evidence
from certmail.bundle.zipio import read_members
from keys.errors import VerificationError
from notary.ackformat import ACK_TITLE_V2, parse_ack_text
from tests.fixtures.clamd import eicar_file
from tests.fixtures.cli import (
    delivered,
    json_of,
    one_line_error,
    run,
    send_args,
    signed_ack,
    use_notary,
)
from tests.fixtures.notary import NotaryProcess
from tests.fixtures.proof import verify_pinned

PDF = b"%PDF-1.4\n% the contract\n" * 100


def _send_attachment(c: Any, tmp_path: Path, path: Path, **env: str) -> tuple[dict[str, Any], Path]:
    sent = json_of(
        run(
            c.alice,
            *send_args(c.bob.email, "Contract", "--attach", str(path), "--via", "smtp"),
            stdin=b"Please sign the attached.\n",
            **env,
        )
    )
    return sent, delivered(c, tmp_path)


@pytest.fixture
def setup(correspondents: Any, notary_server: NotaryProcess) -> Any:
    use_notary(correspondents, correspondents.alice, notary_server)
    correspondents.settings(correspondents.bob, smtp_url=correspondents.sink.url)
    return correspondents


def _handover(c: Any, sha: str) -> dict[str, Any]:
    out = json_of(run(c.alice, "receipts", sha, "--json"))
    steps = out["recipients"][c.bob.email]
    assert [s["event"] for s in steps] == ["SubmissionAcceptance", "ContentHandover"]
    step: dict[str, Any] = steps[-1]
    return step


def test_clean_attachment_verdicts_of_both_ends_reach_the_senders_evidence(
    setup: Any, notary_server: NotaryProcess, clamd_socket: str, tmp_path: Path
) -> None:
    c = setup
    contract = tmp_path / "contract.pdf"
    contract.write_bytes(PDF)
    digest = hashlib.sha256(PDF).hexdigest()
    sent, eml = _send_attachment(c, tmp_path, contract, CERTMAIL_CLAMD=clamd_socket)

    opened = json_of(run(c.bob, "open", str(eml), "--ack", "--json", CERTMAIL_CLAMD=clamd_socket))
    (att,) = opened["attachments"]
    assert att["scan"] == "clean" and att["scan_engine"].startswith("ClamAV ")
    assert att["manifest_scan"]["status"] == "clean"
    engine = att["scan_engine"]

    step = _handover(c, sent["sha256"])
    assert step["key"] == "recipient's key"
    (scan,) = step["scans"]
    assert scan["sha256"] == digest
    sender, recipient = scan["sent"], scan["opened"]
    assert sender["asserted_by"] == "sender" and "before sending" in sender["label"]
    assert recipient["asserted_by"] == "recipient" and "on opening" in recipient["label"]
    for v in (sender, recipient):
        assert v["result"] == "clean" and v["version"] == engine
        # The fixture's tiny database has no version: clamd answers "ClamAV x.y.z" alone.
        assert v["engine"] == engine.split("/")[0]
    text = run(c.alice, "receipts", sent["sha256"]).stdout
    assert f"the recipient's terminal scanned it on opening: clean ({engine})" in text
    assert f"the sender's terminal scanned it before sending: clean ({engine})" in text

    bundle = tmp_path / "deal.zip"
    assert run(c.alice, "proof", "export", sent["sha256"], "-o", str(bundle)).returncode == 0
    report = json_of(
        verify_pinned(c.alice, notary_server, bundle, tmp_path, "--allow-partial", "--json")
    )
    ev = next(e for e in report["events"] if e["event"] == "ContentHandover")
    assert ev["scans"] == step["scans"]
    assert {ch["item"]: ch["status"] for ch in report["checks"]}["02 acknowledgement"] == "ok"
    shown = verify_pinned(c.alice, notary_server, bundle, tmp_path, "--allow-partial").stdout
    assert "02 attachment" in shown and "the recipient's terminal scanned it on opening" in shown

    # Format 6 (renderer 6, as 5 here): the certificate states both verdicts, by who said it.
    files = read_members(bundle.read_bytes())
    assert json.loads(files["bundle.json"]) == {"format": 6} and report["format"] == 6
    page = files["certificate.html"].decode()
    assert f"the recipient&#x27;s terminal scanned it on opening: clean ({engine})" in page
    assert f"the sender&#x27;s terminal scanned it before sending: clean ({engine})" in page

    # The verdicts are in the signed text: change one and the signature no longer holds.
    v, _, _ = check_evidence(files, notary_server.vkey, None, None, documents=False)
    handover = next(e for e in v.events if e.statement["event"] == "ContentHandover")
    signed = handover.statement["signed"]
    assert signed.startswith(ACK_TITLE_V2) and f"Opened-Scan: clean by {engine}" in signed
    forged = signed.replace(f"Manifest-Scan: clean by {engine}", "Manifest-Scan: not scanned")
    parse_ack_text(forged)  # still well-formed: only the signature can tell
    tampered = replace(handover, statement={**handover.statement, "signed": forged})
    with pytest.raises(VerificationError, match="acknowledgement signature"):
        check_acknowledgement(tampered, [c.bob.email], sent["sha256"], c.alice.keyring)
    check_acknowledgement(handover, [c.bob.email], sent["sha256"], c.alice.keyring)


def test_infected_attachment_is_refused_on_opening_and_not_acknowledged(
    setup: Any, clamd_socket: str, tmp_path: Path
) -> None:
    """Today ``open`` saves nothing of an infected message and acknowledges nothing (there
    is no override); opened without a scanner, the acknowledgement says so."""
    c = setup
    sent, eml = _send_attachment(c, tmp_path, eicar_file(tmp_path))  # Alice has no scanner
    p = run(c.bob, "open", str(eml), "--ack", "--json", CERTMAIL_CLAMD=clamd_socket)
    assert p.returncode == 4 and "infected" in one_line_error(p)
    steps = json_of(run(c.alice, "receipts", sent["sha256"], "--json"))["recipients"]
    assert [s["event"] for s in steps[c.bob.email]] == ["SubmissionAcceptance"]

    opened = json_of(run(c.bob, "open", str(eml), "--ack", "--json"))  # no scanner at Bob's
    assert opened["attachments"][0]["scan"] == "not scanned"
    (scan,) = _handover(c, sent["sha256"])["scans"]
    assert scan["sent"]["result"] == "not scanned" and scan["opened"]["result"] == "not scanned"
    text = run(c.alice, "receipts", sent["sha256"]).stdout
    assert "the sender's terminal did NOT scan it before sending" in text
    assert "the recipient's terminal did NOT scan it on opening" in text


#: (what, changed into what) in a well-formed v2 text: each makes it malformed.
MALFORMED = [
    ("Opened-Scan: clean by ", "Opened-Scan: infected by "),
    ("Opened-Scan: clean by ", "Opened-Scan: clean by\x07"),
    ("Opened-Scan: clean by ", "Opened-Scan: not scanned by "),
    ("Manifest-Scan: ", "Manifest-Scan:"),
    ("Attachments scanned for viruses: 1", "Attachments scanned for viruses: 2"),
    ("Attachments scanned for viruses: 1", "Attachments scanned for viruses: 01"),
    ("\nAttachment: ", "\nAttachment: ZZ"),
    ("\n\nAttachment: ", "\nAttachment: "),
]


def test_notary_refuses_malformed_verdict_lines(
    setup: Any, notary_server: NotaryProcess, tmp_path: Path
) -> None:
    """A hostile client's v2 text with a malformed verdict block: 400, nothing logged."""
    from notary.ackformat import AttachmentScan, ScanResult

    c = setup
    sent = json_of(run(c.alice, *send_args(c.bob.email, "Hi", "--via", "smtp"), stdin=b"x\n"))
    clean = ScanResult("clean", "ClamAV 1.0.7/27300/Mon Nov 20 09:27:18 2023")
    scans = (AttachmentScan("ab" * 32, clean, clean),)
    good = signed_ack(c.bob.keyring, sent, c.bob.email, notary_server.url, scans).to_json()
    for old, new in MALFORMED:
        assert old in good["signed"]
        bad = dict(good, signed=good["signed"].replace(old, new, 1))
        r = httpx.post(notary_server.url + "/v1/ack", json=bad)
        assert r.status_code == 400 and r.json()["error"] == "bad_request", (new, r.text)
    steps = json_of(run(c.alice, "receipts", sent["sha256"], "--json"))["recipients"]
    assert [s["event"] for s in steps[c.bob.email]] == ["SubmissionAcceptance"]
    r = httpx.post(notary_server.url + "/v1/ack", json=good)  # the well-formed one is logged
    assert r.status_code == 200, r.text
    assert _handover(c, sent["sha256"])["scans"][0]["opened"]["database"] == "27300"


def test_verdict_json_splits_clamds_version_and_names_who_asserted_it() -> None:
    from certmail.scanverdicts import labelled, manifest_verdict, sentences
    from notary.ackformat import AttachmentScan, ScanResult

    full = "ClamAV 1.0.7/27300/Mon Nov 20 09:27:18 2023"
    scans = (
        AttachmentScan("cd" * 32, manifest_verdict({"status": "ok?"}), ScanResult("clean", full)),
    )
    (one,) = labelled(scans)
    assert one["opened"] == {
        "asserted_by": "recipient",
        "label": "the recipient's terminal scanned it on opening",
        "result": "clean",
        "engine": "ClamAV 1.0.7",
        "database": "27300",
        "database_date": "Mon Nov 20 09:27:18 2023",
        "version": full,
    }
    assert one["sent"]["result"] == "not stated"  # a manifest's odd scan member: no claim
    assert manifest_verdict({"status": "clean", "engine": "x\ny"}) == ScanResult("clean")
    assert sentences([one])[1].endswith(f"on opening: clean ({full})")


def test_more_attachments_than_a_text_lists_make_a_version_1_acknowledgement() -> None:
    from certmail.results import AttachmentInfo
    from certmail.scanverdicts import scans_of
    from notary.ackformat import MAX_SCANNED

    def infos(n: int) -> list[AttachmentInfo]:
        return [AttachmentInfo("a", "text/plain", 1, "ab" * 32, "not scanned") for _ in range(n)]

    assert scans_of([]) is None
    listed = scans_of(infos(MAX_SCANNED))
    assert listed is not None and len(listed) == MAX_SCANNED
    assert listed[0].manifest.result == "not stated" and listed[0].opened.result == "not scanned"
    assert scans_of(infos(MAX_SCANNED + 1)) is None


def test_the_largest_v2_text_is_written_and_read_back() -> None:
    from datetime import UTC, datetime

    from notary.ackformat import MAX_ENGINE, MAX_SCANNED, Ack, AttachmentScan, ScanResult, ack_text

    v = ScanResult("clean", "C" * MAX_ENGINE)
    scans = tuple(AttachmentScan(f"{i:064x}", v, v) for i in range(MAX_SCANNED))
    ack = Ack(
        "ab" * 32, "<" + "m" * 990 + "@x>", "bob@example.net", datetime.now(UTC), "http://n", scans
    )
    assert parse_ack_text(ack_text(ack)) == ack
