"""``/log``'s growth over time (issue 13 item 3): the tree size at the stored checkpoints,
sampled by size, drawn as an inline SVG with the same figures in a table."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import httpx

from notary.storage import StoredCheckpoint
from notary.web.log_page import growth_sample
from tests.fixtures.bundle_world import World


def test_the_log_page_draws_the_checkpoints_it_has(world: World) -> None:
    page = httpx.get(world.notary.url + "/log").text
    size = httpx.get(world.notary.url + "/healthz").json()["tree_size"]
    sizes = [int(s) for s in re.findall(r"<tr><td>[^<]+</td><td>(\d+)</td></tr>", page)]
    assert sizes == list(range(1, size + 1))  # a small log: every checkpoint, in order
    chart = page[page.index('<figure id="growth">') :]
    assert '<svg class="chart"' in chart and "<polyline" in chart and 'role="img"' in chart
    assert chart.count("<circle") == len(sizes) and "style=" not in chart.split("</svg>")[0]


class Checkpoints:
    """A log's checkpoints (every 7th size) behind LogStore.checkpoint_from."""

    def __init__(self, last: int) -> None:
        t0 = datetime(2026, 1, 1, tzinfo=UTC)
        self.cps = [
            StoredCheckpoint(s, b"", t0 + timedelta(minutes=s), b"") for s in range(7, last, 7)
        ]
        self.asked = 0

    def checkpoint_from(self, size: int) -> StoredCheckpoint | None:
        self.asked += 1
        return next((c for c in self.cps if c.size >= size), None)


def test_the_sample_is_bounded_and_spread() -> None:
    log = Checkpoints(1_000_000)
    got = growth_sample(log, 999_999, points=40)  # type: ignore[arg-type]
    assert 30 <= len(got) <= 40 and log.asked <= 40
    assert [c.size for c in got] == sorted({c.size for c in got})
    assert got[-1].size == log.cps[-1].size and got[0].size < 30_000
    assert growth_sample(Checkpoints(10), 0) == []
