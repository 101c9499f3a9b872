"""Several `certmail notary serve --smtp` processes share one PostgreSQL delivery queue.

End to end: real serve processes on one database (each its own --smtp port and
--node name, the same --smarthost), a loopback aiosmtpd recipient server that
records every message it takes, submissions over STARTTLS + AUTH. Any node may
claim any queued delivery (``claim_deliveries``: ``FOR UPDATE SKIP LOCKED``
plus a lease); ``deliveries.last_node`` names the node that recorded the outcome.
"""

from __future__ import annotations

import base64
import hashlib
import json
import smtplib
import socket
import ssl
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from email.parser import BytesHeaderParser
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiosmtpd.controller import Controller

from tests.fixtures.notary import NotaryProcess, free_port, init_notary_dir
from tests.notary.relay_helpers import ALICE, BOB, configure, message, wait_for
from tests.notary.storage_backends import pg_url, require_pg

pytestmark = pytest.mark.postgres


@pytest.fixture(autouse=True)
def _postgres() -> None:
    require_pg()  # skipped without a server, a failure in CI


#: Lease of the takeover test (seconds): short, so the survivor takes over soon.
SHORT_LEASE = 3.0


@dataclass
class Arrival:
    message_id: str
    time: float  # wall clock, comparable with the leases stored in the database
    data: bytes


class Recorder:
    """The recipient's server: keeps every message it accepts, with its arrival time."""

    def __init__(self) -> None:
        self.arrivals: list[Arrival] = []
        self.port = free_port()
        self.controller = Controller(
            self, hostname="127.0.0.1", port=self.port, ready_timeout=10, data_size_limit=None
        )

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        data: bytes = envelope.original_content
        mid = str(BytesHeaderParser().parsebytes(data)["Message-ID"]).strip()
        self.arrivals.append(Arrival(mid, time.time(), data))
        return "250 2.0.0 taken"

    def counts(self) -> Counter[str]:
        return Counter(a.message_id for a in list(self.arrivals))


class Cluster:
    """A notary directory on a fresh PostgreSQL schema and its serve processes."""

    def __init__(self, tmp: Path, **settings: Any) -> None:
        self.schema = "relay_" + uuid.uuid4().hex[:12]
        self.url = pg_url(self.schema)
        self.dir = init_notary_dir(tmp / "notary", database=self.url)
        configure(self.dir, relay_retry_initial=0.2, **settings)
        self.nodes: dict[str, tuple[NotaryProcess, int]] = {}
        self.token = ""
        self.http = httpx.Client(timeout=10)  # one client: httpx.get builds an SSL context

    def start(self, node: str, smarthost: int) -> NotaryProcess:
        p = NotaryProcess(self.dir, database=self.url)
        p.log_path = self.dir / f"serve-{node}.log"
        smtp_port = free_port()
        p.start(
            [
                "--smtp",
                f"127.0.0.1:{smtp_port}",
                "--smarthost",
                f"127.0.0.1:{smarthost}",
                "--node",
                node,
            ]
        )
        self.nodes[node] = (p, smtp_port)
        if not self.token:
            self.token = p.token_for(ALICE)
        return p

    def submit(self, node: str, mids: list[str], out: dict[str, str]) -> None:
        """One STARTTLS+AUTH session to ``node``'s relay; one transaction per message."""
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        with smtplib.SMTP("127.0.0.1", self.nodes[node][1], timeout=60) as s:
            s.starttls(context=ctx)
            s.login(ALICE, self.token)
            for mid in mids:
                data = message(mid, body=f"for the shared queue: {mid}")
                s.mail(ALICE)
                s.rcpt(BOB)
                code, text = s.data(data)
                assert code == 250, (code, text)
                sha = text.decode().split("sha256=")[1].strip()
                assert sha == hashlib.sha256(data).hexdigest()
                out[f"<{mid}@a.test>"] = sha

    def events(self, sha256: str) -> list[str]:
        """The logged events of one message, through any live node's HTTP API."""
        p = next(p for p, _ in self.nodes.values() if p.proc and p.proc.poll() is None)
        r = self.http.get(
            f"{p.url}/v1/messages/{sha256}/receipts",
            headers={"Authorization": f"Bearer {self.token}"},
        )
        r.raise_for_status()
        return [json.loads(base64.b64decode(x["entry"]))["event"] for x in r.json()["receipts"]]

    def deliveries(self) -> list[dict[str, Any]]:
        """The message deliveries as the shared database has them."""
        import psycopg

        with psycopg.connect(require_pg(), autocommit=True) as c:
            c.execute(f'SET search_path TO "{self.schema}"')
            rows = c.execute(
                "SELECT d.id, s.message_id, s.node, d.state, d.last_node, d.lease_owner,"
                " d.lease_until FROM deliveries d JOIN spool s ON s.id = d.spool_id"
                " WHERE s.kind = 'message' ORDER BY d.id"
            ).fetchall()
        keys = (
            "id",
            "message_id",
            "accepted_by",
            "state",
            "last_node",
            "lease_owner",
            "lease_until",
        )
        return [dict(zip(keys, r, strict=True)) for r in rows]

    def close(self) -> None:
        from notary.storage.postgres import PostgresStorage

        self.http.close()
        for p, _ in self.nodes.values():
            p.stop()
        st = PostgresStorage(self.url)
        try:
            st.drop_schema()
        finally:
            st.close()


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    r = Recorder()
    r.controller.start()
    yield r
    r.controller.stop()


