"""Receipt emails (opt-in per account): after each relay evidence event the notary mails
the sender the receipt, DKIM-signed by the relay domain, through its own delivery
path (MX lookup against a real DNS server, real aiosmtpd servers on loopback)."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from email import message_from_bytes
from email.message import Message
from pathlib import Path
from typing import Any

import httpx
import pytest

from keys.dkim import dkim_verify, dns_record, find_dkim_key, generate_dkim_key
from notary.note import Verifier
from notary.receipt import Receipt
from tests.fixtures.notary import init_notary_dir
from tests.notary.relay_helpers import ALICE, MxWorld, wait_for

CAROL = "carol@c.test"


@pytest.fixture
def world(tmp_path: Path) -> Iterator[MxWorld]:
    d = init_notary_dir(tmp_path / "notary")
    generate_dkim_key(d / "dkim", "notary.test", "relay", "ed25519")
    w = MxWorld(d, tmp_path)
    w.route({"a.test": "127.0.0.21", "b.test": "127.0.0.22", "c.test": "127.0.0.23"})
    w.start()
    yield w
    w.stop()


def _attachment(msg: Message) -> tuple[str, str, bytes]:
    parts = [p for p in msg.walk() if p.get_filename()]
    assert len(parts) == 1, [p.get_content_type() for p in msg.walk()]
    payload = parts[0].get_payload(decode=True)
    assert isinstance(payload, bytes)
    return parts[0].get_filename() or "", parts[0].get_content_type(), payload


def test_receipt_emails_opt_in(world: MxWorld) -> None:
    w = world
    alice_mx, bob_mx, carol_mx = (w.sink(f"127.0.0.{n}") for n in (21, 22, 23))
    # Carol opts in when her account is made, then out again; Alice opts in later.
    carol_token = w.relay.proc.accounts("add", CAROL, "--receipt-emails").strip().splitlines()[-1]
    w.relay.proc.accounts("set", CAROL, "--no-receipt-emails")
    w.relay.proc.accounts("set", ALICE, "--receipt-emails")
    listed = {
        a["addresses"][0]: a["receipt_emails"]
        for a in json.loads(w.relay.proc.accounts("list", "--json"))
    }
    assert listed == {ALICE: True, CAROL: False}

    carol_sha = w.submit("c1", ["bob@b.test"], sender=CAROL, token=carol_token)
    wait_for(lambda: len(bob_mx.messages) == 1, what="carol's message at bob's server")

    # Alice: one recipient delivered, one failing (NXDOMAIN): two events, two emails.
    rcpts = ["bob@b.test", "dave@nowhere.test"]
    sha = w.submit("a1", rcpts)
    wait_for(lambda: len(alice_mx.messages) == 2, what="two receipt emails at alice's server")

    verifier = Verifier.from_vkey(w.relay.proc.vkey)
    key = find_dkim_key(w.relay.proc.directory / "dkim", "notary.test")
    assert key is not None
    _, record = dns_record(key)
    logged = {e["event"]: e for e in w.relay.events(sha)}
    seen: dict[str, Any] = {}
    for got in alice_mx.messages:
        assert got.mail_from == "<>" and got.rcpt_tos == [ALICE]  # null reverse-path
        dkim_verify(
            got.data,
            dnsfunc=lambda q: record.encode() if q == b"relay._domainkey.notary.test" else b"",
        )
        msg = message_from_bytes(got.data)
        assert msg["From"] == "certmail notary <postmaster@notary.test>"
        name, ctype, raw = _attachment(msg)
        assert ctype == "application/json"
        receipt = Receipt.from_json(json.loads(raw))
        receipt.verify(verifier)
        entry = json.loads(receipt.entry)
        assert name == f"receipt-{entry['event']}.json"
        assert entry["message"]["sha256"] == sha
        seen[entry["event"]] = entry
    assert set(seen) == {"RelayToNonERDS", "RelayToNonERDSFailure"}
    assert seen["RelayToNonERDS"] == logged["RelayToNonERDS"]
    assert seen["RelayToNonERDSFailure"]["recipient"] == "dave@nowhere.test"
    # Carol's delivery was logged before Alice's message was even sent; no email for it.
    r = httpx.get(
        f"{w.relay.url}/v1/messages/{carol_sha}/receipts",
        headers={"Authorization": f"Bearer {carol_token}"},
        timeout=10,
    )
    carol_events = [json.loads(base64.b64decode(x["entry"]))["event"] for x in r.json()["receipts"]]
    assert carol_events == ["SubmissionAcceptance", "RelayToNonERDS"]
    assert carol_mx.messages == []
    assert len(bob_mx.messages) == 2  # the two real messages, no receipt emails


def test_a_failure_bounces_to_the_envelope_sender_without_receipt_emails(
    world: MxWorld,
) -> None:
    """An account without receipt emails still gets the failure DSN (as an MTA bounces
    to the envelope sender): ``multipart/report; report-type=delivery-status`` from the
    null reverse-path, the failed recipient in its ``message/delivery-status`` part, no
    receipt attached; the delivered recipient gets no mail about it."""
    w = world
    carol_mx, bob_mx = w.sink("127.0.0.23"), w.sink("127.0.0.22")
    token = w.relay.proc.token_for(CAROL)
    rcpts = ["bob@b.test", "dave@nowhere.test"]
    sha = w.submit("c2", rcpts, sender=CAROL, token=token)
    wait_for(lambda: len(carol_mx.messages) == 1, what="the bounce at carol's server")
    (got,) = carol_mx.messages
    assert got.mail_from == "<>" and got.rcpt_tos == [CAROL]
    msg = message_from_bytes(got.data)
    assert msg.get_content_type() == "multipart/report"
    assert msg.get_param("report-type") == "delivery-status"
    parts = msg.get_payload()
    assert isinstance(parts, list)
    assert [p.get_content_type() for p in parts] == ["text/plain", "message/delivery-status"]
    assert f"certmail receipts {sha}" in str(parts[0].get_payload())
    per_message, per_recipient = parts[1].get_payload()  # RFC 3464 §2.2, §2.3
    assert per_message["Reporting-MTA"] == "dns; notary.test"
    assert per_recipient["Final-Recipient"] == "rfc822; dave@nowhere.test"
    assert per_recipient["Action"] == "failed" and per_recipient["Status"] == "5.1.2"
    assert not [p for p in msg.walk() if p.get_filename()]  # no receipt attached
    wait_for(lambda: len(bob_mx.messages) == 1, what="the message at bob's server")
    r = httpx.get(
        f"{w.relay.url}/v1/messages/{sha}/receipts",
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )
    events = [json.loads(base64.b64decode(x["entry"]))["event"] for x in r.json()["receipts"]]
    assert "RelayToNonERDSFailure" in events  # the failure is in the receipts as well
    assert len(carol_mx.messages) == 1  # and the delivery got no mail
