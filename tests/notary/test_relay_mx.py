"""Relay delivery without a smarthost: real MX lookups (dnspython) against a real DNS
server on 127.0.0.1, real aiosmtpd recipient servers on loopback addresses.

One notary and one DNS server serve the whole module; each test has its own
recipient domain and its own loopback addresses.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fixtures.notary import init_notary_dir
from tests.notary.relay_helpers import MxWorld, message


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MxWorld]:
    d = init_notary_dir(tmp_path_factory.mktemp("mx") / "notary")
    w = MxWorld(d, tmp_path_factory.mktemp("sinks"))
    w.start()
    yield w
    w.stop()


def test_delivered_to_the_mx_host(world: MxWorld) -> None:
    world.zone["mx1.test"] = {"MX": ["10 mail.mx1.test."]}
    world.zone["mail.mx1.test"] = {"A": ["127.0.0.11"]}
    sink = world.sink("127.0.0.11")
    sha = world.submit("mx1", ["bob@mx1.test"])
    rel = world.relay.wait_events(sha, "RelayToNonERDS")[-1]
    assert rel["host"] == "mail.mx1.test"
    assert rel["address"] == "127.0.0.11" and rel["port"] == world.port
    (got,) = sink.messages
    assert got.rcpt_tos == ["bob@mx1.test"] and got.data.endswith(message("mx1", to="bob@mx1.test"))
    assert ("mx1.test", "MX") in world.dns.queries


def test_implicit_mx_from_a_record(world: MxWorld) -> None:
    world.zone["implicit.test"] = {"A": ["127.0.0.12"]}  # no MX record at all
    sink = world.sink("127.0.0.12")
    sha = world.submit("implicit", ["bob@implicit.test"])
    rel = world.relay.wait_events(sha, "RelayToNonERDS")[-1]
    assert rel["host"] == "implicit.test" and rel["address"] == "127.0.0.12"
    assert len(sink.messages) == 1


def test_null_mx_fails_at_once(world: MxWorld) -> None:
    world.zone["nullmx.test"] = {"MX": ["0 ."], "A": ["127.0.0.13"]}
    sink = world.sink("127.0.0.13")  # would accept, but null MX says: no mail here
    sha = world.submit("nullmx", ["bob@nullmx.test"])
    events = world.relay.wait_events(sha, "RelayToNonERDSFailure")
    assert [e["event"] for e in events] == ["SubmissionAcceptance", "RelayToNonERDSFailure"]
    fail = events[-1]
    assert fail["reason"] == "no-route" and "null MX" in fail["detail"]
    assert fail["recipient"] == "bob@nullmx.test" and fail["reply"] is None
    # Permanent: looked up once, never retried, nothing sent.
    assert world.dns.queries.count(("nullmx.test", "MX")) == 1
    assert sink.messages == []


def test_nxdomain_fails(world: MxWorld) -> None:
    sha = world.submit("nx", ["bob@nowhere.test"])  # not in the zone: NXDOMAIN
    events = world.relay.wait_events(sha, "RelayToNonERDSFailure")
    fail = events[-1]
    assert fail["reason"] == "no-route" and "NXDOMAIN" in fail["detail"]
    assert world.dns.queries.count(("nowhere.test", "MX")) == 1


def test_mx_preference_order_and_fallback(world: MxWorld) -> None:
    # Listed worst first: the relay must sort by preference, not take answer order.
    world.zone["pref.test"] = {"MX": ["20 backup.pref.test.", "10 primary.pref.test."]}
    world.zone["primary.pref.test"] = {"A": ["127.0.0.14"]}
    world.zone["backup.pref.test"] = {"A": ["127.0.0.15"]}
    primary = world.sink("127.0.0.14")
    backup = world.sink("127.0.0.15")
    sha = world.submit("pref1", ["bob@pref.test"])
    assert world.relay.wait_events(sha, "RelayToNonERDS")[-1]["host"] == "primary.pref.test"
    assert len(primary.messages) == 1 and backup.messages == []
    primary.stop()  # connections to the preferred host are now refused
    sha = world.submit("pref2", ["bob@pref.test"])
    events = world.relay.wait_events(sha, "RelayToNonERDS")
    assert events[-1]["host"] == "backup.pref.test" and events[-1]["address"] == "127.0.0.15"
    assert [e["event"] for e in events] == ["SubmissionAcceptance", "RelayToNonERDS"]
    assert len(backup.messages) == 1 and len(primary.messages) == 1


def test_unreachable_dns_defers_instead_of_failing(tmp_path: Path) -> None:
    """A name server that does not answer is a temporary problem, not a failure."""
    import asyncio

    from keys.errors import TemporaryError
    from notary.relay import mx
    from tests.fixtures.notary import free_port

    async def lookup() -> None:
        r = mx.make_resolver(f"127.0.0.1:{free_port()}")
        r.lifetime = 1.0
        await mx.mail_hosts("b.test", resolver=r)

    with pytest.raises(TemporaryError, match=r"MX lookup for b\.test failed"):
        asyncio.run(lookup())
