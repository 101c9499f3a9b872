"""The sender's view's message index (notary/web/app_index.py) over a real log store (both
backends): per-recipient states from the evidence (an open never hides an
acknowledgement), a message refused outright listed with its state, entries private to
their account (an acknowledgement only for the account of the first acceptance), caught
up incrementally and exactly once, paging, filters and the daily figures."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from notary.storage import NewEntry, Storage, StoredCheckpoint
from notary.web.app_db import WEB_DB, WebDB
from notary.web.app_index import SCHEMA, Filters, MessageIndex
from tests.fixtures.storage import T0
from tests.notary.storage_backends import BACKENDS, open_backend

ALICE, EVE = 1, 2


@pytest.fixture(params=BACKENDS)
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Storage]:
    yield from open_backend(request.param, tmp_path)


def _sha(name: str) -> str:
    return hashlib.sha256(name.encode()).hexdigest()


def entry(account: int, name: str, event: str, day: int = 1, sec: int = 0, **more: Any) -> NewEntry:
    mid = f"<{name}@example.org>"
    st = {
        "event": event,
        "message": {"id": mid, "sha256": _sha(name)},
        "time": f"2026-11-{day:02d}T12:00:{sec:02d}.000000Z",
        **more,
    }
    return NewEntry(account, _sha(name), mid, event, json.dumps(st).encode())


def append(storage: Storage, entries: list[NewEntry]) -> None:
    with storage.sequence() as tx:
        start = tx.tree_size()
        n = len(entries)
        tx.append(
            start,
            entries,
            [bytes([i % 256]) * 32 for i in range(n)],
            10_000 * (start + 1),
            StoredCheckpoint(start + n, b"r" * 32, T0, f"note {start + n}".encode()),
        )


def states(index: MessageIndex, account: int, **f: Any) -> dict[str, list[tuple[str, str]]]:
    _, rows = index.page(account, Filters(**f), 0, 100)
    return {r.message_id: [(x.address, x.state) for x in r.recipients] for r in rows}


def test_states_privacy_and_catch_up(storage: Storage, tmp_path: Path) -> None:
    index = MessageIndex(WebDB(tmp_path / WEB_DB, SCHEMA), storage)
    relay = {"channel": "smtp", "recipients": ["bob@b.test", "carol@c.test"]}
    append(storage, [entry(ALICE, "a1", "SubmissionAcceptance", **relay)])
    assert index.catch_up() == 1 and index.catch_up() == 0  # each entry applied once
    assert states(index, ALICE) == {
        "<a1@example.org>": [("bob@b.test", "accepted"), ("carol@c.test", "accepted")]
    }
    append(
        storage,
        [
            entry(ALICE, "a1", "RelayToNonERDS", sec=30, recipient="bob@b.test"),
            entry(ALICE, "a1", "RelayToNonERDSFailure", sec=40, recipient="carol@c.test"),
            entry(ALICE, "a1", "ContentHandover", sec=50, recipient="bob@b.test"),
            entry(ALICE, "a1", "ContentAccessTracking", sec=55, recipient="bob@b.test"),
            entry(ALICE, "v1", "VirusDetected", day=2, channel="smtp", recipients=["bob@b.test"]),
            entry(EVE, "a1", "SubmissionAcceptance", day=3, channel="api"),
            entry(EVE, "a1", "ContentHandover", day=3, recipient="bob@b.test"),  # not eve's
            entry(ALICE, "d1", "SubmissionAcceptance", day=3, channel="api"),
        ],
    )
    assert index.catch_up(limit=3) == 3 and index.catch_up() == 5  # bounded, then the rest
    assert states(index, ALICE) == {
        "<d1@example.org>": [],
        "<v1@example.org>": [("bob@b.test", "virus")],
        "<a1@example.org>": [("bob@b.test", "acknowledged"), ("carol@c.test", "failed")],
    }
    assert states(index, EVE) == {"<a1@example.org>": []}  # its own copy, nothing of alice's
    assert states(index, ALICE, state="failed") == states(index, ALICE, query=_sha("a1"))
    assert list(states(index, ALICE, state="notarized")) == ["<d1@example.org>"]
    assert list(states(index, ALICE, recipient="bob@b.test")) == [
        "<v1@example.org>",
        "<a1@example.org>",
    ]
    assert list(states(index, ALICE, since="2026-11-02", until="2026-11-02")) == [
        "<v1@example.org>"
    ]
    assert states(index, ALICE, query="<a1@example.org>") == states(index, ALICE, state="failed")
    assert states(index, EVE, recipient="bob@b.test") == {}
    total, page = index.page(ALICE, Filters(), 1, 1)
    assert total == 3 and [r.message_id for r in page] == ["<v1@example.org>"]
    assert index.daily(ALICE, "2026-11-01") == [
        ("2026-11-01", 1, 30.0),
        ("2026-11-02", 1, None),
        ("2026-11-03", 1, None),
    ]
    # the index is derived: a new one over the same log rebuilds the same view
    again = MessageIndex(WebDB(tmp_path / "other.db", SCHEMA), storage)
    again.catch_up()
    assert states(again, ALICE) == states(index, ALICE)
