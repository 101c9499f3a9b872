"""The sequencer keeps committed stored hashes between batches, and still refuses a damaged log."""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from notary.errors import SequencerError
from notary.note import Signer
from notary.sequencer import Sequencer, Submission
from notary.storage.sqlite import SQLiteStorage


def _subs(n: int, tag: str) -> list[Submission]:
    return [
        Submission(
            "SubmissionAcceptance",
            hashlib.sha256(f"{tag}{i}".encode()).hexdigest(),
            f"<{tag}{i}@x>",
            1,
            {},
        )
        for i in range(n)
    ]


class _CountingStore:
    """A LogStore whose transactions count the stored hashes read from the database."""

    def __init__(self, inner: SQLiteStorage) -> None:
        self.inner, self.read = inner, 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    @contextmanager
    def sequence(self) -> Any:
        outer = self

        with self.inner.sequence() as tx:

            class Tx:
                def __getattr__(self, name: str) -> Any:
                    return getattr(tx, name)

                def read_hashes(self, indexes: Sequence[int]) -> list[bytes]:
                    outer.read += len(indexes)
                    return tx.read_hashes(indexes)

            yield Tx()


def test_later_batches_read_the_tree_edge_from_memory(tmp_path: Path) -> None:
    st = _CountingStore(SQLiteStorage(tmp_path / "n.db"))
    seq = Sequencer(st, Signer.generate("seq.test/log"))  # type: ignore[arg-type]
    for b in range(20):
        seq.commit_batch(_subs(7, f"b{b}-"))
    assert st.read == 0  # every hash the batches needed was one this process committed
    fresh = Sequencer(st, Signer.generate("seq.test/log"))  # type: ignore[arg-type]
    fresh.commit_batch(_subs(3, "fresh-"))
    assert st.read > 0  # another process (a fresh sequencer) reads them from the log
    st.inner.close()


def test_a_fresh_sequencer_refuses_a_log_whose_stored_hashes_were_changed(tmp_path: Path) -> None:
    signer = Signer.generate("seq.test/log")
    st = SQLiteStorage(tmp_path / "n.db")
    seq = Sequencer(st, signer)
    for b in range(3):
        seq.commit_batch(_subs(5, f"b{b}-"))
    st.close()
    conn = sqlite3.connect(tmp_path / "n.db")
    with conn:
        conn.execute("UPDATE hashes SET hash = zeroblob(32)")
    conn.close()
    st = SQLiteStorage(tmp_path / "n.db")
    try:
        with pytest.raises(SequencerError, match="not consistent"):
            Sequencer(st, signer).commit_batch(_subs(1, "after-"))
    finally:
        st.close()
