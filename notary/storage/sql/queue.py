"""The relay queue's SQL (notary.storage.QueueStore): spool, deliveries, leases."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from notary.errors import StorageError
from notary.storage import (
    DELIVERY_STATES,
    AttemptRecord,
    Delivery,
    DeliveryStatus,
    DeliveryUpdate,
    HeldMessage,
    QueueWrite,
    SpoolItem,
)
from notary.storage.sql.dialect import Cursor, SQLBase

_DUE = "state = 'queued' AND next_attempt <= ? AND (lease_until IS NULL OR lease_until < ?)"


def _json_or_none(v: Any) -> dict[str, Any] | None:
    if v is None:
        return None
    out: dict[str, Any] = json.loads(str(v))
    return out


def _time_or_none(v: Any) -> datetime | None:
    return None if v is None else datetime.fromtimestamp(float(v), UTC)


def _delivery(r: Sequence[Any]) -> Delivery:
    return Delivery(
        int(r[0]),
        int(r[1]),
        str(r[2]),
        int(r[3]),
        bool(r[4]),
        str(r[5]),
        str(r[6]),
        None if r[7] is None else int(r[7]),
        str(r[8]),
        datetime.fromtimestamp(float(r[9]), UTC),
        str(r[10]),
        _json_or_none(r[12]),
        None if r[13] is None else (str(r[13]), str(r[14])),
    )


class QueueSQL(SQLBase):
    """The QueueStore methods of a backend."""

    def queue_write(self, write: QueueWrite) -> list[int]:
        try:
            with self._write() as cur:
                return self._queue_write(cur, write)
        except self.dialect.error as e:
            raise StorageError(f"cannot write the relay queue: {e}") from e

    def _queue_write(self, cur: Cursor, write: QueueWrite) -> list[int]:
        """Apply ``write`` in the caller's transaction; the ids of its new spool rows."""
        ids = [self._spool_one(cur, it) for it in write.spool]
        d = self.dialect
        for cond, params in d.in_lists("spool_id", write.release):
            d.run(
                cur,
                f"UPDATE deliveries SET state = 'queued' WHERE {cond} AND state = 'held'",  # noqa: S608
                params,
            )
        for sid in write.discard:
            self._discard_held(cur, sid)
        if write.updates:
            self._record_outcomes(cur, write.updates)
        return ids

    def _spool_one(self, cur: Cursor, it: SpoolItem) -> int:
        """Spool one message and its deliveries (held or queued); its spool id."""
        d = self.dialect
        received = it.received.timestamp()
        row = d.run(
            cur,
            "INSERT INTO spool (sha256, message_id, account_id, mail_from, received,"
            " node, log_size, kind, data) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
            (
                it.sha256,
                it.message_id,
                it.account_id,
                it.mail_from,
                received,
                it.node,
                it.log_size,
                it.kind,
                it.data,
            ),
        ).fetchone()
        sid = int(row[0])
        state = "held" if it.held else "queued"
        cur.executemany(
            d.sql(
                "INSERT INTO deliveries (spool_id, recipient, state, next_attempt)"
                " VALUES (?, ?, ?, ?)"
            ),
            [(sid, r, state, received) for r in it.recipients],
        )
        return sid

    def _discard_held(self, cur: Cursor, sid: int) -> None:
        """Delete spool row ``sid`` and its deliveries if none of them left 'held'."""
        d = self.dialect
        row = d.run(
            cur,
            "SELECT COUNT(*) FROM deliveries WHERE spool_id = ? AND state != 'held'",
            (sid,),
        ).fetchone()
        if int(row[0]) == 0:
            d.run(cur, "DELETE FROM deliveries WHERE spool_id = ?", (sid,))
            d.run(cur, "DELETE FROM spool WHERE id = ?", (sid,))

    def _record_outcomes(self, cur: Cursor, updates: Sequence[DeliveryUpdate]) -> None:
        """Each delivery's new state, the attempt it ends, and spool data no longer needed."""
        d = self.dialect
        cur.executemany(
            d.sql(
                "UPDATE deliveries SET state = ?, next_attempt = ?, last_error = ?,"
                " warned = ?, attempts = attempts + 1, lease_owner = NULL,"
                " lease_until = NULL, last_node = COALESCE(?, last_node),"
                " last_reply = COALESCE(?, last_reply),"
                " last_attempt = COALESCE(?, last_attempt) WHERE id = ?"
            ),
            [
                (
                    u.state,
                    u.next_attempt.timestamp() if u.next_attempt else None,
                    u.error,
                    u.warned,
                    u.node,
                    None if u.reply is None else json.dumps(u.reply),
                    u.attempted.timestamp() if u.attempted else None,
                    u.delivery_id,
                )
                for u in updates
            ],
        )
        # The attempts these outcomes end (a final one was recorded before it was logged).
        cur.executemany(
            d.sql(
                "UPDATE delivery_attempts SET outcome = ?, finished = ?, reply = ?, error = ?"
                " WHERE delivery_id = ? AND outcome IS NULL"
            ),
            [
                (
                    "deferred" if u.state == "queued" else u.state,
                    (u.attempted or datetime.now(UTC)).timestamp(),
                    None if u.reply is None else json.dumps(u.reply),
                    u.error,
                    u.delivery_id,
                )
                for u in updates
            ],
        )
        final = [u.delivery_id for u in updates if u.state != "queued"]
        for cond, params in d.in_lists("id", final):
            d.run(
                cur,
                "UPDATE spool SET data = NULL WHERE id IN (SELECT spool_id FROM"  # noqa: S608
                f" deliveries WHERE {cond}) AND NOT EXISTS (SELECT 1 FROM"
                " deliveries d WHERE d.spool_id = spool.id"
                " AND d.state IN ('held', 'queued'))",
                params,
            )

    def claim_deliveries(
        self, node: str, now: datetime, lease_until: datetime, limit: int
    ) -> list[Delivery]:
        d, t = self.dialect, now.timestamp()
        # A cheap read first: no write transaction (and no fsync) when nothing is due.
        if (
            d.run(
                self._read(),
                f"SELECT 1 FROM deliveries WHERE {_DUE} LIMIT 1",  # noqa: S608
                (t, t),
            ).fetchone()
            is None
        ):
            return []
        with self._write() as cur:
            # Each due row goes to one claimer: on PostgreSQL rows another node is
            # claiming right now are skipped, not waited for.
            ids = [
                int(r[0])
                for r in d.run(
                    cur,
                    f"SELECT id FROM deliveries WHERE {_DUE} ORDER BY next_attempt, id LIMIT ?"  # noqa: S608
                    + self.dialect.skip_locked,
                    (t, t, limit),
                ).fetchall()
            ]
            rows: list[Any] = []
            for cond, params in self.dialect.in_lists("id", ids):
                d.run(
                    cur,
                    f"UPDATE deliveries SET lease_owner = ?, lease_until = ? WHERE {cond}",  # noqa: S608
                    (node, lease_until.timestamp(), *params),
                )
            for cond, params in self.dialect.in_lists("d.id", ids):
                rows += d.run(
                    cur,
                    "SELECT d.id, d.spool_id, d.recipient, d.attempts, d.warned, s.sha256,"  # noqa: S608
                    " s.message_id, s.account_id, s.mail_from, s.received, s.kind,"
                    " d.next_attempt, d.last_reply, a.event, a.evidence"
                    " FROM deliveries d JOIN spool s ON s.id = d.spool_id"
                    " LEFT JOIN delivery_attempts a ON a.delivery_id = d.id"
                    f" AND a.outcome = 'final' WHERE {cond}",
                    params,
                ).fetchall()
        rows.sort(key=lambda r: (r[11], r[0]))
        return [_delivery(r) for r in rows]

    def spooled_data(self, spool_id: int) -> bytes | None:
        row = self.dialect.run(
            self._read(), "SELECT data FROM spool WHERE id = ?", (spool_id,)
        ).fetchone()
        return None if row is None or row[0] is None else bytes(row[0])

    def spooled_size(self, spool_id: int) -> int | None:
        row = self.dialect.run(
            self._read(), "SELECT length(data) FROM spool WHERE id = ?", (spool_id,)
        ).fetchone()
        return None if row is None or row[0] is None else int(row[0])

    def held_messages(
        self, received_before: datetime, node: str | None = None
    ) -> list[HeldMessage]:
        rows = self.dialect.run(
            self._read(),
            "SELECT DISTINCT s.id, s.sha256, s.message_id, s.account_id, s.received,"
            " s.log_size, s.node FROM spool s JOIN deliveries d ON d.spool_id = s.id"
            " WHERE d.state = 'held' AND s.received < ?"
            " AND (CAST(? AS TEXT) IS NULL OR s.node = ?) ORDER BY s.id",
            (received_before.timestamp(), node, node),
        ).fetchall()
        return [
            HeldMessage(
                int(r[0]),
                str(r[1]),
                str(r[2]),
                None if r[3] is None else int(r[3]),
                datetime.fromtimestamp(float(r[4]), UTC),
                int(r[5]),
                str(r[6]),
            )
            for r in rows
        ]

    def renew_leases(self, node: str, ids: Sequence[int], lease_until: datetime) -> int:
        return self._update_leased(node, ids, "lease_until = ?", (lease_until.timestamp(),))

    def release_leases(self, node: str) -> int:
        with self._write() as cur:
            return int(
                self.dialect.run(
                    cur,
                    "UPDATE deliveries SET lease_owner = NULL, lease_until = NULL"
                    " WHERE lease_owner = ?",
                    (node,),
                ).rowcount
            )

    def queue_counts(self) -> dict[str, int]:
        counts = dict.fromkeys(DELIVERY_STATES, 0)
        for state, n in self.dialect.run(
            self._read(), "SELECT state, COUNT(*) FROM deliveries GROUP BY state"
        ).fetchall():
            counts[str(state)] = int(n)
        return counts

    def postpone_deliveries(self, node: str, ids: Sequence[int], until: datetime) -> int:
        return self._update_leased(
            node,
            ids,
            "next_attempt = ?, lease_owner = NULL, lease_until = NULL",
            (until.timestamp(),),
        )

    def _update_leased(
        self, node: str, ids: Sequence[int], assignments: str, values: tuple[object, ...]
    ) -> int:
        """``UPDATE deliveries SET <assignments>`` on the queued ``ids`` ``node`` leases."""
        if not ids:
            return 0
        n = 0
        with self._write() as cur:
            for cond, params in self.dialect.in_lists("id", ids):
                n += int(
                    self.dialect.run(
                        cur,
                        f"UPDATE deliveries SET {assignments}"  # noqa: S608
                        f" WHERE lease_owner = ? AND state = 'queued' AND {cond}",
                        (*values, node, *params),
                    ).rowcount
                )
        return n

    def start_attempt(self, delivery_id: int, recipient: str, node: str, started: datetime) -> int:
        d = self.dialect
        with self._write() as cur:
            d.run(
                cur,
                "UPDATE delivery_attempts SET outcome = 'uncertain'"
                " WHERE delivery_id = ? AND outcome IS NULL",
                (delivery_id,),
            )
            row = d.run(
                cur,
                "INSERT INTO delivery_attempts (delivery_id, recipient, node, started)"
                " VALUES (?, ?, ?, ?) RETURNING id",
                (delivery_id, recipient, node, started.timestamp()),
            ).fetchone()
            return int(row[0])

    def record_final(
        self,
        attempt_id: int,
        event: str,
        evidence: str,
        reply: dict[str, Any] | None,
        queue_id: str | None,
        finished: datetime,
    ) -> bool:
        try:
            with self._write() as cur:
                self.dialect.run(
                    cur,
                    "UPDATE delivery_attempts SET outcome = 'final', event = ?, evidence = ?,"
                    " reply = ?, queue_id = ?, finished = ? WHERE id = ?",
                    (
                        event,
                        evidence,
                        None if reply is None else json.dumps(reply),
                        queue_id,
                        finished.timestamp(),
                        attempt_id,
                    ),
                )
        except StorageError as e:
            if isinstance(e.__cause__, self.dialect.unique_violation):
                return False
            raise
        return True

    def notice_spooled(self, sha256: str) -> bool:
        row = self.dialect.run(
            self._read(),
            "SELECT 1 FROM spool WHERE sha256 = ? AND kind = 'notice' LIMIT 1",
            (sha256,),
        ).fetchone()
        return row is not None

    def deliveries_for_message(self, sha256: str, account_id: int) -> list[DeliveryStatus]:
        return self.deliveries_for_messages([sha256], account_id).get(sha256, [])

    def deliveries_for_messages(
        self, hashes: Sequence[str], account_id: int
    ) -> dict[str, list[DeliveryStatus]]:
        """Each hash's deliveries with their attempts: two queries per chunk of hashes
        (the deliveries, then all their attempts), not two per message."""
        d, cur = self.dialect, self._read()
        found: list[tuple[int, str, Sequence[Any]]] = []
        for cond, params in d.in_lists("s.sha256", list(dict.fromkeys(hashes))):
            q = (
                "SELECT d.id, s.sha256, d.recipient, d.state, d.attempts, s.received,"  # noqa: S608
                " d.next_attempt, d.last_attempt, d.last_error, d.last_reply"
                " FROM deliveries d JOIN spool s ON s.id = d.spool_id"
                f" WHERE {cond} AND s.account_id = ? AND s.kind = 'message' ORDER BY d.id"
            )
            rows = d.run(cur, q, (*params, account_id)).fetchall()
            found += [(int(r[0]), str(r[1]), r[2:]) for r in rows]
        history: dict[int, list[AttemptRecord]] = {}
        for cond, params in d.in_lists("delivery_id", [i for i, _, _ in found]):
            q = (
                "SELECT delivery_id, started, finished, outcome, reply, event, evidence,"  # noqa: S608
                f" error FROM delivery_attempts WHERE {cond} ORDER BY id"
            )
            for a in d.run(cur, q, params).fetchall():
                history.setdefault(int(a[0]), []).append(_attempt(a[1:]))
        out: dict[str, list[DeliveryStatus]] = {}
        for i, sha, r in found:
            out.setdefault(sha, []).append(
                DeliveryStatus(
                    str(r[0]),
                    str(r[1]),
                    int(r[2]),
                    datetime.fromtimestamp(float(r[3]), UTC),
                    _time_or_none(r[4]) if r[1] == "queued" else None,
                    _time_or_none(r[5]),
                    None if r[6] is None else str(r[6]),
                    _json_or_none(r[7]),
                    tuple(history.get(i, ())),
                )
            )
        return out


#: A final attempt's outcome by the event its evidence was logged as.
_FINAL = {"RelayToNonERDS": "delivered", "RelayToNonERDSFailure": "failed"}


def _attempt(a: Sequence[Any]) -> AttemptRecord:
    """One ``delivery_attempts`` row (started, finished, outcome, reply, event, evidence,
    error) as the sender sees it."""
    evidence = _json_or_none(a[5]) or {}
    outcome = None if a[2] is None else str(a[2])
    if outcome == "final":
        outcome = _FINAL.get(str(a[4]), "failed")
    reply = _json_or_none(a[3]) or evidence.get("reply")
    host = evidence.get("host")
    return AttemptRecord(
        datetime.fromtimestamp(float(a[0]), UTC),
        _time_or_none(a[1]),
        outcome,
        reply if isinstance(reply, dict) else None,
        host if isinstance(host, str) else None,
        None if a[6] is None else str(a[6]),
    )
