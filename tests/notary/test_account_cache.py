"""Token → account cache: answers without the store, dropped at once on revoke.

"At once" across processes: a second storage object on the same database
stands for another worker (or, on PostgreSQL, another node); a real
``serve --workers 2`` with a revocation by the CLI shows it end to end.
"""

from __future__ import annotations

import subprocess
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from notary.account_cache import AccountCache
from notary.service import new_token, token_hash
from notary.storage import Account, Storage
from tests.fixtures.notary import CERTMAIL, NotaryProcess
from tests.notary.storage_backends import BACKENDS, require_pg


def _pair(kind: str, tmp_path: Path) -> Iterator[tuple[Storage, Storage]]:
    if kind == "sqlite":
        from notary.storage.sqlite import SQLiteStorage

        a, b = SQLiteStorage(tmp_path / "n.db"), SQLiteStorage(tmp_path / "n.db")
        yield a, b
        a.close()
        b.close()
        return
    from notary.storage.postgres import PostgresStorage

    schema = "t_" + uuid.uuid4().hex[:16]
    a = PostgresStorage(require_pg(), schema=schema)
    b = PostgresStorage(require_pg(), schema=schema)
    yield a, b
    b.close()
    a.drop_schema()
    a.close()


@pytest.fixture(params=BACKENDS)
def two_processes(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[tuple[Storage, Storage]]:
    yield from _pair(request.param, tmp_path)


class _Counting:
    """The store's lookup, counted (to see that a cached token asks nothing)."""

    def __init__(self, store: Storage) -> None:
        self.store, self.calls = store, 0

    def __call__(self, h: bytes) -> Account | None:
        self.calls += 1
        return self.store.account_by_token_hash(h)


def _until(pred, what: str) -> None:  # type: ignore[no-untyped-def]
    """Wait (bounded) for a notification to arrive from the database server."""
    for _ in range(200):
        if pred():
            return
        time.sleep(0.01)
    raise AssertionError(what)


def test_cached_token_asks_nothing_and_revocation_elsewhere_drops_it(
    two_processes: tuple[Storage, Storage],
) -> None:
    worker, other = two_processes
    token = new_token()
    acct = worker.add_account(["c@example.test"], token_hash(token), datetime.now(UTC))
    cache = AccountCache(worker.accounts_version)
    _until(lambda: worker.accounts_version() is not None, "the accounts version never came up")
    load = _Counting(worker)
    h = token_hash(token)
    assert cache.lookup(h, load) == acct
    assert cache.lookup(h, load) == acct and cache.get(h) == acct
    assert load.calls == 1  # the second answer came from memory
    other.revoke_account("c@example.test")  # another process revokes it
    _until(lambda: cache.get(h) is None, "the revocation did not reach the cache")
    assert cache.lookup(h, load) is None
    assert load.calls == 2


def test_unknown_tokens_are_never_cached(two_processes: tuple[Storage, Storage]) -> None:
    worker, _ = two_processes
    cache = AccountCache(worker.accounts_version)
    load = _Counting(worker)
    h = token_hash(new_token())
    assert cache.lookup(h, load) is None and cache.lookup(h, load) is None
    assert load.calls == 2


def test_cache_holds_at_most_max_entries(tmp_path: Path) -> None:
    from notary.storage.sqlite import SQLiteStorage

    st = SQLiteStorage(tmp_path / "n.db")
    try:
        cache = AccountCache(st.accounts_version, max_entries=2)
        tokens = [new_token() for _ in range(3)]
        for i, t in enumerate(tokens):
            st.add_account([f"m{i}@example.test"], token_hash(t), datetime.now(UTC))
            cache.lookup(token_hash(t), st.account_by_token_hash)
        assert cache.get(token_hash(tokens[0])) is None  # the oldest went
        assert cache.get(token_hash(tokens[2])) is not None
    finally:
        st.close()


def test_revoked_by_the_cli_is_refused_by_both_workers_at_once(notary_dir: Path) -> None:
    p = NotaryProcess(notary_dir)
    p.start(extra=["--workers", "2"])
    try:
        token = p.token_for("r@example.test")
        auth = {"Authorization": f"Bearer {token}"}
        body = {"sha256": "ab" * 32, "message_id": "<r@x>"}
        # Many connections, so both workers have answered (and cached) the token.
        for i in range(12):
            with httpx.Client(base_url=p.url, timeout=30) as c:
                body["sha256"] = f"{i:02x}" * 32
                assert c.post("/v1/notarize", json=body, headers=auth).status_code == 200
        subprocess.run(
            [*CERTMAIL, "notary", "accounts", "revoke", "r@example.test", "--dir", str(notary_dir)],
            check=True,
            capture_output=True,
        )
        for i in range(12):
            with httpx.Client(base_url=p.url, timeout=30) as c:
                body["sha256"] = f"{i + 32:02x}" * 32
                r = c.post("/v1/notarize", json=body, headers=auth)
                assert r.status_code == 401, r.text
    finally:
        p.stop()
