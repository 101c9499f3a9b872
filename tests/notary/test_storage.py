"""One test suite, run against every storage backend."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from keys.errors import ConflictError, NotFoundError
from notary.errors import StorageError
from notary.storage import NewEntry, Storage, StoredCheckpoint
from tests.fixtures.storage import T0, append_numbered, numbered_entry, statement_bytes
from tests.notary.storage_backends import BACKENDS, open_backend


@pytest.fixture(params=BACKENDS)
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Storage]:
    yield from open_backend(request.param, tmp_path)


def test_empty_log(storage: Storage) -> None:
    assert storage.latest_checkpoint() is None
    with storage.sequence() as tx:
        assert tx.tree_size() == 0
        assert tx.latest_checkpoint() is None
    assert storage.entry(0) is None
    assert storage.entries_for_message("00" * 32) == []


def test_append_and_read_back(storage: Storage) -> None:
    append_numbered(storage, 3)
    cp = storage.latest_checkpoint()
    assert cp is not None and cp.size == 3 and cp.note == b"note 3"
    assert cp.time == T0
    e = storage.entry(1)
    assert e is not None and e.entry == numbered_entry(1).entry and e.tst == b"tst" and e.index == 1
    assert storage.entry(0) is not None and storage.entry(0).tst is None  # type: ignore[union-attr]
    assert storage.read_hashes([2, 0]) == [bytes([2]) * 32, bytes([0]) * 32]
    sha = hashlib.sha256(b"2").hexdigest()
    assert [x.index for x in storage.entries_for_message(sha)] == [2]
    assert [x.index for x in storage.iter_entries(1)] == [1, 2]
    assert [x.index for x in storage.iter_entries(0, 2)] == [0, 1]
    plain = list(storage.iter_entries(1, tokens=False))  # statements only: no token read
    assert [(x.index, x.entry, x.tst) for x in plain] == [
        (i, numbered_entry(i).entry, None) for i in (1, 2)
    ]
    assert storage.checkpoint_at(3) is not None and storage.checkpoint_at(2) is None
    append_numbered(storage, 2)
    with storage.sequence() as tx:
        assert tx.tree_size() == 5
        assert tx.latest_checkpoint().size == 5  # type: ignore[union-attr]


def test_missing_hash_is_a_storage_error(storage: Storage) -> None:
    append_numbered(storage, 1)
    with pytest.raises(StorageError, match="missing"):
        storage.read_hashes([0, 99])


def test_failed_batch_leaves_nothing(storage: Storage) -> None:
    append_numbered(storage, 2)
    with pytest.raises(RuntimeError), storage.sequence() as tx:
        tx.append(
            2, [numbered_entry(2)], [b"h" * 32], 500, StoredCheckpoint(3, b"r" * 32, T0, b"n")
        )
        raise RuntimeError("crash mid-batch")
    assert storage.entry(2) is None
    assert storage.latest_checkpoint().size == 2  # type: ignore[union-attr]
    with pytest.raises(StorageError):
        storage.read_hashes([500])


def test_accounts(storage: Storage) -> None:
    a = storage.add_account(["a@x.test", "b@x.test"], b"h1" * 16, T0)
    assert a.addresses == ("a@x.test", "b@x.test") and not a.revoked
    assert storage.account_by_token_hash(b"h1" * 16) == a
    assert storage.account_by_token_hash(b"zz" * 16) is None
    assert storage.account_by_address("b@x.test") == a
    with pytest.raises(ConflictError):
        storage.add_account(["b@x.test"], b"h2" * 16, T0)
    r = storage.revoke_account("a@x.test")
    assert r.revoked and r.id == a.id
    assert storage.account_by_token_hash(b"h1" * 16) is None
    assert storage.account_by_address("a@x.test") is None
    b = storage.add_account(["b@x.test"], b"h2" * 16, T0)
    assert [x.id for x in storage.accounts()] == [a.id, b.id]
    with pytest.raises(NotFoundError):
        storage.revoke_account("nobody@x.test")
    assert storage.revoke_account(str(b.id)).revoked


def test_sqlite_commit_survives_reopen(tmp_path: Path) -> None:
    from notary.storage.sqlite import SQLiteStorage

    s = SQLiteStorage(tmp_path / "n.db")
    append_numbered(s, 4)
    s.close()
    s2 = SQLiteStorage(tmp_path / "n.db")
    assert s2.latest_checkpoint().size == 4  # type: ignore[union-attr]
    assert s2.durability() == ("wal", 2)  # 2 = FULL
    s2.close()


def test_an_acknowledgement_belongs_to_the_first_acceptance_of_its_message(
    storage: Storage,
) -> None:
    # alice (1) notarized the message; mallory (2) later notarized the same hash
    # and Message-ID. An older notary logged bob's ContentHandover for both.
    sha, mid = "ab" * 32, "<alice-1@x>"

    def entry(account: int, event: str, m: str = mid) -> NewEntry:
        return NewEntry(account, sha, m, event, statement_bytes(sha, m, event, str(account)))

    log = [
        entry(1, "SubmissionAcceptance"),
        entry(2, "SubmissionAcceptance"),
        entry(1, "ContentHandover"),
        entry(2, "ContentHandover"),
        entry(2, "RelayToNonERDS"),
        entry(2, "SubmissionAcceptance", "<mallory-own@x>"),
        entry(2, "ContentHandover", "<mallory-own@x>"),
    ]
    with storage.sequence() as tx:
        tx.append(
            0, log, [b"h" * 32] * len(log), 0, StoredCheckpoint(len(log), b"r" * 32, T0, b"note")
        )
    alice = [(e.event, e.account_id) for e in storage.entries_for_account(sha, 1)]
    assert alice == [("SubmissionAcceptance", 1), ("ContentHandover", 1)]
    mallory = [(e.event, e.message_id) for e in storage.entries_for_account(sha, 2)]
    assert mallory == [
        ("SubmissionAcceptance", mid),
        ("RelayToNonERDS", mid),
        ("SubmissionAcceptance", "<mallory-own@x>"),
        ("ContentHandover", "<mallory-own@x>"),
    ]
    assert storage.entries_for_account(sha, 3) == []
    assert len(storage.entries_for_message(sha)) == len(log)


def test_sqlite_database_and_directory_are_private(tmp_path: Path) -> None:
    import os
    import stat

    from notary.storage.sqlite import SQLiteStorage

    old = os.umask(0o022)  # the usual umask, which would make them 0644 / 0755
    try:
        s = SQLiteStorage(tmp_path / "new" / "notary.db")
        append_numbered(s, 2)  # the WAL and shared-memory files exist once something is written
    finally:
        os.umask(old)
    try:
        d = tmp_path / "new"
        assert stat.S_IMODE(d.stat().st_mode) == 0o700
        names = {p.name for p in d.iterdir()}
        assert {"notary.db", "notary.db-wal", "notary.db-shm"} <= names
        for p in d.iterdir():
            assert stat.S_IMODE(p.stat().st_mode) == 0o600, p.name
    finally:
        s.close()


def test_postgres_tests_fail_in_ci_without_a_server() -> None:
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "CERTMAIL_TEST_POSTGRES_DSN"}
    test = "tests/notary/test_storage_tracking.py::test_tracking_tokens_round_trip_and_conflict"
    run = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"{test}[postgres]"]

    def with_ci(ci: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            run,
            env={**env, "CI": ci},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=Path(__file__).parents[2],
        )

    ci, dev = with_ci("true"), with_ci("")  # the two runs at once
    ci_out, _ = ci.communicate(timeout=240)
    dev_out, _ = dev.communicate(timeout=240)
    assert ci.returncode == 1 and "CI must run the PostgreSQL tests" in ci_out, ci_out
    assert dev.returncode == 0 and "1 skipped" in dev_out, dev_out
