"""``campaign send`` asks the notary for many messages' receipts in one request: relay mode
one ``POST /v1/receipts/batch`` for the relay's acceptances (no ``GET .../receipts`` per
message), direct mode one ``POST /v1/notarize/batch`` (no ``POST /v1/notarize`` per
message); each receipt kept verifies and names its message's exact bytes.

Real components: gpg, ``certmail notary serve`` with its relay, an aiosmtpd sink, and a
loopback TCP proxy in front of the notary's HTTP API that records every request.
"""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from certmail.ledger import Ledger
from notary.receipt import Receipt
from tests.fixtures import relay as relay_fixtures
from tests.fixtures.campaign import (
    Recipients,
    kill_agent,
    kill_and_resume,
    make_recipients,
    write_csv,
)
from tests.fixtures.cli import CERTMAIL, clean_env
from tests.fixtures.notary_tap import HttpTap
from tests.fixtures.relay import Relay, as_sender

N = 6


def _wait(pred: Any, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, "timed out waiting for the deliveries"
        time.sleep(0.05)


relay = relay_fixtures.relay  # retrying after 0.2 s


@pytest.fixture
def tap(relay: Relay) -> Iterator[HttpTap]:
    t = HttpTap(relay.url)
    yield t
    t.close()


@pytest.fixture
def six(correspondents: Any) -> Iterator[Recipients]:
    rs = make_recipients(N, Path(correspondents.alice.keyring.gnupghome))
    yield rs
    kill_agent(rs.home)


def _create(c: Any, relay: Relay, tmp: Path, emails: list[str], *extra: str, **env: str) -> None:
    body = tmp / "body.txt"
    body.write_text("Dear {{ name }},\nthe rent changes.\n")
    rows = [{"email": e, "name": f"Tenant {i}"} for i, e in enumerate(emails)]
    made = as_sender(
        c, relay, "campaign", "create", "rent", "--recipients", str(write_csv(tmp / "r.csv", rows)),
        "--subject", "Rent notice", "--body-file", str(body), "--json", *extra, **env,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr


def _campaign(
    c: Any, relay: Relay, tap: HttpTap, tmp: Path, emails: list[str], *extra: str, **env: str
) -> Any:
    _create(c, relay, tmp, emails, *extra, **env)
    sent = as_sender(
        c, relay, "campaign", "send", "rent", "--json", "--concurrency", "2",
        CERTMAIL_NOTARY_URL=tap.url, **env,
    )  # fmt: skip
    assert sent.returncode == 0, sent.stderr
    events = [json.loads(x) for x in sent.stdout.splitlines()[:-1]]
    assert sorted(e["email"] for e in events) == sorted(emails)
    assert {e["state"] for e in events} == {"accepted"}, events
    _wait(lambda: len(c.sink.messages) >= len(emails))  # the relay delivers on its own time
    assert sorted(m.rcpt_tos[0] for m in c.sink.messages) == sorted(emails)
    # every receipt kept verifies, is this message's, and the stored bytes hash to it
    h = c.alice.home
    with Ledger(h / "ledger.db", h / "outbox", h / "sent") as ledger:
        for e in events:
            (receipt,) = ledger.receipts(e["sha256"])
            stmt = Receipt.from_json(receipt).verify(relay.verifier())
            assert stmt["event"] == "SubmissionAcceptance"
            assert stmt["message"]["sha256"] == e["sha256"]
            assert stmt["message"]["id"] == e["message_id"]
            data = ledger.message_path(e["sha256"]).read_bytes()
            assert hashlib.sha256(data).hexdigest() == e["sha256"]
    return events


def test_relay_campaign_fetches_the_acceptances_in_batches(
    correspondents: Any, relay: Relay, tap: HttpTap, six: Recipients, tmp_path: Path
) -> None:
    events = _campaign(correspondents, relay, tap, tmp_path, six.emails)
    reqs = tap.requests()
    paths = [f"{m} {p.split('?')[0]}" for m, p, _ in reqs]
    assert not [p for p in paths if re.fullmatch(r"GET /v1/messages/[0-9a-f]{64}/receipts", p)]
    batches = [json.loads(b)["sha256"] for m, p, b in reqs if p == "/v1/receipts/batch"]
    assert all(m == "POST" for m, p, _ in reqs if p == "/v1/receipts/batch")
    # one request asked for several messages: fewer requests than messages, each asked once
    assert 1 <= len(batches) < N
    assert sorted(s for b in batches for s in b) == sorted(e["sha256"] for e in events)


def test_direct_campaign_notarizes_in_batches(
    correspondents: Any, relay: Relay, tap: HttpTap, six: Recipients, tmp_path: Path
) -> None:
    c = correspondents
    smtp = {"CERTMAIL_SMTP_URL": c.sink.url}
    events = _campaign(c, relay, tap, tmp_path, six.emails, "--via", "smtp", **smtp)
    reqs = tap.requests()
    assert not [p for m, p, _ in reqs if m == "POST" and p == "/v1/notarize"]
    batch = ("POST", "/v1/notarize/batch")
    batches = [json.loads(b)["items"] for m, p, b in reqs if (m, p) == batch]
    assert 1 <= len(batches) < N
    assert sorted((i["sha256"], i["message_id"]) for b in batches for i in b) == sorted(
        (e["sha256"], e["message_id"]) for e in events
    )


@pytest.mark.parametrize("via", ["relay", "smtp"])
def test_killed_between_the_hand_overs_and_their_batch_resumes_without_resending(
    correspondents: Any, relay: Relay, tap: HttpTap, six: Recipients, tmp_path: Path, via: str
) -> None:
    """The crash window this batching opens, made deterministic: every message handed
    over (the ledger says sent), none of their receipts kept, the campaign rows not yet
    updated, as a SIGKILL before the batch leaves them. ``campaign send`` again sends
    nothing twice and gets every receipt, batched."""
    import sqlite3

    c = correspondents
    env = {"CERTMAIL_SMTP_URL": c.sink.url} if via == "smtp" else {}
    events = _campaign(c, relay, tap, tmp_path, six.emails, "--via", via, **env)
    db = sqlite3.connect(c.alice.home / "ledger.db", isolation_level=None)
    db.execute("UPDATE messages SET notary='pending'")
    db.execute("DELETE FROM receipts")
    db.execute("UPDATE campaign_recipients SET state='pending'")
    db.close()
    before = len(tap.requests())
    again = as_sender(
        c, relay, "campaign", "send", "rent", "--json", "--concurrency", "2",
        CERTMAIL_NOTARY_URL=tap.url, **env,
    )  # fmt: skip
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout.splitlines()[-1])["summary"]["counts"] == {"accepted": N}
    time.sleep(1.0)  # a message the relay was handed again would arrive by now
    assert sorted(m.rcpt_tos[0] for m in c.sink.messages) == sorted(six.emails)  # once each
    path = "/v1/receipts/batch" if via == "relay" else "/v1/notarize/batch"
    asked = [json.loads(b) for m, p, b in tap.requests()[before:] if p == path]
    got = [s for a in asked for s in a.get("sha256", [i["sha256"] for i in a.get("items", [])])]
    assert sorted(got) == sorted(e["sha256"] for e in events) and len(asked) < N
    h = c.alice.home
    with Ledger(h / "ledger.db", h / "outbox", h / "sent") as ledger:
        for e in events:
            (receipt,) = ledger.receipts(e["sha256"])
            stmt = Receipt.from_json(receipt).verify(relay.verifier())
            assert stmt["message"]["sha256"] == e["sha256"]


def test_a_direct_campaign_sigkilled_mid_way_resumes_exactly_once(
    correspondents: Any, relay: Relay, tap: HttpTap, six: Recipients, tmp_path: Path
) -> None:
    """Direct mode, a real SIGKILL (tests/fixtures/campaign.kill_and_resume): each recipient
    gets one message, and each is notarized (in batches through the proxy)."""
    c = correspondents
    env = {"CERTMAIL_SMTP_URL": c.sink.url}
    _create(c, relay, tmp_path, six.emails, "--via", "smtp", **env)

    def popen(*extra: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [*CERTMAIL, "campaign", "send", "rent", "--json", *extra],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=clean_env(c.alice.home, **{**relay.env, **env, "CERTMAIL_NOTARY_URL": tap.url}),
        )

    kill_and_resume(popen, c.alice.home / "ledger.db", N)
    time.sleep(0.5)  # nothing more arrives: direct mode delivers before the line is printed
    assert sorted(m.rcpt_tos[0] for m in c.sink.messages) == sorted(six.emails)
    reqs = tap.requests()
    assert not [p for m, p, _ in reqs if (m, p) == ("POST", "/v1/notarize")]
    batch = ("POST", "/v1/notarize/batch")
    asked = {i["sha256"] for m, p, b in reqs if (m, p) == batch for i in json.loads(b)["items"]}
    rep = as_sender(c, relay, "campaign", "report", "rent", "--format", "json")
    rows = {r["email"]: r["sha256"] for r in json.loads(rep.stdout)["recipients"]}
    assert asked == set(rows.values())  # each notarized, through a batch
    h = c.alice.home
    with Ledger(h / "ledger.db", h / "outbox", h / "sent") as ledger:
        for m in c.sink.messages:
            sha = rows[m.rcpt_tos[0]]
            assert m.data.endswith(ledger.message_path(sha).read_bytes())
            (receipt,) = ledger.receipts(sha)
            assert Receipt.from_json(receipt).verify(relay.verifier())["message"]["sha256"] == sha


def test_a_resumed_run_settles_many_sending_messages_in_one_request(
    correspondents: Any, relay: Relay, tap: HttpTap, six: Recipients, tmp_path: Path
) -> None:
    """Six messages left ``sending`` by a killed run: four the relay took (their
    acceptances in the log), two that never reached it. The resumed run asks the log
    about all six in one ``POST /v1/receipts/batch`` (no ``GET .../receipts``), then only
    about the two still missing until --settle-timeout; the four are accepted and never
    resent, the two submitted again: each recipient gets one message."""
    import sqlite3

    c = correspondents
    _create(c, relay, tmp_path, six.emails)
    taken, lost = six.emails[:4], six.emails[4:]
    relay.stop()  # every message stored, none handed over
    first = as_sender(c, relay, "campaign", "send", "rent", "--json", "--concurrency", "2")
    assert json.loads(first.stdout.splitlines()[-1])["summary"]["counts"] == {"queued": N}
    relay.start()
    db = sqlite3.connect(c.alice.home / "ledger.db", isolation_level=None)
    sha = dict(db.execute("SELECT email, sha256 FROM campaign_recipients").fetchall())
    marks = ",".join("?" * len(lost))
    db.execute(f"UPDATE campaign_recipients SET state='failed' WHERE email IN ({marks})", lost)
    second = as_sender(c, relay, "campaign", "send", "rent", "--json")  # the four go out
    assert json.loads(second.stdout.splitlines()[-1])["summary"]["counts"] == {
        "accepted": 4,
        "failed": 2,
    }
    _wait(lambda: len(c.sink.messages) == 4)
    # as a SIGKILL after each one's final dot leaves them, and before the others' DATA
    for e in taken:
        db.execute("UPDATE messages SET smtp='sending', notary='pending' WHERE sha256=?", (sha[e],))
        db.execute("DELETE FROM receipts WHERE sha256=?", (sha[e],))
    db.execute("UPDATE campaign_recipients SET state='pending', sha256=NULL")
    db.close()
    h = c.alice.home
    with Ledger(h / "ledger.db", h / "outbox", h / "sent") as ledger:
        for e in lost:
            assert ledger.claim_send(sha[e])  # sending: claimed, never handed over
    before = len(tap.requests())
    third = as_sender(
        c, relay, "campaign", "send", "rent", "--json", "--settle-timeout", "1",
        CERTMAIL_NOTARY_URL=tap.url,
    )  # fmt: skip
    assert third.returncode == 0, third.stderr
    summary = json.loads(third.stdout.splitlines()[-1])["summary"]
    assert sorted((s["email"], s["settled"]) for s in summary["settled"]) == sorted(
        [(e, "accepted (in the notary's log)") for e in taken]
        + [(e, "not accepted: submitted again") for e in lost]
    )
    assert summary["counts"] == {"accepted": N}
    reqs = tap.requests()[before:]
    assert not [p for m, p, _ in reqs if re.fullmatch(r"/v1/messages/[0-9a-f]{64}/receipts", p)]
    asked = [
        json.loads(b)["sha256"] for m, p, b in reqs if (m, p) == ("POST", "/v1/receipts/batch")
    ]
    assert sorted(asked[0]) == sorted(sha.values())  # one request for all six
    assert all(not set(a) & {sha[e] for e in taken} for a in asked[1:])  # settled: not again
    assert all(set(a) <= {sha[e] for e in lost} for a in asked[1:])
    # (asked again every 0.5 s until --settle-timeout,) then the receipts of the two resent
    assert set(asked[-1]) == {sha[e] for e in lost}
    time.sleep(1.0)  # a message handed over twice would have arrived by now
    assert sorted(m.rcpt_tos[0] for m in c.sink.messages) == sorted(six.emails)  # once each
    rep = json.loads(as_sender(c, relay, "campaign", "report", "rent", "--format", "json").stdout)
    assert {r["email"]: r["sha256"] for r in rep["recipients"]} == sha  # the same bytes
    with Ledger(h / "ledger.db", h / "outbox", h / "sent") as ledger:
        for e in six.emails:
            assert ledger.get(sha[e]).smtp == "sent"
            (receipt,) = ledger.receipts(sha[e])
            stmt = Receipt.from_json(receipt).verify(relay.verifier())
            assert (stmt["event"], stmt["message"]["sha256"]) == ("SubmissionAcceptance", sha[e])
