"""PostgreSQL's sequencing transaction: pipelined, bulk rows as arrays or, from
``COPY_ROWS`` on, as a binary COPY after the pipeline (notary.storage.postgres).

Every test runs on both paths (``path``) against the same expectations.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterator

import psycopg
import pytest

from notary.errors import StorageError
from notary.note import Signer
from notary.sequencer import Sequencer, Submission
from notary.storage import postgres
from tests.notary.storage_backends import pg_url

pytestmark = pytest.mark.postgres


@pytest.fixture
def pg() -> Iterator[postgres.PostgresStorage]:
    s = postgres.PostgresStorage(pg_url("t_batch_" + uuid.uuid4().hex[:10]))
    yield s
    s.drop_schema()
    s.close()


@pytest.fixture(params=["unnest", "copy"])
def copies(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The path under test (COPY from 3 rows on, or never), and the COPY statements sent."""
    monkeypatch.setattr(postgres, "COPY_ROWS", 3 if request.param == "copy" else 10**9)
    sent: list[str] = []
    copy = psycopg.Cursor.copy

    def spy(self: psycopg.Cursor[object], statement: str, *a: object, **k: object):  # type: ignore[no-untyped-def]
        sent.append(statement)
        return copy(self, statement, *a, **k)  # type: ignore[arg-type]

    monkeypatch.setattr(psycopg.Cursor, "copy", spy)
    return sent if request.param == "copy" else []


def _subs(n: int, start: int = 0) -> list[Submission]:
    return [
        Submission(
            "SubmissionAcceptance",
            hashlib.sha256(b"m%d" % i).hexdigest(),
            f"<{i}@batch>",
            None if i % 3 == 0 else i,  # some rows without an account: NULLs in the rows
        )
        for i in range(start, start + n)
    ]


def test_a_batch_reads_back_from_another_connection(
    pg: postgres.PostgresStorage, copies: list[str]
) -> None:
    items = _subs(10)
    receipts = Sequencer(pg, Signer.generate("batch.test/log")).commit_batch(items)
    assert len(receipts) == 10
    # The copy path sent entries, index keys and hashes as COPY; the other none.
    assert [s.split()[1] for s in copies] == (
        ["entries", "message_index", "hashes"] if copies else []
    )
    # Committed (and durable) when commit_batch returned: a new connection sees it all.
    other = postgres.PostgresStorage(pg.url, schema=pg.schema)
    try:
        cp = other.latest_checkpoint()
        assert cp is not None and cp.size == 10
        got = list(other.iter_entries())
        assert [e.entry for e in got] == [r.entry for r in receipts]
        assert [e.account_id for e in got] == [s.account_id for s in items]
        assert all(e.tst is None for e in got)
        assert [e.index for e in other.entries_for_message(items[7].sha256)] == [7]
    finally:
        other.close()


def test_a_failed_batch_leaves_nothing_and_the_next_one_commits(
    pg: postgres.PostgresStorage, copies: list[str]
) -> None:
    seq = Sequencer(pg, Signer.generate("batch.test/log"))
    seq.commit_batch(_subs(4))
    with pytest.raises(StorageError, match="conflicting write"), pg.sequence() as tx:
        # Hashes 0-2 are taken: the error surfaces at the pipeline's end or the COPY's,
        # and the transaction rolls back.
        tx.append(0, [], [b"\0" * 32] * 3, 0, tx.latest_checkpoint())  # type: ignore[arg-type]
    assert pg.latest_checkpoint().size == 4  # type: ignore[union-attr]
    assert len(seq.commit_batch(_subs(3, 4))) == 3
    assert [e.index for e in pg.entries_for_message(_subs(1, 5)[0].sha256)] == [5]


def test_an_error_queued_in_the_pipeline_surfaces_before_a_copy(
    pg: postgres.PostgresStorage, copies: list[str]
) -> None:
    Sequencer(pg, Signer.generate("batch.test/log")).commit_batch(_subs(4))
    copies.clear()
    with pytest.raises(StorageError, match="conflicting write"), pg.sequence() as tx:
        pg.dialect.bulk_insert(tx.cur, "hashes", "idx, hash", [(0, b"\0" * 32)])  # taken
        # Three new rows: on the copy path the pipeline ends here, with the error above.
        rows = [(100 + i, b"\1" * 32) for i in range(3)]
        pg.dialect.bulk_insert(tx.cur, "hashes", "idx, hash", rows)
    assert copies == []  # the pipeline's end raised: no COPY was sent after it
    with pytest.raises(StorageError, match="missing"):
        pg.read_hashes([100])  # rolled back
    assert pg.latest_checkpoint().size == 4  # type: ignore[union-attr]


def test_an_exception_in_the_batch_rolls_it_back(
    pg: postgres.PostgresStorage, copies: list[str]
) -> None:
    """BEGIN and COMMIT are the pipeline's own statements: a batch its caller gives up
    (the sequencer refusing to sign) leaves nothing, and the connection takes the next."""
    seq = Sequencer(pg, Signer.generate("batch.test/log"))
    seq.commit_batch(_subs(4))
    with pytest.raises(RuntimeError, match="refused"), pg.sequence() as tx:
        rows = [(100 + i, b"\1" * 32) for i in range(3)]
        pg.dialect.bulk_insert(tx.cur, "hashes", "idx, hash", rows)
        raise RuntimeError("refused")
    with pytest.raises(StorageError, match="missing"):
        pg.read_hashes([100])  # rolled back
    assert len(seq.commit_batch(_subs(3, 4))) == 3
    assert pg.latest_checkpoint().size == 7  # type: ignore[union-attr]


def test_begin_is_not_waited_for_on_its_own(
    pg: postgres.PostgresStorage, copies: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A batch's BEGIN goes with the lock and the read of the tree (one round trip), not
    before them: psycopg's transaction() would send and wait for it alone."""
    seq = Sequencer(pg, Signer.generate("batch.test/log"))
    seq.commit_batch(_subs(4))
    alone: list[bytes] = []
    command = psycopg.Connection._exec_command

    def spy(self: psycopg.Connection[object], cmd: bytes, *a: object, **k: object):  # type: ignore[no-untyped-def]
        alone.append(bytes(cmd))  # a command sent apart from the pipeline and waited for
        return command(self, cmd, *a, **k)  # type: ignore[arg-type]

    monkeypatch.setattr(psycopg.Connection, "_exec_command", spy)
    seq.commit_batch(_subs(3, 4))
    monkeypatch.undo()
    assert b"BEGIN" not in alone
    assert pg.latest_checkpoint().size == 7  # type: ignore[union-attr]
