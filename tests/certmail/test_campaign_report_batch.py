"""``campaign report`` asks the notary for its messages' receipts in pages (one ``POST
/v1/receipts/batch`` for up to 1,000 messages) instead of one ``GET .../receipts`` each,
and for their delivery state and attempts likewise (``POST /v1/deliveries/batch``, not
one ``GET .../deliveries`` each), checks every receipt as before, writes each message's
delivery attempts (one greylisted, then delivered), and writes the same report as the
per-message requests.

Real components: gpg, ``certmail notary serve`` with its relay, an aiosmtpd sink, a
recording TCP proxy and an HTTP proxy in front of the notary's HTTP API
(tests/fixtures/notary_tap.py): the HTTP proxy answers 404 to the batch route, as a
notary without it does (the client then asks one message at a time: the report's
per-message path), or alters one receipt of the batch's answer.
"""

from __future__ import annotations

import base64
import csv
import io
import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures import relay as relay_fixtures
from tests.fixtures.campaign import Recipients, kill_agent, make_recipients, write_csv
from tests.fixtures.notary_tap import HttpRewriter, HttpTap
from tests.fixtures.relay import Relay, as_sender

N = 6
FORMATS = ("json", "csv", "html")
BATCH = "/v1/receipts/batch"
ONE = re.compile(r"/v1/messages/[0-9a-f]{64}/receipts")
DELIVERIES = "/v1/deliveries/batch"
ONE_DELIVERY = re.compile(r"/v1/messages/[0-9a-f]{64}/deliveries")
GREY = "451 4.7.1 greylisted, come back later"


relay = relay_fixtures.relay  # retrying after 0.2 s


