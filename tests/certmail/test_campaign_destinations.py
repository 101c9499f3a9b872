"""A campaign to two recipient domains, one of them slow (issue 15 item 3, the relay side):
the healthy domain's recipients are all delivered while the slow domain's are still
deferred; the slow domain recovers and the report says so.

Real components: gpg (one key per recipient), ``certmail notary serve`` with its SMTP
relay routing by MX through a test DNS server, an aiosmtpd server for the healthy
domain and, for the slow one, a server that drips its greeting (never finishing it)
until it is replaced by an aiosmtpd server on the same address.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.fixtures.campaign import kill_agent, recipients_for, write_csv
from tests.fixtures.drip import DripServer
from tests.fixtures.mx import MxHosts
from tests.fixtures.relay import as_sender, start_relay
from tests.notary.relay_helpers import wait_for

FAST = [f"f{i}@fast.test" for i in range(2)]
SLOW = [f"s{i}@slow.test" for i in range(2)]


class World(MxHosts):
    """Alice's relay routing by MX: fast.test -> 127.0.0.51, slow.test -> 127.0.0.52."""

    def __init__(self, tmp: Path, c: Any) -> None:
        super().__init__(tmp)
        self.route({"fast.test": "127.0.0.51", "slow.test": "127.0.0.52"})
        self.relay = start_relay(
            tmp / "notary",
            c,
            smarthost_port=0,
            **self.config,
            relay_attempt_deadline=0.5,
            relay_retry_initial=0.2,
            relay_destination_concurrency=2,
            relay_concurrency=8,
        )

    def stop(self) -> None:
        self.relay.stop()
        super().stop()


@pytest.fixture
def world(tmp_path: Path, correspondents: Any) -> Iterator[World]:
    rs = recipients_for(FAST + SLOW, Path(correspondents.alice.keyring.gnupghome))
    w = World(tmp_path, correspondents)
    yield w
    w.stop()
    kill_agent(rs.home)


def _rows(c: Any, w: World) -> dict[str, dict[str, Any]]:
    r = as_sender(c, w.relay, "campaign", "report", "rent", "--format", "json")
    assert r.returncode == 0, r.stderr
    return {x["email"]: x for x in json.loads(r.stdout)["recipients"]}


def _relay_state(w: World, sha256: str) -> dict[str, Any]:
    """The relay's delivery state of a one-recipient message (its deliveries API)."""
    r = httpx.get(
        f"{w.relay.url}/v1/messages/{sha256}/deliveries",
        headers={"Authorization": f"Bearer {w.relay.token}"},
        timeout=10,
    )
    r.raise_for_status()
    (row,) = r.json()["deliveries"]
    return dict(row)


def _recipients_of(sink: Any) -> list[str]:
    return sorted(r for m in sink.messages for r in m.rcpt_tos)


def test_a_slow_domain_does_not_hold_up_the_rest_of_a_campaign(
    correspondents: Any, world: World, tmp_path: Path
) -> None:
    c, w = correspondents, world
    fast_mx = w.sink("127.0.0.51")
    drip = DripServer("127.0.0.52", w.port)
    try:
        rows = [{"email": e, "name": f"Tenant {i}"} for i, e in enumerate(SLOW + FAST)]
        body = tmp_path / "body.txt"
        body.write_text("Dear {{ name }},\nthe rent changes.\n")
        created = as_sender(
            c,
            w.relay,
            "campaign",
            "create",
            "rent",
            "--recipients",
            str(write_csv(tmp_path / "r.csv", rows)),
            "--subject",
            "Rent notice for {{ name }}",
            "--body-file",
            str(body),
        )
        assert created.returncode == 0, created.stderr
        sent = as_sender(c, w.relay, "campaign", "send", "rent", "--json")
        assert sent.returncode == 0, sent.stderr
        assert json.loads(sent.stdout.splitlines()[-1])["summary"]["counts"] == {
            "accepted": len(rows)
        }

        sha = {r["email"]: r["sha256"] for r in _rows(c, w).values()}

        # Every healthy-domain recipient is delivered, exactly once each, while the
        # slow domain's are deferred: tried (or, the destination marked dead,
        # suspended without a connection), cut off, not failed.
        def fast_delivered_slow_deferred() -> bool:
            return all(_relay_state(w, sha[e])["state"] == "delivered" for e in FAST) and all(
                _relay_state(w, sha[e])["attempts"] >= 1 for e in SLOW
            )

        wait_for(fast_delivered_slow_deferred, timeout=60, what="fast delivered, slow deferred")
        assert _recipients_of(fast_mx) == sorted(FAST)
        got = _rows(c, w)
        for e in FAST:
            assert got[e]["state"] == "delivered", got[e]
        for e in SLOW:
            assert got[e]["state"] == "accepted" and not got[e]["delivered"], got[e]
            assert got[e]["deferred"], got[e]
            assert "attempt deadline (0.5 s) exceeded" in str(got[e]["reply"]), got[e]
        assert drip.connections >= 1
    finally:
        drip.stop()

    # The slow domain recovers: its recipients are delivered too, exactly once each.
    slow_mx = w.sink("127.0.0.52")
    wait_for(
        lambda: all(_relay_state(w, x)["state"] == "delivered" for x in sha.values()),
        timeout=60,
        what="every recipient delivered",
    )
    assert _recipients_of(slow_mx) == sorted(SLOW)
    assert _recipients_of(fast_mx) == sorted(FAST)
    report = json.loads(
        as_sender(c, w.relay, "campaign", "report", "rent", "--format", "json").stdout
    )
    assert report["totals"] == {"delivered": len(rows)}