def _all_final(c: Cluster, n: int) -> bool:
    rows = c.deliveries()
    return len(rows) == n and all(r["state"] in ("delivered", "failed") for r in rows)


def test_two_relays_share_the_queue_and_deliver_each_message_once(
    tmp_path: Path,
    recorder: Recorder,
) -> None:
    c = Cluster(tmp_path)
    try:
        c.start("node-a", recorder.port)
        c.start("node-b", recorder.port)
        shas: dict[str, str] = {}
        errors: list[BaseException] = []

        def session(node: str, k: int) -> None:
            try:
                c.submit(node, [f"pg{k}.{i}" for i in range(15)], shas)
            except BaseException as e:  # reported by the main thread
                errors.append(e)

        threads = [
            threading.Thread(target=session, args=(node, k))
            for k, node in enumerate(["node-a", "node-b", "node-a", "node-b"])
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        assert len(shas) == 60
        wait_for(lambda: _all_final(c, 60), 45, "all 60 deliveries to be recorded")

        # Exactly once at the recipient: every Message-ID, none twice.
        assert recorder.counts() == Counter(dict.fromkeys(shas, 1))
        # Each arrived as submitted, after prepended header lines only.
        for a in recorder.arrivals:
            assert (
                hashlib.sha256(a.data[a.data.index(b"From: ") :]).hexdigest()
                == (shas[a.message_id])
            )
        # Exactly one RelayToNonERDS per message in the shared log.
        for sha in shas.values():
            assert sorted(c.events(sha)) == ["RelayToNonERDS", "SubmissionAcceptance"]
        rows = c.deliveries()
        assert all(r["state"] == "delivered" and r["lease_owner"] is None for r in rows)
        assert Counter(r["accepted_by"] for r in rows) == {"node-a": 30, "node-b": 30}
        # Both serve processes delivered from the shared queue.
        delivered_by = Counter(r["last_node"] for r in rows)
        assert set(delivered_by) == {"node-a", "node-b"}, delivered_by
    finally:
        c.close()


def test_a_killed_nodes_leased_deliveries_are_taken_over_after_the_lease(
    tmp_path: Path,
    recorder: Recorder,
) -> None:
    c = Cluster(tmp_path, relay_lease=SHORT_LEASE)
    # Node A's smarthost accepts connections and never answers: A claims its
    # deliveries and sits on them (leased, nothing sent) until it is killed.
    tarpit = socket.socket()
    tarpit.bind(("127.0.0.1", 0))
    tarpit.listen(64)
    try:
        a = c.start("node-a", tarpit.getsockname()[1])
        c.start("node-b", recorder.port)
        shas: dict[str, str] = {}
        c.submit("node-a", [f"kill.{i}" for i in range(10)], shas)

        def settled() -> bool:  # released from held, and each leased or done
            rows = c.deliveries()
            return len(rows) == 10 and all(
                r["state"] == "delivered" or r["lease_owner"] is not None for r in rows
            )

        wait_for(settled, 30, "node A's messages to be queued and claimed")
        held_by_a = {
            r["id"]: r
            for r in c.deliveries()
            if r["state"] == "queued" and r["lease_owner"] == "node-a"
        }
        assert held_by_a, "node A claimed none of its own deliveries"
        a.kill()

        wait_for(lambda: _all_final(c, 10), 30, "node B to deliver node A's messages")
        rows = {r["id"]: r for r in c.deliveries()}
        arrivals = {x.message_id: x for x in recorder.arrivals}
        assert recorder.counts() == Counter(dict.fromkeys(shas, 1))
        for i, before in held_by_a.items():
            after = rows[i]
            assert after["state"] == "delivered" and after["last_node"] == "node-b"
            # B left A's lease alone until it expired.
            assert arrivals[after["message_id"]].time >= before["lease_until"]
        for sha in shas.values():
            assert sorted(c.events(sha)) == ["RelayToNonERDS", "SubmissionAcceptance"]
    finally:
        c.close()
        tarpit.close()


class SlowRecorder(Recorder):
    """A recipient server that takes ``stall`` seconds before answering the first DATA."""

    def __init__(self, stall: float) -> None:
        super().__init__()
        self.stall = stall
        self.data_commands = 0

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        import asyncio

        self.data_commands += 1
        if self.data_commands == 1:
            await asyncio.sleep(self.stall)
        return await super().handle_DATA(server, session, envelope)


def test_a_slow_delivery_keeps_its_lease_and_is_made_once(tmp_path: Path) -> None:
    """An attempt that outlasts the lease renews it: the other node, idle and polling
    the queue all along, never takes the delivery over, so it is made once."""
    slow = SlowRecorder(stall=3 * SHORT_LEASE)
    slow.controller.start()
    c = Cluster(tmp_path, relay_lease=SHORT_LEASE)
    try:
        c.start("node-a", slow.port)
        c.start("node-b", slow.port)
        shas: dict[str, str] = {}
        c.submit("node-a", ["slow.1"], shas)
        wait_for(lambda: _all_final(c, 1), 60, "the slow delivery to finish")
        assert slow.data_commands == 1, "another node delivered while the first was sending"
        assert slow.counts() == Counter(dict.fromkeys(shas, 1))
        (row,) = c.deliveries()
        assert row["state"] == "delivered" and row["lease_owner"] is None
        (sha,) = shas.values()
        assert sorted(c.events(sha)) == ["RelayToNonERDS", "SubmissionAcceptance"]
    finally:
        c.close()
        slow.controller.stop()
