"""Blind copies (Bcc) through the relay, and the evidence each recipient may see
(issue 10 item 18; docs/relay.md, "Blind copies").

A real relay delivering to a real aiosmtpd recipient server: bob is in To:,
carol is a blind copy (RCPT TO only). Both are delivered, each with its own
evidence; the acceptance bob's bundle carries names only bob, and no bundle or
certificate made for the other recipients shows carol.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from certmail.bundle import export_bundle, verify_bundle
from certmail.relay_client import submit
from tests.notary.relay_helpers import ALICE, BOB, RelayNotary, configure, message, wait_for

CAROL = "carol@c.test"


@pytest.fixture
def relay(notary_dir: Path, smtp_sink: Any) -> Iterator[RelayNotary]:
    configure(notary_dir, relay_retry_initial=0.2)
    r = RelayNotary(notary_dir, smtp_sink.port)
    r.start()
    yield r
    r.proc.stop()


def _bundle(relay: RelayNotary, data: bytes, for_recipient: str | None = None) -> bytes:
    url = relay.url
    sha = hashlib.sha256(data).hexdigest()

    def consistency(old: int, new: int) -> list[bytes]:
        body = httpx.get(f"{url}/v1/proof/consistency", params={"old": old, "new": new}).json()
        return [base64.b64decode(h) for h in body["proof"]]

    return export_bundle(
        data,
        relay.receipts(sha),
        vkey=httpx.get(f"{url}/v1/vkey").text,
        tsa_chain_pem=httpx.get(f"{url}/v1/tsa/chain").content,
        consistency=consistency,
        for_recipient=for_recipient,
    )


def _statements(bundle: bytes) -> list[dict[str, Any]]:
    z = zipfile.ZipFile(io.BytesIO(bundle))
    out = []
    for name in sorted(z.namelist()):
        if name.startswith("evidence/") and name.endswith(".json") and "consistency" not in name:
            out.append(json.loads(base64.b64decode(json.loads(z.read(name))["entry"])))
    return out


def test_bcc_is_delivered_with_its_own_evidence_and_hidden_from_others(
    relay: RelayNotary, smtp_sink: Any
) -> None:
    data = message("bcc1")
    sha = submit(
        data, mail_from=ALICE, recipients=[BOB, CAROL], notary_url=relay.url, token=relay.token
    )
    assert sha == hashlib.sha256(data).hexdigest()
    wait_for(
        lambda: sum(e["event"] == "RelayToNonERDS" for e in relay.events(sha)) == 2,
        what="both deliveries",
    )
    # Each got the message; bob's copy does not name carol anywhere.
    got = {m.rcpt_tos[0]: m.data for m in smtp_sink.messages}
    assert set(got) == {BOB, CAROL} and got[BOB].endswith(data) and got[CAROL].endswith(data)
    assert b"carol" not in got[BOB]

    # The sender's log: one acceptance naming bob, one for carol alone, one delivery each.
    events = relay.events(sha)
    acc = [e for e in events if e["event"] == "SubmissionAcceptance"]
    assert sorted((e["recipients"], e.get("blind", False)) for e in acc) == [
        ([BOB], False),
        ([CAROL], True),
    ]
    assert all(CAROL not in e["recipients"] for e in acc if not e.get("blind"))
    assert sorted(e["recipient"] for e in events if e["event"] == "RelayToNonERDS") == [BOB, CAROL]
    # Every acceptance has its own RFC 3161 token on the message's hash.
    tokens = [r for r in relay.receipts(sha) if r.get("tst")]
    assert len(tokens) == 2

    vkey = httpx.get(f"{relay.url}/v1/vkey").text
    # The bundle the others may see: not a byte of it names carol.
    public = _bundle(relay, data)
    z = zipfile.ZipFile(io.BytesIO(public))
    for name in z.namelist():
        assert b"carol" not in z.read(name), name
    report = verify_bundle(public, vkey=vkey)
    assert CAROL not in report.recipients and BOB in report.recipients
    kinds = [(s["event"], s.get("recipient")) for s in _statements(public)]
    assert ("RelayToNonERDS", BOB) in kinds and ("RelayToNonERDS", CAROL) not in kinds

    # The bundle for carol carries her acceptance and her delivery, and verifies.
    hers = _bundle(relay, data, CAROL)
    stmts = _statements(hers)
    assert {"SubmissionAcceptance"} == {
        s["event"] for s in stmts if s["event"] == "SubmissionAcceptance" and s.get("blind")
    }
    assert ("RelayToNonERDS", CAROL) in [(s["event"], s.get("recipient")) for s in stmts]
    report = verify_bundle(hers, vkey=vkey)
    assert CAROL in report.recipients
    # Its certificate names carol as the blind copy it is made for, not as a To: recipient.
    cert = zipfile.ZipFile(io.BytesIO(hers)).read("certificate.html").decode()
    assert f"<dt>To</dt><dd>{BOB}</dd>" in cert
    assert f"<dt>Bcc</dt><dd>{CAROL} (blind copy" in cert
    assert "Bcc" not in zipfile.ZipFile(io.BytesIO(public)).read("certificate.html").decode()


def test_bcc_header_naming_addresses_is_still_refused(relay: RelayNotary, smtp_sink: Any) -> None:
    # The relay never changes the bytes it notarizes, so it cannot strip a Bcc: field.
    s = relay.connect()
    s.login(ALICE, relay.token)
    s.mail(ALICE)
    s.rcpt(BOB)
    code, text = s.data(message("bcc2", extra=f"Bcc: {CAROL}\r\n"))
    assert code == 554 and b"Bcc" in text
    s.close()
    assert smtp_sink.messages == []
