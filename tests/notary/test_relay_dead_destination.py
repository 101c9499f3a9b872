"""Dead destinations (docs/relay.md, "Deadlines and destinations"): once an attempt to a
destination gets no reply, its other deliveries are deferred without a connection each
until the destination's backoff ends, then one probe at a time tries it; the first reply
clears the mark. Real notary subprocess, DNS server and SMTP servers on loopback; the
dead server counts the connections made to it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.drip import DripServer
from tests.fixtures.notary import configure, init_notary_dir
from tests.notary.relay_helpers import MxWorld, wait_for

DEAD = [f"u{i}@dead.test" for i in range(6)]


@pytest.fixture
def world(tmp_path: Path) -> Iterator[MxWorld]:
    d = init_notary_dir(tmp_path / "notary")
    w = MxWorld(d, tmp_path)
    w.route({"dead.test": "127.0.0.61", "b.test": "127.0.0.62"})
    configure(
        d,
        relay_attempt_deadline=0.5,
        relay_destination_concurrency=20,
        relay_concurrency=20,
        relay_retry_initial=1.0,
    )
    yield w
    w.stop()


def test_a_dead_destination_is_probed_not_tried_by_every_delivery(world: MxWorld) -> None:
    w = world
    dead = DripServer("127.0.0.61", w.port)
    try:
        bob_mx = w.sink("127.0.0.62")
        w.start()
        sha = w.submit("dead", DEAD)

        # Every delivery is deferred (its first attempts all at once), then all but the
        # probe are deferred again without trying: "delivery temporarily suspended" ...
        def suspended() -> list[dict[str, Any]] | None:
            rows = w.relay.deliveries(sha)
            held = [
                r
                for r in rows
                if r["state"] == "queued"
                and (r["last_error"] or "").startswith("delivery temporarily suspended: ")
            ]
            return rows if len(rows) == len(DEAD) and len(held) >= 2 else None

        wait_for(lambda: suspended() is not None, timeout=60, what="suspended deliveries")
        rows = suspended()
        assert rows is not None
        # ... so there are fewer connections to the dead server than deferrals: without
        # the rule every deferral is a connection (one MX host, one address).
        deferrals = sum(r["attempts"] for r in rows)
        assert all(r["attempts"] >= 1 for r in rows)
        assert dead.connections < deferrals, (dead.connections, rows)
        errors = {r["last_error"] for r in rows}
        assert all("attempt deadline (0.5 s) exceeded" in e for e in errors), errors
        # Another destination is not affected.
        bob = w.submit("alive", ["bob@b.test"])
        w.relay.wait_events(bob, "RelayToNonERDS")
        assert len(bob_mx.messages) == 1
    finally:
        dead.stop()

    # The destination comes back: the probe's success clears the mark, every delivery
    # goes, exactly once each.
    back = w.sink("127.0.0.61")
    wait_for(
        lambda: all(r["state"] == "delivered" for r in w.relay.deliveries(sha)),
        timeout=60,
        what="every delivery to the recovered destination",
    )
    assert sorted(r for m in back.messages for r in m.rcpt_tos) == sorted(DEAD)
    events = [e["event"] for e in w.relay.events(sha)]
    assert events.count("RelayToNonERDS") == len(DEAD) and "RelayToNonERDSFailure" not in events
