"""``campaign create --pickup-if-no-key`` (issue 15, issue 12 item 2): a recipient without
a key gets a pickup link instead of being refused; the others get encrypted mail.

Real components: gpg (a key for two of three recipients), ``certmail notary serve``
(it keeps the pickup's K_n and ciphertext), and an aiosmtpd server standing in for the
recipients' mail server, in direct mode (``--via smtp``).
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.fixtures.campaign import Recipients, kill_agent, make_recipients, write_csv
from tests.fixtures.relay import Relay, as_sender, start_relay

NOKEY = "nokey@example.net"
LINK = re.compile(r"(https?://\S+/p/([A-Za-z0-9_-]{32}))#([A-Za-z0-9_-]{43})")


@pytest.fixture
def relay(tmp_path: Path, correspondents: Any) -> Iterator[Relay]:
    r = start_relay(tmp_path / "notary", correspondents)
    yield r
    r.stop()


@pytest.fixture
def two(correspondents: Any) -> Iterator[Recipients]:
    rs = make_recipients(2, Path(correspondents.alice.keyring.gnupghome))
    yield rs
    kill_agent(rs.home)
    shutil.rmtree(rs.home, ignore_errors=True)


def test_a_recipient_without_a_key_gets_a_pickup_link_the_others_encrypted_mail(
    correspondents: Any, relay: Relay, two: Recipients, tmp_path: Path
) -> None:
    c = correspondents
    emails = [*two.emails, NOKEY]
    csv_path = write_csv(
        tmp_path / "r.csv", [{"email": e, "name": f"Tenant {i}"} for i, e in enumerate(emails)]
    )
    body = tmp_path / "body.txt"
    body.write_text("Dear {{ name }},\nthe rent changes in March.\n", encoding="utf-8")
    smtp = {"CERTMAIL_SMTP_URL": c.sink.url}
    args = ["--recipients", str(csv_path), "--subject", "Notice", "--body-file", str(body)]

    refused = as_sender(c, relay, "campaign", "create", "rent", *args, "--via", "smtp", **smtp)
    assert refused.returncode == 2
    assert "row 4: no usable key for nokey@example.net" in refused.stderr
    assert "--pickup-if-no-key" in refused.stderr

    made = as_sender(
        c,
        relay,
        "campaign",
        "create",
        "rent",
        *args,
        "--via",
        "smtp",
        "--pickup-if-no-key",
        "--json",
        **smtp,
    )
    assert made.returncode == 0, made.stderr
    assert json.loads(made.stdout)["pickup"] == [NOKEY]

    sent = as_sender(c, relay, "campaign", "send", "rent", "--json", **smtp)
    assert sent.returncode == 0, sent.stderr
    events = [json.loads(x) for x in sent.stdout.splitlines()[:-1]]
    assert {e["email"]: e["state"] for e in events} == dict.fromkeys(emails, "accepted")

    by_rcpt = {m.rcpt_tos[0]: m.data.decode("utf-8", "replace") for m in c.sink.messages}
    assert sorted(by_rcpt) == sorted(emails)  # exactly one message each
    for e in two.emails:  # encrypted to their key, no link
        assert "multipart/encrypted" in by_rcpt[e]
        assert not LINK.search(by_rcpt[e].replace("=\r\n", ""))
    pickup_mail = by_rcpt[NOKEY].replace("=\r\n", "")
    assert "multipart/encrypted" not in pickup_mail
    assert "the rent changes" not in pickup_mail  # the email holds no content
    link = LINK.search(pickup_mail)
    assert link is not None
    page = httpx.get(f"{relay.url}/v1/pickup/{link.group(2)}", timeout=10)
    assert page.status_code == 200, page.text  # the notary holds it for the link

    report = as_sender(c, relay, "campaign", "report", "rent", "--format", "json", **smtp)
    assert report.returncode == 0, report.stderr
    rows = json.loads(report.stdout)
    rows = rows["recipients"] if isinstance(rows, dict) else rows
    assert {r["email"]: r["delivery"] for r in rows} == {
        two.emails[0]: "encrypted",
        two.emails[1]: "encrypted",
        NOKEY: "pickup",
    }
