"""``LogStore.checkpoint_from`` (the ``/log`` page's growth chart) on both backends: the first
checkpoint at or above a size."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from notary.storage import Storage
from tests.fixtures.storage import append_numbered
from tests.notary.storage_backends import BACKENDS, open_backend


@pytest.fixture(params=BACKENDS)
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Storage]:
    yield from open_backend(request.param, tmp_path)


def test_checkpoint_from(storage: Storage) -> None:
    assert storage.checkpoint_from(0) is None
    for n in (3, 2, 5):  # checkpoints at sizes 3, 5, 10
        append_numbered(storage, n)
    found = {s: storage.checkpoint_from(s) for s in (0, 1, 3, 4, 5, 6, 10, 11)}
    assert {s: c.size if c else None for s, c in found.items()} == {
        0: 3,
        1: 3,
        3: 3,
        4: 5,
        5: 5,
        6: 10,
        10: 10,
        11: None,
    }
    assert found[4] == storage.checkpoint_at(5)
