"""``proof export`` asks the notary's ``GET /v1/anchors?size=N`` once per export while
the answer covers every checkpoint size the kept receipts use (certmail/bundle/export.py):
the answers for the sizes it covers would be that same answer."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from certmail.bundle import export


@dataclass
class _Checkpoint:
    size: int


@dataclass
class _Receipt:
    size: int

    def checkpoint(self) -> _Checkpoint:
        return _Checkpoint(self.size)


def _notary(anchored: list[int]) -> tuple[list[int], Any]:
    """What the route answers for a notary whose anchored checkpoints are ``anchored``,
    and the sizes it was asked for."""
    asked: list[int] = []

    def answer(size: int) -> dict[str, Any] | None:
        asked.append(size)
        got = min((s for s in anchored if s >= size), default=None)
        return None if got is None else {"size": got, "checkpoint": f"note {got}\n", "tokens": []}

    return asked, answer


def _members(sizes: list[int], anchored: list[int]) -> tuple[list[int], list[str]]:
    asked, answer = _notary(anchored)
    out = export._anchored([_Receipt(s) for s in sizes], answer)  # type: ignore[list-item]
    return asked, sorted(out)


def test_one_request_when_one_anchored_checkpoint_covers_all() -> None:
    asked, members = _members([3, 5, 9], anchored=[2, 10, 20])
    assert asked == [3]
    assert members == ["anchor-roots.pem", "evidence/anchor-10.checkpoint"]


def test_asks_again_for_a_size_the_answer_does_not_cover() -> None:
    asked, members = _members([3, 5, 12, 15], anchored=[4, 8, 16])
    assert asked == [3, 5, 12]
    assert members == [
        "anchor-roots.pem",
        "evidence/anchor-16.checkpoint",
        "evidence/anchor-4.checkpoint",
        "evidence/anchor-8.checkpoint",
    ]


def test_nothing_anchored_yet_is_one_request() -> None:
    asked, members = _members([3, 5, 9], anchored=[2])
    assert asked == [3]
    assert members == []
