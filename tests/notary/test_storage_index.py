"""The leveled message index: every entry is found by its hash as levels fill and move up."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from notary.note import Signer
from notary.sequencer import Sequencer, Submission
from notary.storage import Storage
from notary.storage.sql import log as log_sql
from tests.notary.storage_backends import BACKENDS, open_backend


@pytest.fixture(params=BACKENDS)
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Storage]:
    yield from open_backend(request.param, tmp_path)


def _sub(i: int, account: int = 1) -> Submission:
    sha = hashlib.sha256(f"m{i % 40}".encode()).hexdigest()  # 40 messages, several entries each
    return Submission("SubmissionAcceptance", sha, f"<{i}@x>", account, {"channel": "api"})


def test_lookups_find_every_entry_across_levels(
    storage: Storage, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(log_sql, "LEVEL0_ROWS", 4)  # levels of 4, 16, 64, ... keys
    monkeypatch.setattr(log_sql, "FANOUT", 4)  # (a batch over 4 goes higher at once)
    seq = Sequencer(storage, Signer.generate("index.test/log"))
    total = 0
    for n in (1, 3, 7, 2, 30, 5, 60, 1, 11):
        seq.commit_batch([_sub(total + i) for i in range(n)])
        total += n
        for m in range(40):
            sha = hashlib.sha256(f"m{m}".encode()).hexdigest()
            want = [i for i in range(total) if i % 40 == m]
            got = storage.entries_for_message(sha)
            assert [e.index for e in got] == want
            assert all(e.sha256 == sha for e in got)
    assert storage.entries_for_message("00" * 32) == []


def test_keys_that_collide_are_told_apart_by_the_full_hash(storage: Storage) -> None:
    # Two hashes with the same first 8 bytes share a message_index key.
    a = "0123456789abcdef" + "a" * 48
    b = "0123456789abcdef" + "b" * 48
    assert log_sql.message_key(a) == log_sql.message_key(b)
    seq = Sequencer(storage, Signer.generate("index.test/log"))
    seq.commit_batch(
        [
            Submission("SubmissionAcceptance", a, "<a@x>", 1, {}),
            Submission("SubmissionAcceptance", b, "<b@x>", 1, {}),
        ]
    )
    assert [e.message_id for e in storage.entries_for_message(a)] == ["<a@x>"]
    assert [e.message_id for e in storage.entries_for_message(b)] == ["<b@x>"]
