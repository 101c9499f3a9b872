"""PostgreSQL's sequencing transaction: pipelined, bulk rows as arrays (notary.storage.postgres)."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterator

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


def _subs(n: int) -> list[Submission]:
    return [
        Submission(
            "SubmissionAcceptance",
            hashlib.sha256(b"m%d" % i).hexdigest(),
            f"<{i}@batch>",
            None if i % 3 == 0 else i,  # some rows without an account: NULLs in the array
        )
        for i in range(n)
    ]


def test_a_batch_over_several_bulk_statements_reads_back_from_another_connection(
    pg: postgres.PostgresStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(postgres, "BULK_ROWS", 3)  # 10 rows: 4 INSERTs per table
    items = _subs(10)
    receipts = Sequencer(pg, Signer.generate("batch.test/log")).commit_batch(items)
    assert len(receipts) == 10
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
    pg: postgres.PostgresStorage,
) -> None:
    seq = Sequencer(pg, Signer.generate("batch.test/log"))
    seq.commit_batch(_subs(2))
    with pytest.raises(StorageError, match="conflicting write"), pg.sequence() as tx:
        # Hash 0 is taken: the error surfaces at the pipeline's end, the transaction rolls back.
        tx.append(0, [], [b"\0" * 32], 0, tx.latest_checkpoint())  # type: ignore[arg-type]
    assert pg.latest_checkpoint().size == 2  # type: ignore[union-attr]
    assert len(seq.commit_batch(_subs(3))) == 3
