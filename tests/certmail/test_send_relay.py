"""``certmail send`` in relay mode, end to end through the real CLI.

A real ``certmail notary serve --http ... --smtp ... --smarthost`` (a
subprocess) relays to an aiosmtpd server standing in for Bob's mail server.
Alice's CLI gets only CERTMAIL_HOME, CERTMAIL_NOTARY_URL and
CERTMAIL_NOTARY_TOKEN (her address and name are in her home's config.toml):
relay mode is the default whenever a notary is configured.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from certmail.ledger import Ledger
from notary.receipt import Receipt
from tests.fixtures.cli import CERTMAIL, json_of, one_line_error, send_args
from tests.fixtures.relay import Relay, as_sender, start_relay


@pytest.fixture
def relay(tmp_path: Path, correspondents: Any) -> Iterator[Relay]:
    """Alice's notary (an account for her address) relaying to Bob's server (the sink)."""
    r = start_relay(tmp_path / "notary", correspondents, relay_retry_initial=0.2)
    yield r
    r.stop()


alice = as_sender


def wait_for(pred: Any, what: str, timeout: float = 60.0) -> None:
    """Poll until ``pred()`` (a generous bound: not a timing assertion)."""
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def stored_copy(c: Any, sha: str) -> bytes:
    with Ledger(
        c.alice.home / "ledger.db", c.alice.home / "outbox", c.alice.home / "sent"
    ) as ledger:
        return ledger.message_path(sha).read_bytes()


def events(receipts: list[dict[str, Any]]) -> list[str]:
    return [json.loads(base64.b64decode(r["entry"]))["event"] for r in receipts]


_HEADER_LINE = re.compile(rb"([!-9;-~]+:|[ \t])[^\r\n]*\r\n")


def test_relay_is_the_default_delivers_exact_bytes_opens_and_has_receipts(
    correspondents: Any, relay: Relay, tmp_path: Path
) -> None:
    c = correspondents
    att = tmp_path / "contract.txt"
    att.write_bytes(b"the signed contract\n")
    out = json_of(
        alice(
            c,
            relay,
            *send_args(c.bob.email, "Contract", "--attach", str(att)),
            stdin=b"Dear Bob,\nhere it is.\n",
        )
    )
    assert out["via"] == "relay" and out["status"] == "sent"
    assert out["recipients"] == [c.bob.email]
    sha = out["sha256"]
    sealed = stored_copy(c, sha)
    assert hashlib.sha256(sealed).hexdigest() == sha
    assert out["smtp_reply"] == f"250 Accepted sha256={sha}"

    # The acceptance receipt came back with the send, verified; it names this message.
    (acc,) = out["receipts"]
    stmt = Receipt.from_json(acc).verify(relay.verifier())
    assert stmt["event"] == "SubmissionAcceptance"
    assert stmt["message"] == {"sha256": sha, "id": out["message_id"]}
    assert stmt["submitter"] == c.alice.email and stmt["recipients"] == [c.bob.email]
    assert stmt["content"] == {"encrypted": True}

    # Bob's server gets the exact sealed bytes, after header lines the relay prepended.
    wait_for(lambda: len(c.sink.messages) == 1, "delivery to Bob's server")
    (got,) = c.sink.messages
    assert got.rcpt_tos == [c.bob.email] and got.mail_from == c.alice.email
    assert got.data.endswith(sealed)
    prefix = got.data[: -len(sealed)]
    assert prefix and _HEADER_LINE.sub(b"", prefix) == b""  # header lines, nothing else
    assert f"Certmail-Evidence: sha256={sha}; ".encode() in prefix

    # Bob opens what his server received.
    eml = tmp_path / "in.eml"
    eml.write_bytes(got.data)
    save = tmp_path / "save"
    o = subprocess.run(
        [*CERTMAIL, "open", str(eml), "--save-dir", str(save), "--json"],
        capture_output=True,
        text=True,
        env=c.bob.env(),
        timeout=120,
    )
    assert o.returncode == 0, o.stderr
    opened = json.loads(o.stdout)
    assert opened["signer"] == c.alice.email and opened["trusted"]
    assert opened["headers"]["Subject"] == "Contract"
    assert opened["body"] == "Dear Bob,\nhere it is.\n" and opened["manifest"] == "verified"
    assert (save / "contract.txt").read_bytes() == b"the signed contract\n"
    assert opened["notary"] == relay.url

    # The timeline: accepted, then delivered to Bob; every receipt verifies; kept.
    r = alice(
        c, relay, "receipts", sha, "--watch", "--interval", "0.1", "--timeout", "120", "--json"
    )
    assert r.returncode == 0, r.stderr
    tl = json.loads(r.stdout)
    assert tl["sha256"] == sha and tl["message_id"] == out["message_id"] and tl["final"]
    assert [s["step"] for s in tl["recipients"][c.bob.email]] == ["accepted", "delivered"]
    delivered = tl["recipients"][c.bob.email][1]
    assert delivered["reply"] == {"code": 250, "text": "2.0.0 queued as certmail-test"}
    assert events(tl["receipts"]) == ["SubmissionAcceptance", "RelayToNonERDS"]
    for rc in tl["receipts"]:
        assert Receipt.from_json(rc).verify(relay.verifier())["message"]["sha256"] == sha
    with Ledger(
        c.alice.home / "ledger.db", c.alice.home / "outbox", c.alice.home / "sent"
    ) as ledger:
        assert events(ledger.receipts(sha)) == ["SubmissionAcceptance", "RelayToNonERDS"]
        assert ledger.get(sha).via == "relay" and ledger.outbox() == []
    # By Message-ID, in words.
    r = alice(c, relay, "receipts", out["message_id"])
    assert r.returncode == 0, r.stderr
    assert f"{c.bob.email}: delivered" in r.stdout and "(250 2.0.0 queued" in r.stdout


def test_relay_down_queues_then_flush_delivers_once(correspondents: Any, relay: Relay) -> None:
    c = correspondents
    relay.proc.stop()
    p = alice(c, relay, *send_args(c.bob.email, "Later"), stdin=b"when you are back\n")
    assert p.returncode == 5, p.stderr
    assert "outbox" in p.stderr and "Traceback" not in p.stderr
    queued = json.loads(p.stdout)
    sha = queued["sha256"]
    assert queued["via"] == "relay" and queued["status"] == "queued"
    lst = alice(c, relay, "outbox", "list", "--json")
    (m,) = json.loads(lst.stdout)["messages"]
    assert (m["sha256"], m["status"], m["via"]) == (sha, "queued", "relay")
    # Still down: a flush keeps it (exit 5).
    f = alice(c, relay, "outbox", "flush")
    assert f.returncode == 5 and sha[:16] in f.stdout
    assert c.sink.messages == []

    relay.start()
    f = alice(c, relay, "outbox", "flush", "--json")
    assert f.returncode == 0, f.stderr
    assert [(i["sha256"], i["status"]) for i in json.loads(f.stdout)["messages"]] == [(sha, "sent")]
    f = alice(c, relay, "outbox", "flush", "--json")
    assert f.returncode == 0 and json.loads(f.stdout)["messages"] == []
    r = alice(
        c, relay, "receipts", sha, "--watch", "--interval", "0.1", "--timeout", "120", "--json"
    )
    assert r.returncode == 0, r.stderr
    assert events(json.loads(r.stdout)["receipts"]) == ["SubmissionAcceptance", "RelayToNonERDS"]
    wait_for(lambda: len(c.sink.messages) == 1, "delivery to Bob's server")
    assert c.sink.messages[0].data.endswith(stored_copy(c, sha))
    assert len(c.sink.messages) == 1  # submitted once: one acceptance, one delivery


def test_wrong_token_names_the_fix_and_keeps_the_message(correspondents: Any, relay: Relay) -> None:
    c = correspondents
    p = alice(
        c,
        relay,
        *send_args(c.bob.email, "x", as_json=False),
        stdin=b"x\n",
        CERTMAIL_NOTARY_TOKEN="0" * 64,
    )
    assert p.returncode == 1
    line = one_line_error(p)
    assert "refused the login" in line and "CERTMAIL_NOTARY_TOKEN" in line
    assert (
        "certmail: hint:" in p.stderr
        and "CERTMAIL_NOTARY_TOKEN" in p.stderr.split("certmail: hint:")[1]
        and "outbox flush" in p.stderr
    )
    assert p.stdout == ""
    lst = alice(c, relay, "outbox", "list", "--json")
    (m,) = json.loads(lst.stdout)["messages"]
    assert m["status"] == "queued" and "535" in m["last_error"]
    # The notary holds no evidence yet; `receipts` says so and points at the outbox.
    r = alice(c, relay, "receipts", m["sha256"])
    assert r.returncode == 0, r.stderr
    assert f"{c.bob.email}: no evidence yet" in r.stdout
    assert "still in the outbox (queued via relay)" in r.stderr
    # With the right token, a flush sends it.
    f = alice(c, relay, "outbox", "flush")
    assert f.returncode == 0, f.stdout + f.stderr
    wait_for(lambda: len(c.sink.messages) == 1, "delivery to Bob's server")
    assert c.sink.messages[0].data.endswith(stored_copy(c, m["sha256"]))


def test_via_smtp_still_goes_direct(correspondents: Any, relay: Relay) -> None:
    c = correspondents
    out = json_of(
        alice(
            c,
            relay,
            *send_args(c.bob.email, "direct", "--via", "smtp"),
            stdin=b"straight to the server\n",
            CERTMAIL_SMTP_URL=c.sink.url,
        )
    )
    assert out["via"] == "smtp" and out["status"] == "sent"
    # Exactly the sealed bytes, nothing prepended: the notary's relay was not involved.
    (got,) = c.sink.messages
    assert got.data == stored_copy(c, out["sha256"])
    (rc,) = out["receipts"]  # POST /v1/notarize: the hash only
    stmt = Receipt.from_json(rc).verify(relay.verifier())
    assert stmt["message"] == {"sha256": out["sha256"], "id": out["message_id"]}
    assert stmt["channel"] == "api"
    # Its timeline is that one notarization: --watch does not wait for a delivery.
    r = alice(
        c,
        relay,
        "receipts",
        out["sha256"],
        "--watch",
        "--interval",
        "0.1",
        "--timeout",
        "60",
        "--json",
    )
    assert r.returncode == 0, r.stderr
    tl = json.loads(r.stdout)
    assert tl["final"] and tl["ledger"]["via"] == "smtp"
    assert [s["step"] for s in tl["recipients"][c.bob.email]] == [
        "notarized (sent directly, not through the relay)"
    ]
    # Relay mode cannot skip the notary; direct mode can.
    p = alice(
        c,
        relay,
        *send_args(c.bob.email, "x", "--via", "relay", "--no-notarize", as_json=False),
        stdin=b"x\n",
    )
    assert p.returncode == 1 and "--no-notarize" in one_line_error(p)
    p = alice(
        c,
        relay,
        *send_args(c.bob.email, "y", "--no-notarize"),
        stdin=b"y\n",
        CERTMAIL_SMTP_URL=c.sink.url,
    )
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["via"] == "smtp" and len(c.sink.messages) == 2


def test_flush_settles_an_uncertain_relay_submission_from_the_log(
    correspondents: Any, relay: Relay
) -> None:
    """A process that died after the final dot leaves the message ``uncertain``: the
    notary's log shows it was accepted, so a flush marks it sent and never resubmits."""
    c = correspondents
    p = alice(c, relay, "send", "--to", c.bob.email, "--subject", "crash", "--json", stdin=b"z\n")
    assert p.returncode == 0, p.stderr
    sha = json.loads(p.stdout)["sha256"]
    wait_for(lambda: len(c.sink.messages) == 1, "delivery to Bob's server")
    with Ledger(
        c.alice.home / "ledger.db", c.alice.home / "outbox", c.alice.home / "sent"
    ) as ledger:
        # What a SIGKILL during DATA leaves behind (see Ledger.recover), receipt not kept.
        ledger._db.execute("DELETE FROM receipts WHERE sha256=?", (sha,))
        ledger._set(sha, smtp="sending", notary="pending")
        assert ledger.recover() == [sha]
    f = alice(c, relay, "outbox", "flush", "--json")
    assert f.returncode == 0, f.stderr
    assert [i["status"] for i in json.loads(f.stdout)["messages"]] == ["sent"]
    with Ledger(
        c.alice.home / "ledger.db", c.alice.home / "outbox", c.alice.home / "sent"
    ) as ledger:
        assert events(ledger.receipts(sha)) == ["SubmissionAcceptance"]
    acc = httpx.get(
        f"{relay.url}/v1/messages/{sha}/receipts",
        headers={"Authorization": f"Bearer {relay.token}"},
        timeout=10,
    ).json()
    assert events(acc["receipts"]).count("SubmissionAcceptance") == 1
    assert len(c.sink.messages) == 1