@pytest.fixture
def sent(correspondents: Any, relay: Relay, tmp_path: Path) -> Iterator[Recipients]:
    """A campaign ``rent`` of N recipients, sent, delivered, with the delivery evidence."""
    c = correspondents
    rs = make_recipients(N, Path(c.alice.keyring.gnupghome))
    body = tmp_path / "body.txt"
    body.write_text("Dear {{ name }},\nthe rent changes.\n")
    rows = [{"email": e, "name": f"Tenant {i}"} for i, e in enumerate(rs.emails)]
    made = as_sender(
        c, relay, "campaign", "create", "rent", "--recipients",
        str(write_csv(tmp_path / "r.csv", rows)), "--subject", "Rent notice",
        "--body-file", str(body),
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    c.sink.fail("rcpt", 451, GREY[4:])  # the first delivery attempt only: tried again
    out = as_sender(c, relay, "campaign", "send", "rent", "--concurrency", "2")
    assert out.returncode == 0, out.stderr
    deadline = time.monotonic() + 60
    while True:  # the relay delivers, then logs the Delivery, on its own time
        rep = as_sender(c, relay, "campaign", "report", "rent", "--format", "json")
        if json.loads(rep.stdout)["totals"] == {"delivered": N}:
            break
        assert time.monotonic() < deadline, rep.stdout
        time.sleep(0.2)
    yield rs
    kill_agent(rs.home)


def _reports(c: Any, relay: Relay, url: str) -> dict[str, str]:
    out = {}
    for fmt in FORMATS:
        p = as_sender(
            c, relay, "campaign", "report", "rent", "--format", fmt, CERTMAIL_NOTARY_URL=url
        )
        assert p.returncode == 0, p.stderr
        out[fmt] = p.stdout
    return out


def test_report_asks_for_the_receipts_in_one_batch_and_reads_the_same(
    correspondents: Any, relay: Relay, sent: Recipients
) -> None:
    c = correspondents
    tap = HttpTap(relay.url)
    try:
        batched = _reports(c, relay, tap.url)
        reqs = tap.requests()
    finally:
        tap.close()
    assert not [p for m, p, _ in reqs if ONE.fullmatch(p.split("?")[0])]
    assert not [p for m, p, _ in reqs if ONE_DELIVERY.fullmatch(p.split("?")[0])]
    rows = json.loads(batched["json"])["recipients"]
    for route in (BATCH, DELIVERIES):
        asked = [json.loads(b)["sha256"] for m, p, b in reqs if (m, p) == ("POST", route)]
        assert len(asked) == len(FORMATS)  # one request per report for its N messages
        assert all(sorted(a) == sorted(r["sha256"] for r in rows) for a in asked)
    _check_attempts(rows, batched)

    # the per-message path (a notary without the route: one GET each) reads the same bytes
    old = HttpRewriter(relay.url, refuse=(f"POST {BATCH}", f"POST {DELIVERIES}"))
    try:
        per_message = _reports(c, relay, old.url)
        gets = [p for m, p, _ in old.requests if m == "GET" and ONE.fullmatch(p)]
        states = [p for m, p, _ in old.requests if m == "GET" and ONE_DELIVERY.fullmatch(p)]
    finally:
        old.close()
    assert len(gets) == len(states) == N * len(FORMATS)
    assert per_message == batched
    # and what test_status_report_proofs_list_cancel expects of it
    assert json.loads(batched["json"])["totals"] == {"delivered": N}
    assert all(r["delivered"] and r["accepted"] for r in rows)
    assert "<svg" in batched["html"] and "<rect" in batched["html"]
    assert all(e in batched["html"] for e in sent.emails)
    assert batched["csv"].splitlines()[0].startswith("row,email,state,sha256")
    assert len(list(csv.DictReader(io.StringIO(batched["csv"])))) == N


def _check_attempts(rows: list[dict[str, Any]], reports: dict[str, str]) -> None:
    """Every message's attempts in each format: the greylisted one twice (451, then
    delivered by the server its evidence names), the others once."""
    tries = {r["email"]: r["attempts"] for r in rows}
    (grey,) = [e for e, a in tries.items() if len(a) == 2]
    assert all(len(a) == 1 for e, a in tries.items() if e != grey)
    first, second = tries[grey]
    assert (first["outcome"], first["reply"]) == ("deferred", GREY)
    assert first["time"] and first["finished"] and "451" in first["error"]
    assert second["outcome"] == "delivered" and second["reply"].startswith("250")
    assert second["server"] and second["time"] >= first["finished"]
    assert all(a[-1]["outcome"] == "delivered" and a[-1]["server"] for a in tries.values())
    # csv: one column, a line per attempt (TIME OUTCOME SERVER REPLY)
    table = list(csv.DictReader(io.StringIO(reports["csv"])))
    cell = {x["email"]: x["attempts"].splitlines() for x in table}
    assert cell[grey][0] == f"{first['time']} deferred - {GREY}"
    assert cell[grey][1] == f"{second['time']} delivered {second['server']} {second['reply']}"
    assert all(len(v) == 1 and " delivered " in v[0] for e, v in cell.items() if e != grey)
    assert f"{first['time']} deferred - {GREY}<br>{second['time']} delivered" in reports["html"]


def test_more_messages_than_a_page_are_asked_for_page_by_page(
    correspondents: Any, relay: Relay, sent: Recipients, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Pages of 4 (the notary's bound is 1,000): N = 6 messages in two batches, in the
    campaign's order, each asked once, and the report the CLI writes."""
    from certmail.api import Certmail
    from certmail.campaign import report
    from certmail.config import load_settings
    from tests.fixtures.cli import clean_env

    c = correspondents
    whole = as_sender(c, relay, "campaign", "report", "rent", "--format", "json").stdout
    monkeypatch.setattr(report, "RECEIPTS_PAGE", 4)
    tap = HttpTap(relay.url)
    env = clean_env(c.alice.home, **{**relay.env, "CERTMAIL_NOTARY_URL": tap.url})
    try:
        with Certmail(load_settings(c.alice.home, env)) as cm:
            text = report.render("rent", report.campaign_rows(cm, "rent"), "json")
        reqs = tap.requests()
    finally:
        tap.close()
    assert text == whole
    asked = [json.loads(b)["sha256"] for m, p, b in reqs if (m, p) == ("POST", BATCH)]
    rows = json.loads(whole)["recipients"]
    assert asked == [[r["sha256"] for r in rows[:4]], [r["sha256"] for r in rows[4:]]]
    assert not [p for m, p, _ in reqs if ONE.fullmatch(p)]


def _tamper(victim: str) -> Any:
    """Alter the statement of ``victim``'s last receipt in the batch's answer."""

    def rewrite(method: str, path: str, body: bytes) -> bytes:
        if (method, path) != ("POST", BATCH):
            return body
        obj = json.loads(body)
        for m in obj["messages"]:
            if m["sha256"] == victim:
                entry = bytearray(base64.b64decode(m["receipts"][-1]["entry"]))
                entry[-2] ^= 1
                m["receipts"][-1]["entry"] = base64.b64encode(bytes(entry)).decode()
        return json.dumps(obj).encode()

    return rewrite


def test_a_tampered_receipt_in_the_batch_gives_that_message_no_evidence(
    correspondents: Any, relay: Relay, sent: Recipients
) -> None:
    c = correspondents
    good = as_sender(c, relay, "campaign", "report", "rent", "--format", "json")
    rows = json.loads(good.stdout)["recipients"]
    victim = rows[2]
    bad = HttpRewriter(relay.url, rewrite=_tamper(victim["sha256"]))
    try:
        p = as_sender(
            c, relay, "campaign", "report", "rent", "--format", "json",
            CERTMAIL_NOTARY_URL=bad.url,
        )  # fmt: skip
    finally:
        bad.close()
    assert p.returncode == 0, p.stderr
    got = json.loads(p.stdout)
    assert got["totals"] == {"delivered": N - 1, "accepted": 1}
    row = got["recipients"][2]
    assert row["email"] == victim["email"]
    # none of its receipts is believed: only the ledger's facts (as when the GET's was bad)
    assert row["state"] == "accepted" and row["delivered"] is None
    assert row["accepted"]  # the ledger's hand-over time
    assert [r for i, r in enumerate(got["recipients"]) if i != 2] == [
        r for i, r in enumerate(rows) if i != 2
    ]
