"""A sealed message expires unopened: the sender's mailbox gets one notice (issue 12).

Real ``certmail notary serve`` with its SMTP relay (tests/fixtures/relay.py),
real gpg, the aiosmtpd sink as every mailbox. The notice is spooled while the
sink refuses mail, the notary is restarted, and the restarted notary delivers
it: once, with the ContentHandoverFailure receipt attached.
"""

from __future__ import annotations

import email
import json
import sqlite3
import time
from collections.abc import Callable
from email.message import Message
from pathlib import Path
from typing import Any

from notary.receipt import Receipt
from notary.seal_notices import notice_key
from tests.fixtures.cli import json_of
from tests.fixtures.relay import Relay, as_sender, start_relay


def _wait(what: str, done: Callable[[], bool], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def _seal_state(relay: Relay, sha: str) -> tuple[Any, ...]:
    with sqlite3.connect(relay.proc.directory / "seals.db") as db:
        row: tuple[Any, ...] = db.execute(
            "SELECT wrapped IS NULL, state FROM seals WHERE sha256 = ?", (sha,)
        ).fetchone()
        return row


def _to(c: Any, who: str) -> list[Message]:
    return [email.message_from_bytes(m.data) for m in c.sink.messages if who in m.rcpt_tos]


def test_expired_sealed_message_sends_the_sender_one_notice(
    correspondents: Any, tmp_path: Path
) -> None:
    c = correspondents
    relay = start_relay(tmp_path / "notary", c, relay_retry_initial=0.2)
    try:
        p = as_sender(
            c, relay, *("send", "--to", c.bob.email, "--subject", "Contract"),
            *("--sealed", "--seal-expires", "4", "--json"), stdin=b"Sign by Friday.\n",
        )  # fmt: skip
        sha = json_of(p)["sha256"]
        _wait("the sealed message at Bob's", lambda: bool(_to(c, c.bob.email)))
        c.sink.fail("rcpt", 451, sticky=True)  # the notice waits in the queue
        _wait("the expiry sweep", lambda: _seal_state(relay, sha) == (1, "expired"))
        with sqlite3.connect(relay.proc.directory / "notary.db") as db:
            spooled = db.execute(
                "SELECT COUNT(*) FROM spool WHERE sha256 = ?", (notice_key(sha),)
            ).fetchone()
        assert spooled == (1,) and not _to(c, c.alice.email)
        relay.stop()
        c.sink.heal()
        relay.start()  # the restarted notary sweeps again and delivers the notice
        _wait("the notice at Alice's", lambda: bool(_to(c, c.alice.email)))
        relay.stop()
        relay.start()  # and once more: still nothing new
        _wait("the restarted relay", lambda: _seal_state(relay, sha) == (1, "expired"))
    finally:
        relay.stop()
    notices = _to(c, c.alice.email)
    assert len(notices) == 1
    notice = notices[0]
    assert notice["Subject"].startswith("Sealed message not opened:")
    assert notice["Auto-Submitted"] == "auto-generated"
    text, receipt = _parts(notice)
    assert c.bob.email in text and "destroyed its key share" in text and sha in text
    stmt = Receipt.from_json(receipt).verify(relay.verifier())
    assert stmt["event"] == "ContentHandoverFailure" and stmt["recipient"] == c.bob.email
    assert stmt["mode"] == "sealed" and stmt["message"]["sha256"] == sha
    assert [m.mail_from for m in c.sink.messages if c.alice.email in m.rcpt_tos] == ["<>"]


def _parts(msg: Message) -> tuple[str, dict[str, Any]]:
    text, receipt = "", {}
    for part in msg.walk():
        if part.get_content_type() == "text/plain":
            text = part.get_payload(decode=True).decode()  # type: ignore[union-attr]
        elif part.get_filename() == "receipt-ContentHandoverFailure.json":
            receipt = json.loads(part.get_payload(decode=True))  # type: ignore[arg-type]
    return text, receipt
