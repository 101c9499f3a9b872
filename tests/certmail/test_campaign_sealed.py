"""``campaign create --sealed`` (issue 15 with issue 12): each recipient's message sealed,
its K_n registered with the notary (``POST /v1/seals``) before the ledger may send it, the
seal's state in the campaign's rows and report, and exactly once after a SIGKILL.

Real components: gpg (one key per recipient), ``certmail notary serve`` with its SMTP
relay, and an aiosmtpd server standing in for the recipients' mail server. The
recipients open their delivered copies with certmail's library (one home each over the
recipients' GnuPG home), acknowledging: the notary logs a ContentHandover, then releases.
"""

from __future__ import annotations

import functools
import json
import shutil
import sqlite3
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from certmail.api import Certmail
from certmail.campaign.store import CampaignStore
from certmail.sealed.box import CONTENT_NAME
from certmail.sealed.opening import SealedOpening
from tests.fixtures import relay as relay_fixtures
from tests.fixtures.campaign import (
    Recipients,
    kill_agent,
    kill_and_resume,
    make_recipients,
    write_csv,
)
from tests.fixtures.cli import CERTMAIL, clean_env
from tests.fixtures.gpg import _gpg
from tests.fixtures.relay import Relay, as_sender
from tests.fixtures.smtp import make_settings

N = 5
BODY = "Dear {{ name }},\nflat {{ flat }}: the rent changes in March.\n"


relay = relay_fixtures.relay  # retrying after 0.2 s


@pytest.fixture
def tenants(correspondents: Any) -> Iterator[Recipients]:
    """N recipients; their GnuPG home also holds Alice's key (to check her signature)."""
    c = correspondents
    rs = make_recipients(N, Path(c.alice.keyring.gnupghome))
    _gpg(rs.home, "--import", stdin=c.alice.keyring.export_public(c.alice.email).encode())
    fpr = c.alice.keyring.key_for(c.alice.email).fingerprint
    _gpg(rs.home, "--import-ownertrust", stdin=f"{fpr}:6:\n".encode())
    yield rs
    kill_agent(rs.home)


def _create(c: Any, relay: Relay, tmp: Path, rs: Recipients) -> dict[str, Any]:
    rows = [{"email": e, "name": f"Tenant {i}", "flat": str(i)} for i, e in enumerate(rs.emails)]
    body = tmp / "body.txt"
    body.write_text(BODY)
    csv_path = write_csv(tmp / "r.csv", rows)
    p = as_sender(
        c, relay, *("campaign", "create", "rent", "--recipients", str(csv_path)),
        *("--subject", "Rent notice for {{ name }}", "--body-file", str(body)),
        *("--sealed", "--json"),
    )  # fmt: skip
    assert p.returncode == 0, p.stderr
    made: dict[str, Any] = json.loads(p.stdout)
    return made


def _popen(c: Any, relay: Relay, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*CERTMAIL, "campaign", "send", "rent", "--json", "--settle-timeout", "20", *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=clean_env(c.alice.home, **relay.env),
    )


def _delivered(c: Any, n: int) -> dict[str, list[bytes]]:
    deadline = time.monotonic() + 60  # a generous bound, not a timing assertion
    while len(c.sink.messages) < n:
        assert time.monotonic() < deadline, "the relay never delivered them all"
        time.sleep(0.1)
    time.sleep(0.5)  # a duplicate would arrive right behind
    by_rcpt: dict[str, list[bytes]] = {}
    for m in c.sink.messages:
        by_rcpt.setdefault(m.rcpt_tos[0], []).append(m.data)
    return by_rcpt


def _open(rs: Recipients, addr: str, data: bytes, tmp: Path) -> Any:
    """``addr`` opens its delivered copy (certmail's library), acknowledging."""
    home = Path(tempfile.mkdtemp(prefix="cm", dir="/tmp"))
    (home / "gnupg").symlink_to(rs.home)
    eml = tmp / f"{addr}.eml"
    eml.write_bytes(data)
    try:
        with Certmail(make_settings(home, email=addr)) as cm:
            return cm.open(eml, sealed=SealedOpening("ack"))
    finally:
        shutil.rmtree(home, ignore_errors=True)


def _seals(relay: Relay) -> set[str]:
    with sqlite3.connect(relay.proc.directory / "seals.db") as db:
        return {r[0] for r in db.execute("SELECT sha256 FROM seals")}


def test_a_sealed_campaign_through_the_relay_each_opens_with_an_ack(
    correspondents: Any, relay: Relay, tenants: Recipients, tmp_path: Path
) -> None:
    c = correspondents
    assert _create(c, relay, tmp_path, tenants)["sealed"] is True
    p = as_sender(c, relay, "campaign", "send", "rent", "--json", "--concurrency", "2")
    assert p.returncode == 0, p.stderr
    events = [json.loads(x) for x in p.stdout.splitlines()[:-1]]
    assert {e["email"]: (e["state"], e["seal"]) for e in events} == dict.fromkeys(
        tenants.emails, ("accepted", "registered")
    )
    by_rcpt = _delivered(c, N)
    assert sorted(by_rcpt) == sorted(tenants.emails)
    assert all(len(v) == 1 for v in by_rcpt.values())
    assert {e["sha256"] for e in events} <= _seals(relay)  # K_n registered for each
    for i, addr in enumerate(tenants.emails):
        (data,) = by_rcpt[addr]
        assert b"rent changes" not in data
        r = _open(tenants, addr, data, tmp_path)
        assert r.body == f"Dear Tenant {i},\nflat {i}: the rent changes in March.\n"
        assert CONTENT_NAME not in [a.name for a in r.attachments]
        assert r.signer == c.alice.email
    rep = as_sender(c, relay, "campaign", "report", "rent", "--format", "json")
    assert rep.returncode == 0, rep.stderr
    rows = json.loads(rep.stdout)["recipients"]
    assert {(r["delivery"], r["seal"], r["state"]) for r in rows} == {
        ("sealed", "released", "acknowledged")
    }


def test_a_sealed_campaign_killed_mid_way_is_exactly_once_on_resume(
    correspondents: Any, relay: Relay, tenants: Recipients, tmp_path: Path
) -> None:
    c = correspondents
    _create(c, relay, tmp_path, tenants)
    kill_and_resume(functools.partial(_popen, c, relay), c.alice.home / "ledger.db", N)
    by_rcpt = _delivered(c, N)
    assert sorted(by_rcpt) == sorted(tenants.emails)
    assert all(len(v) == 1 for v in by_rcpt.values()), by_rcpt.keys()
    with CampaignStore(c.alice.home / "ledger.db") as store:  # the campaign's own rows
        rows = store.recipients("rent")
    assert {(r.state, r.seal) for r in rows} == {("accepted", "registered")}
    assert {r.sha256 for r in rows} <= _seals(relay)
    # One of those sent after the kill opens with its own registered share.
    last = tenants.emails[-1]
    r = _open(tenants, last, by_rcpt[last][0], tmp_path)
    assert "the rent changes in March" in r.body
