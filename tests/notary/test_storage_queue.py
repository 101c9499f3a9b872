"""The relay's spool and delivery queue, run against every storage backend."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from notary.errors import StorageError
from notary.storage import DeliveryUpdate, QueueWrite, SpoolItem, Storage
from tests.fixtures.storage import T0
from tests.notary.storage_backends import BACKENDS, open_backend

LEASE = T0 + timedelta(minutes=10)


@pytest.fixture(params=BACKENDS)
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Storage]:
    yield from open_backend(request.param, tmp_path)


def _item(
    n: int, rcpts: tuple[str, ...] = ("b@x.test",), *, held: bool = True, node: str = "n1"
) -> SpoolItem:
    return SpoolItem(
        f"{n:064x}", f"<{n}@x>", 1, "a@x.test", rcpts, b"bytes %d" % n, T0, node, 7, held=held
    )


def test_held_until_released(storage: Storage) -> None:
    (sid,) = storage.queue_write(QueueWrite(spool=[_item(1, ("b@x.test", "c@x.test"))]))
    assert storage.spooled_data(sid) == b"bytes 1"
    assert storage.claim_deliveries("n1", T0, LEASE, 10) == []
    (h,) = storage.held_messages(T0 + timedelta(seconds=1))
    assert (h.spool_id, h.log_size, h.node, h.sha256) == (sid, 7, "n1", f"{1:064x}")
    assert storage.held_messages(T0 + timedelta(seconds=1), "other") == []
    assert storage.held_messages(T0) == []  # spooled at T0, not before
    storage.queue_write(QueueWrite(release=[sid]))
    assert storage.held_messages(T0 + timedelta(seconds=1)) == []
    got = storage.claim_deliveries("n1", T0, LEASE, 10)
    assert sorted(d.recipient for d in got) == ["b@x.test", "c@x.test"]
    assert {(d.spool_id, d.sha256, d.message_id, d.mail_from, d.kind, d.attempts) for d in got} == {
        (sid, f"{1:064x}", "<1@x>", "a@x.test", "message", 0)
    }
    assert got[0].received == T0
    assert storage.queue_counts()["queued"] == 2


def test_lease_excludes_others_until_it_expires_or_is_released(storage: Storage) -> None:
    storage.queue_write(QueueWrite(spool=[_item(1, held=False)]))
    (d,) = storage.claim_deliveries("n1", T0, LEASE, 10)
    assert storage.claim_deliveries("n2", T0, LEASE, 10) == []
    assert [
        x.id
        for x in storage.claim_deliveries(
            "n2", LEASE + timedelta(seconds=1), LEASE + timedelta(minutes=10), 10
        )
    ] == [d.id]
    assert storage.release_leases("n1") == 0  # n2 holds it now
    assert storage.release_leases("n2") == 1
    assert [x.id for x in storage.claim_deliveries("n1", T0, LEASE, 10)] == [d.id]


def test_renew_extends_only_the_holders_leases(storage: Storage) -> None:
    storage.queue_write(QueueWrite(spool=[_item(1, held=False), _item(2, held=False)]))
    d1, d2 = storage.claim_deliveries("n1", T0, LEASE, 10)
    later = LEASE + timedelta(minutes=10)
    assert storage.renew_leases("n2", [d1.id, d2.id], later) == 0  # not n2's
    assert storage.renew_leases("n1", [d1.id], later) == 1
    assert storage.renew_leases("n1", [], later) == 0
    # Past the first lease only d2 (not renewed) may be taken over.
    got = storage.claim_deliveries("n2", LEASE + timedelta(seconds=1), later, 10)
    assert [x.id for x in got] == [d2.id]
    assert (
        storage.claim_deliveries(
            "n2", later + timedelta(seconds=1), later + timedelta(minutes=10), 10
        )[0].id
        == d1.id
    )


def test_outcomes_retry_and_purge(storage: Storage) -> None:
    (sid,) = storage.queue_write(QueueWrite(spool=[_item(1, ("b@x.test", "c@x.test"), held=False)]))
    d1, d2 = storage.claim_deliveries("n1", T0, LEASE, 10)
    later = T0 + timedelta(minutes=5)
    storage.queue_write(
        QueueWrite(
            updates=[
                DeliveryUpdate(d1.id, "delivered"),
                DeliveryUpdate(d2.id, "queued", next_attempt=later, error="451 later", warned=True),
            ]
        )
    )
    assert storage.spooled_data(sid) == b"bytes 1"  # one recipient is still to do
    assert storage.claim_deliveries("n1", T0 + timedelta(minutes=1), LEASE, 10) == []
    (again,) = storage.claim_deliveries("n1", later, LEASE + timedelta(minutes=5), 10)
    assert again.id == d2.id and again.attempts == 1 and again.warned
    storage.queue_write(QueueWrite(updates=[DeliveryUpdate(d2.id, "failed", error="550")]))
    assert storage.spooled_data(sid) is None  # every recipient final: bytes purged
    counts = storage.queue_counts()
    assert (counts["delivered"], counts["failed"], counts["queued"]) == (1, 1, 0)


def test_discard_only_drops_held_messages(storage: Storage) -> None:
    a, b = storage.queue_write(QueueWrite(spool=[_item(1), _item(2, held=False)]))
    storage.queue_write(QueueWrite(discard=[a, b]))
    assert storage.spooled_data(a) is None
    assert storage.spooled_data(b) == b"bytes 2"
    assert storage.held_messages(T0 + timedelta(hours=1)) == []
    assert len(storage.claim_deliveries("n1", T0, LEASE, 10)) == 1


def test_a_failed_write_leaves_nothing(storage: Storage) -> None:
    bad = SpoolItem("a" * 64, "<m@x>", 1, "a@x.test", ("b@x.test",), b"x", T0, "n1", 0)
    with pytest.raises(StorageError):
        storage.queue_write(QueueWrite(spool=[bad], updates=[DeliveryUpdate(1, "bogus")]))
    assert storage.queue_counts()["held"] == 0
    assert storage.held_messages(T0 + timedelta(hours=1)) == []


def test_concurrent_claimers_never_share_a_delivery(storage: Storage, tmp_path: Path) -> None:
    storage.queue_write(QueueWrite(spool=[_item(i, held=False) for i in range(200)]))
    others = list(_second_handle(storage, tmp_path))
    got: dict[str, list[int]] = {}

    def claim(name: str, s: Storage) -> None:
        ids: list[int] = []
        while batch := s.claim_deliveries(name, T0, LEASE, 7):
            ids += [d.id for d in batch]
        got[name] = ids

    threads = [
        threading.Thread(target=claim, args=(f"n{i}", s))
        for i, s in enumerate([storage, *others, *others])
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    all_ids = [i for ids in got.values() for i in ids]
    assert len(all_ids) == 200 and len(set(all_ids)) == 200
    for s in others:
        s.close()


def _second_handle(storage: Storage, tmp_path: Path) -> Iterator[Storage]:
    """Another connection set onto the same database, as a second serve process has."""
    from notary.storage.sqlite import SQLiteStorage

    if isinstance(storage, SQLiteStorage):
        yield SQLiteStorage(storage.path)
        return
    from notary.storage.postgres import PostgresStorage

    assert isinstance(storage, PostgresStorage)
    yield PostgresStorage(storage.url, schema=storage.schema)


def test_attempts_are_recorded_and_one_final_outcome_per_delivery(storage: Storage) -> None:
    storage.queue_write(QueueWrite(spool=[_item(1, held=False)]))
    (d,) = storage.claim_deliveries("n1", T0, LEASE, 10)
    assert d.settled is None and d.last_reply is None
    # A first attempt that never ended (the process died), then a second one.
    storage.start_attempt(d.id, d.recipient, "n1", T0)
    a2 = storage.start_attempt(d.id, d.recipient, "n1", T0 + timedelta(seconds=1))
    reply = {"code": 250, "text": "2.0.0 Ok: queued as ABC123"}
    assert storage.record_final(
        a2, "RelayToNonERDS", '{"recipient":"b@x.test"}', reply, "ABC123", T0 + timedelta(seconds=2)
    )
    # A third attempt (another node, after a takeover) cannot record a second one.
    a3 = storage.start_attempt(d.id, d.recipient, "n2", T0 + timedelta(seconds=3))
    assert not storage.record_final(
        a3, "RelayToNonERDS", "{}", reply, "XYZ", T0 + timedelta(seconds=4)
    )
    # The delivery was not settled (crash): a new claim carries the recorded outcome.
    storage.release_leases("n1")
    (again,) = storage.claim_deliveries("n1", T0, LEASE, 10)
    assert again.settled == ("RelayToNonERDS", '{"recipient":"b@x.test"}')


def test_delivery_state_keeps_the_last_reply(storage: Storage) -> None:
    storage.queue_write(QueueWrite(spool=[_item(1, held=False)]))
    (d,) = storage.claim_deliveries("n1", T0, LEASE, 10)
    nxt = T0 + timedelta(minutes=1)
    grey = {"code": 451, "text": "4.7.1 greylisted"}
    storage.queue_write(
        QueueWrite(
            updates=[
                DeliveryUpdate(
                    d.id,
                    "queued",
                    next_attempt=nxt,
                    error="RCPT: 451 4.7.1 greylisted",
                    reply=grey,
                    attempted=T0,
                )
            ]
        )
    )
    (st,) = storage.deliveries_for_message(f"{1:064x}", 1)
    assert (st.recipient, st.state, st.attempts) == ("b@x.test", "queued", 1)
    assert st.next_attempt == nxt and st.last_attempt == T0 and st.last_reply == grey
    assert st.last_error == "RCPT: 451 4.7.1 greylisted"
    assert storage.deliveries_for_message(f"{1:064x}", 2) == []  # another account's
    # A later attempt without a reply (no connection) keeps the last reply.
    (d,) = storage.claim_deliveries("n1", nxt, nxt + timedelta(minutes=10), 10)
    assert d.last_reply == grey
    storage.queue_write(QueueWrite(updates=[DeliveryUpdate(d.id, "failed", error="deadline")]))
    (st,) = storage.deliveries_for_message(f"{1:064x}", 1)
    assert st.state == "failed" and st.next_attempt is None and st.last_reply == grey


def test_many_messages_deliveries_with_every_attempt(storage: Storage) -> None:
    """``deliveries_for_messages``: each hash's deliveries (another account's: none), each
    with its attempts in order: a deferred one (its reply and error), then the final one
    (the server its evidence names)."""
    import json

    one, two, three = f"{1:064x}", f"{2:064x}", f"{3:064x}"
    storage.queue_write(
        QueueWrite(spool=[_item(1, held=False), _item(2, ("c@x", "d@x"), held=False)])
    )
    by = {(d.sha256, d.recipient): d for d in storage.claim_deliveries("n1", T0, LEASE, 10)}
    d = by[(one, "b@x.test")]
    grey, ok = {"code": 451, "text": "4.7.1 greylisted"}, {"code": 250, "text": "2.0.0 ok"}
    why = "mx.x.test[192.0.2.1]:25 RCPT: 451 4.7.1 greylisted"
    storage.start_attempt(d.id, d.recipient, "n1", T0)
    nxt = T0 + timedelta(minutes=1)
    update = DeliveryUpdate(d.id, "queued", next_attempt=nxt, error=why, reply=grey, attempted=T0)
    storage.queue_write(QueueWrite(updates=[update]))
    (d,) = storage.claim_deliveries("n1", nxt, nxt + timedelta(minutes=10), 10)
    a = storage.start_attempt(d.id, d.recipient, "n1", nxt)
    evidence = json.dumps({"recipient": "b@x.test", "host": "mx.x.test", "reply": ok})
    assert storage.record_final(a, "RelayToNonERDS", evidence, ok, "q1", nxt)
    storage.queue_write(
        QueueWrite(updates=[DeliveryUpdate(d.id, "delivered", reply=ok, attempted=nxt)])
    )
    got = storage.deliveries_for_messages([two, three, one, two], 1)
    assert set(got) == {one, two}
    (st,) = got[one]
    assert (st.state, st.attempts) == ("delivered", 2)
    assert [(h.started, h.outcome, h.reply, h.host, h.error) for h in st.history] == [
        (T0, "deferred", grey, None, why),
        (nxt, "delivered", ok, "mx.x.test", None),
    ]
    assert st.history[0].finished == T0 and st.history[1].finished == nxt
    assert [(x.recipient, x.history) for x in got[two]] == [("c@x", ()), ("d@x", ())]
    assert storage.deliveries_for_messages([one, two], 2) == {}  # another account's
    assert storage.deliveries_for_message(one, 1) == got[one]


def test_postponed_deliveries_are_due_later_without_an_attempt(storage: Storage) -> None:
    storage.queue_write(QueueWrite(spool=[_item(1, held=False)]))
    (d,) = storage.claim_deliveries("n1", T0, LEASE, 10)
    later = T0 + timedelta(seconds=5)
    assert storage.postpone_deliveries("n2", [d.id], later) == 0  # not n2's lease
    assert storage.postpone_deliveries("n1", [d.id], later) == 1
    assert storage.claim_deliveries("n1", T0 + timedelta(seconds=1), LEASE, 10) == []
    (again,) = storage.claim_deliveries("n2", later, LEASE, 10)
    assert again.attempts == 0


OLD_LAYOUT = [  # back to the layout before delivery attempts were recorded
    "DROP TABLE delivery_attempts",
    "ALTER TABLE deliveries DROP COLUMN last_reply",
    "ALTER TABLE deliveries DROP COLUMN last_attempt",
]


@pytest.mark.parametrize("kind", BACKENDS)
def test_a_queue_from_before_delivery_attempts_opens_and_works(kind: str, tmp_path: Path) -> None:
    import uuid

    from notary.storage.postgres import PostgresStorage
    from notary.storage.sqlite import SQLiteStorage
    from tests.notary.storage_backends import require_pg

    def reopen() -> Storage:
        if kind == "sqlite":
            return SQLiteStorage(tmp_path / "old.db")
        return PostgresStorage(require_pg(), schema=schema)

    schema = "t_" + uuid.uuid4().hex[:16]
    s = reopen()
    s.queue_write(QueueWrite(spool=[_item(1, held=False)]))
    if kind == "sqlite":
        import sqlite3

        s.close()
        with sqlite3.connect(tmp_path / "old.db") as conn:
            for q in OLD_LAYOUT:
                conn.execute(q)
    else:
        import psycopg

        with psycopg.connect(require_pg(), autocommit=True) as pg:
            pg.execute(f'SET search_path TO "{schema}"')
            for q in OLD_LAYOUT:
                pg.execute(q)
        s.close()
    s = reopen()
    try:
        (d,) = s.claim_deliveries("n1", T0, LEASE, 10)
        assert d.last_reply is None and d.settled is None
        a = s.start_attempt(d.id, d.recipient, "n1", T0)
        assert s.record_final(a, "RelayToNonERDS", "{}", None, None, T0)
        (st,) = s.deliveries_for_message(f"{1:064x}", 1)
        assert st.state == "queued" and st.last_reply is None
        reopen().close()  # the migration is idempotent
    finally:
        if isinstance(s, PostgresStorage):
            s.drop_schema()
        s.close()


@pytest.mark.parametrize("kind", BACKENDS)
def test_attempts_from_before_their_error_was_kept_gain_the_column(
    kind: str, tmp_path: Path
) -> None:
    import uuid

    from notary.storage.postgres import PostgresStorage
    from notary.storage.sqlite import SQLiteStorage
    from tests.notary.storage_backends import require_pg

    schema = "t_" + uuid.uuid4().hex[:16]
    drop = "ALTER TABLE delivery_attempts DROP COLUMN error"
    if kind == "sqlite":
        import sqlite3

        SQLiteStorage(tmp_path / "old.db").close()
        with sqlite3.connect(tmp_path / "old.db") as conn:
            conn.execute(drop)
        s: Storage = SQLiteStorage(tmp_path / "old.db")
    else:
        import psycopg

        PostgresStorage(require_pg(), schema=schema).close()
        with psycopg.connect(require_pg(), autocommit=True) as pg:
            pg.execute(f'SET search_path TO "{schema}"')
            pg.execute(drop)
        s = PostgresStorage(require_pg(), schema=schema)
    try:
        s.queue_write(QueueWrite(spool=[_item(1, held=False)]))
        (d,) = s.claim_deliveries("n1", T0, LEASE, 10)
        s.start_attempt(d.id, d.recipient, "n1", T0)
        s.queue_write(QueueWrite(updates=[DeliveryUpdate(d.id, "failed", error="refused")]))
        (st,) = s.deliveries_for_message(f"{1:064x}", 1)
        assert [(h.outcome, h.error) for h in st.history] == [("failed", "refused")]
    finally:
        if isinstance(s, PostgresStorage):
            s.drop_schema()
        s.close()
