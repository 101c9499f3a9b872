"""Delivery state and deadlines (issue 10 items 5 and 17): a dripping recipient server
holds only its own destination's slots and its attempts end at their deadline; deferrals
are visible through ``GET /v1/messages/{sha256}/deliveries`` and reported by RFC 3464 DSNs.
Real notary subprocess, DNS server and SMTP servers on loopback."""

from __future__ import annotations

import re
from collections.abc import Iterator
from email import message_from_bytes
from email.message import Message
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from notary.relay.notices import duration
from tests.fixtures.drip import DripServer
from tests.fixtures.notary import init_notary_dir
from tests.notary.relay_helpers import ALICE, MxWorld, configure, wait_for


def _deliveries(w: MxWorld, sha: str, token: str | None = None) -> httpx.Response:
    return httpx.get(
        f"{w.relay.url}/v1/messages/{sha}/deliveries",
        headers={"Authorization": f"Bearer {token or w.relay.token}"},
        timeout=10,
    )


@pytest.fixture
def world(tmp_path: Path) -> Iterator[MxWorld]:
    d = init_notary_dir(tmp_path / "notary")
    w = MxWorld(d, tmp_path)
    w.route({"a.test": "127.0.0.41", "b.test": "127.0.0.42", "slow.test": "127.0.0.43"})
    yield w
    w.stop()


def test_a_dripping_destination_does_not_starve_the_others(world: MxWorld) -> None:
    w = world
    configure(
        w.relay.proc.directory,
        relay_attempt_deadline=1.5,
        relay_concurrency=4,
        relay_destination_concurrency=2,
        relay_retry_initial=0.2,
    )
    drip = DripServer("127.0.0.43", w.port)
    try:
        bob_mx = w.sink("127.0.0.42")
        w.start()
        slow = [f"u{i}@slow.test" for i in range(4)]
        slow_sha = w.submit("slow", slow)
        wait_for(lambda: drip.connections >= 2, what="attempts at the dripping server")
        sha = w.submit("fast", ["bob@b.test"])
        w.relay.wait_events(sha, "RelayToNonERDS")
        assert len(bob_mx.messages) == 1
        # The slow domain's deliveries are still undelivered, not failed ...
        events = [e["event"] for e in w.relay.events(slow_sha)]
        assert events == ["SubmissionAcceptance"]

        # ... and each of their attempts ended at its deadline, to be retried.
        def all_cut_off() -> bool:
            rows = _deliveries(w, slow_sha).json()["deliveries"]
            return len(rows) == len(slow) and all(
                r["state"] == "queued"
                and r["attempts"] >= 1
                and "attempt deadline (1.5 s) exceeded" in (r["last_error"] or "")
                for r in rows
            )

        wait_for(all_cut_off, timeout=60, what="every slow attempt cut off at its deadline")
    finally:
        drip.stop()


def _parts(msg: Message) -> dict[str, Message]:
    """The report's own parts by type (not the field blocks inside message/delivery-status)."""
    parts = msg.get_payload()
    assert isinstance(parts, list)
    return {p.get_content_type(): p for p in parts if isinstance(p, Message)}


def _dsn_fields(msg: Message) -> tuple[Message, Message]:
    assert msg.get_content_type() == "multipart/report"
    assert msg.get_param("report-type") == "delivery-status"
    status = _parts(msg)["message/delivery-status"]
    blocks = status.get_payload()
    assert isinstance(blocks, list) and len(blocks) == 2
    per_message, per_recipient = blocks
    assert isinstance(per_message, Message) and isinstance(per_recipient, Message)
    return per_message, per_recipient


