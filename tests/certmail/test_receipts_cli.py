"""``certmail receipts`` against a real notary relay and a real recipient server."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from certmail.ledger import Ledger
from certmail.relay_client import submit
from tests.fixtures.cli import CERTMAIL
from tests.notary.relay_helpers import ALICE, BOB, RelayNotary, configure, message


def _serve(notary_dir: Path, smtp_sink: Any, retry: float) -> Iterator[RelayNotary]:
    configure(notary_dir, relay_retry_initial=retry)
    r = RelayNotary(notary_dir, smtp_sink.port)
    r.start()
    yield r
    r.proc.stop()


@pytest.fixture
def relay(notary_dir: Path, smtp_sink: Any) -> Iterator[RelayNotary]:
    yield from _serve(notary_dir, smtp_sink, 0.2)


def _run(home: Path, relay: RelayNotary, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "CERTMAIL_HOME": str(home),
        "CERTMAIL_NOTARY_URL": relay.url,
        "CERTMAIL_NOTARY_TOKEN": relay.token,
    }
    return subprocess.run(
        [*CERTMAIL, "receipts", *args], capture_output=True, text=True, env=env, timeout=120
    )


def _keep(home: Path, data: bytes, mid: str, sha: str, *, via: str = "relay") -> Ledger:
    """Record the message in ``home``'s ledger as ``certmail send`` would (returns it open)."""
    eml = home.parent / f"{mid}.eml"
    eml.write_bytes(data)
    ledger = Ledger(home / "ledger.db", home / "outbox", home / "sent")
    ledger.enqueue(
        eml,
        sha256=sha,
        message_id=f"<{mid}@a.test>",
        mail_from=ALICE,
        recipients=[BOB],
        via=via,
        notarize=True,
    )
    return ledger


def test_watch_by_message_id_keeps_receipts_in_the_ledger(
    relay: RelayNotary, tmp_path: Path, smtp_sink: Any
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    data = message("watched")
    smtp_sink.fail("rcpt", 451, "later")  # first attempt deferred: --watch has to wait
    sha = submit(data, mail_from=ALICE, recipients=[BOB], notary_url=relay.url, token=relay.token)
    _keep(home, data, "watched", sha).close()
    out = _run(home, relay, "<watched@a.test>", "--watch", "--interval", "0.1", "--json")
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert doc["sha256"] == sha and doc["final"] is True
    steps = [s["step"] for s in doc["recipients"][BOB]]
    assert steps == ["accepted", "delivered"]
    with Ledger(home / "ledger.db", home / "outbox", home / "sent") as ledger:
        assert len(ledger.receipts(sha)) == 2
    text = _run(home, relay, sha[:16])
    assert text.returncode == 0, text.stderr
    assert f"{BOB}: delivered" in text.stdout and "(250 2.0.0 queued" in text.stdout


def test_unknown_message_is_a_clear_error(relay: RelayNotary, tmp_path: Path) -> None:
    out = _run(tmp_path, relay, "<nobody@a.test>")
    assert out.returncode == 6
    assert out.stderr.startswith("certmail: error: no message")
    assert "Traceback" not in out.stderr


def _wait_deferred(relay: RelayNotary, sha: str) -> None:
    """Until the relay has made one attempt (generous bound: not a timing assertion)."""
    import time

    import httpx

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        r = httpx.get(
            f"{relay.url}/v1/messages/{sha}/deliveries",
            headers={"Authorization": f"Bearer {relay.token}"},
            timeout=10,
        )
        if r.status_code == 200 and r.json()["deliveries"][0]["attempts"] >= 1:
            return
        time.sleep(0.1)
    raise AssertionError("the relay made no delivery attempt")


@pytest.fixture
def slow_retry_relay(notary_dir: Path, smtp_sink: Any) -> Iterator[RelayNotary]:
    """A relay whose next attempt after a deferral is a minute away (the deferral lasts)."""
    yield from _serve(notary_dir, smtp_sink, 60.0)


def test_a_deferral_is_visible_with_attempts_last_reply_and_next_attempt(
    slow_retry_relay: RelayNotary, tmp_path: Path, smtp_sink: Any
) -> None:
    relay = slow_retry_relay
    home = tmp_path / "home"
    home.mkdir()
    data = message("deferred")
    smtp_sink.fail("rcpt", 451, "4.7.1 greylisted, come back later", sticky=True)
    sha = submit(data, mail_from=ALICE, recipients=[BOB], notary_url=relay.url, token=relay.token)
    _keep(home, data, "deferred", sha).close()
    _wait_deferred(relay, sha)

    out = _run(home, relay, sha, "--json")
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert doc["final"] is False and doc["deliveries_error"] is None
    assert [s["step"] for s in doc["recipients"][BOB]] == ["accepted"]
    d = doc["deliveries"][BOB]
    assert d["state"] == "queued" and d["attempts"] >= 1
    assert d["last_reply"]["code"] == 451
    assert "greylisted" in d["last_reply"]["text"]
    assert d["next_attempt"] is not None and d["last_attempt"] is not None

    text = _run(home, relay, sha[:16])
    assert text.returncode == 0, text.stderr
    assert f"{BOB}: accepted" in text.stdout
    assert "relay: queued, " in text.stdout and "last reply 451 4.7.1 greylisted" in text.stdout
    assert f"next attempt {d['next_attempt']}" in text.stdout

    # Offline: the stored timeline, and a plain word that the delivery state is missing.
    relay.proc.stop()
    off = _run(home, relay, sha[:16])
    assert off.returncode == 5, off.stderr
    assert f"{BOB}: accepted" in off.stdout and "relay:" not in off.stdout
    assert "the delivery state could not be fetched" in off.stderr
    assert "Traceback" not in off.stderr
    off_json = json.loads(_run(home, relay, sha, "--json").stdout)
    assert off_json["source"] == "ledger" and off_json["deliveries"] == {}
    assert off_json["deliveries_error"] == "the notary could not be reached"


def test_a_message_sent_directly_has_no_delivery_state(relay: RelayNotary, tmp_path: Path) -> None:
    """--via smtp: the notary only notarized the hash; receipts asks for no delivery state."""
    home = tmp_path / "home"
    home.mkdir()
    data = message("direct")
    import hashlib

    from certmail.notary_client import NotaryClient

    sha = hashlib.sha256(data).hexdigest()
    with NotaryClient(relay.url, relay.token) as client:
        receipt = client.notarize(sha, "<direct@a.test>")
    with _keep(home, data, "direct", sha, via="smtp") as ledger:
        ledger.add_receipt(sha, receipt)
    out = _run(home, relay, sha, "--json")
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert doc["deliveries"] == {} and doc["deliveries_error"] is None
    assert doc["final"] is True
