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


@pytest.fixture
def relay(notary_dir: Path, smtp_sink: Any) -> Iterator[RelayNotary]:
    configure(notary_dir, relay_retry_initial=0.2)
    r = RelayNotary(notary_dir, smtp_sink.port)
    r.start()
    yield r
    r.proc.stop()


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


def test_watch_by_message_id_keeps_receipts_in_the_ledger(
    relay: RelayNotary, tmp_path: Path, smtp_sink: Any
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    data = message("watched")
    eml = tmp_path / "m.eml"
    eml.write_bytes(data)
    smtp_sink.fail("rcpt", 451, "later")  # first attempt deferred: --watch has to wait
    sha = submit(data, mail_from=ALICE, recipients=[BOB], notary_url=relay.url, token=relay.token)
    with Ledger(home / "ledger.db", home / "outbox", home / "sent") as ledger:
        ledger.enqueue(
            eml,
            sha256=sha,
            message_id="<watched@a.test>",
            mail_from=ALICE,
            recipients=[BOB],
            via="relay",
            notarize=True,
        )
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