def test_deferrals_are_visible_and_reported_as_dsns(world: MxWorld) -> None:
    w = world
    configure(
        w.relay.proc.directory, relay_retry_initial=0.3, relay_warn_after=2, relay_retry_deadline=5
    )
    alice_mx, bob_mx = w.sink("127.0.0.41"), w.sink("127.0.0.42")
    bob_mx.fail("rcpt", 451, "4.7.1 greylisted, come back later", sticky=True)
    w.start()
    w.relay.proc.accounts("set", ALICE, "--receipt-emails")
    carol_token = w.relay.proc.token_for("carol@a.test")
    sha = w.submit("grey", ["bob@b.test"])

    # The delivery state shows the deferral: attempts, the server's reply, the next attempt.
    def deferred() -> dict[str, Any] | None:
        rows = _deliveries(w, sha).json()["deliveries"]
        return rows[0] if rows[0]["attempts"] >= 1 else None

    wait_for(lambda: deferred() is not None, what="a deferred attempt")
    row = deferred()
    assert row is not None and row["recipient"] == "bob@b.test"
    assert row["last_reply"] == {"code": 451, "text": "4.7.1 greylisted, come back later"}
    assert row["state"] in ("queued", "failed") and row["last_attempt"]
    if row["state"] == "queued":
        assert row["next_attempt"]
    # Only the sender's account sees it; another answers as for an unknown message.
    assert _deliveries(w, sha, carol_token).status_code == 404
    assert _deliveries(w, "ab" * 32).status_code == 404
    assert httpx.get(f"{w.relay.url}/v1/messages/{sha}/deliveries").status_code == 401

    # Past the deadline: the failure evidence carries the last reply.
    fail = w.relay.wait_events(sha, "RelayToNonERDSFailure")[-1]
    assert fail["reason"] == "deadline"
    assert fail["reply"] == {"code": 451, "text": "4.7.1 greylisted, come back later"}
    assert _deliveries(w, sha).json()["deliveries"][0]["state"] == "failed"

    # Alice got a delay DSN and (receipt emails on) a failure DSN with the receipt.
    wait_for(lambda: len(alice_mx.messages) == 2, what="two DSNs at alice's server")
    by_action: dict[str, tuple[Message, Message, Message]] = {}
    for got in alice_mx.messages:
        assert got.mail_from == "<>"
        msg = message_from_bytes(got.data)
        per_message, per_recipient = _dsn_fields(msg)
        by_action[str(per_recipient["Action"])] = (msg, per_message, per_recipient)
    assert set(by_action) == {"delayed", "failed"}
    msg, per_message, rcpt = by_action["delayed"]
    assert per_message["Reporting-MTA"] == "dns; notary.test"
    assert rcpt["Final-Recipient"] == "rfc822; bob@b.test"
    assert rcpt["Status"] == "4.7.1"
    assert rcpt["Diagnostic-Code"] == "smtp; 451 4.7.1 greylisted, come back later"
    arrival = parsedate_to_datetime(str(per_message["Arrival-Date"]))
    last = parsedate_to_datetime(str(rcpt["Last-Attempt-Date"]))
    until = parsedate_to_datetime(str(rcpt["Will-Retry-Until"]))
    assert round((until - arrival).total_seconds()) == 5  # relay_retry_deadline
    # The elapsed time stated is the real one (at least relay_warn_after), not "0 hours".
    text = _parts(msg)["text/plain"].get_payload(decode=True)
    assert isinstance(text, bytes)
    m = re.search(rb"accepted (\d+) seconds? ago", text)
    assert m is not None, text
    stated = int(m.group(1))  # the header dates are whole seconds: within one of them
    assert stated >= 2 and abs(stated - (last - arrival).total_seconds()) <= 1
    assert b"(5 seconds after acceptance)" in text
    _, _, rcpt = by_action["failed"]
    assert rcpt["Status"] == "5.4.7" and "451 4.7.1" in str(rcpt["Diagnostic-Code"])
    assert "receipt-RelayToNonERDSFailure.json" in {
        p.get_filename() for p in by_action["failed"][0].walk()
    }


def test_duration_reads_as_people_say_it() -> None:
    assert duration(0) == "0 seconds"
    assert duration(59) == "59 seconds"
    assert duration(90) == "1 minute 30 seconds"
    assert duration(12 * 3600) == "12 hours"
    assert duration(86400 + 7200 + 5) == "1 day 2 hours"
