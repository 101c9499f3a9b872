"""``/app``'s index follower (notary/web/app_follow.py) is woken by the sequencer's commits:
with the fallback poll set to an hour, a message notarized through the service is in
the index without any request nudging the follower; a follower without the commit hook
(another process's commits) is not, until its poll."""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path
from typing import Any

from notary.service import Notarization, NotaryService
from notary.web.app_follow import IndexFollower
from notary.web.app_index import Filters
from notary.web.app_pages import AppPages
from tests.fixtures.notary import init_notary_dir

HOUR = 3600.0


async def _indexed(pages: AppPages, account_id: int, n: int) -> int:
    """Wait until the index lists ``n`` messages of the account (bounded: the test fails
    rather than hangs); how many it lists."""
    for _ in range(400):
        total, _ = await asyncio.to_thread(pages.index.page, account_id, Filters(), 0, 10)
        if total >= n:
            return total
        await asyncio.sleep(0.025)
    return total


def test_a_commit_wakes_the_follower(tmp_path: Path) -> None:
    svc = NotaryService.open(init_notary_dir(tmp_path / "notary"))
    account, _ = svc.add_account(["alice@example.org"])
    pages = AppPages(svc)
    pages.follower.poll = HOUR  # only a commit can wake it in time
    blind = IndexFollower(pages.index, svc.storage, poll=HOUR)  # no commit hook

    async def scenario() -> tuple[int, int, int]:
        await svc.sequencer.start()
        task = asyncio.create_task(pages.follower.run())
        try:
            first = await _indexed(pages, account.id, 0)  # the start-up catch-up ran
            items = [Notarization(hashlib.sha256(b"one").hexdigest(), "<one@example.org>")]
            await svc.notarize(account, items, timestamp=False)
            woken = await _indexed(pages, account.id, 1)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        # the same without the hook: catches up once at start, then sleeps through a commit
        task = asyncio.create_task(blind.run())
        try:
            await asyncio.sleep(0.2)
            items = [Notarization(hashlib.sha256(b"two").hexdigest(), "<two@example.org>")]
            await svc.notarize(account, items, timestamp=False)
            await asyncio.sleep(0.5)
            asleep, _ = await asyncio.to_thread(pages.index.page, account.id, Filters(), 0, 10)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await svc.sequencer.stop()
        return first, woken, asleep

    first, woken, asleep = asyncio.run(scenario())
    assert first == 0
    assert woken == 1
    assert asleep == 1  # "two" waits for the poll: nothing woke this follower


def test_a_commit_gives_the_follower_the_log_size(tmp_path: Path, monkeypatch: Any) -> None:
    """Woken by this process's commit, the follower catches up to the size the commit
    reported: it does not read the log's latest checkpoint again (a PostgreSQL query per
    batch)."""
    svc = NotaryService.open(init_notary_dir(tmp_path / "notary"))
    account, _ = svc.add_account(["alice@example.org"])
    pages = AppPages(svc)
    pages.follower.poll = HOUR
    reads: list[int] = []

    async def scenario() -> int:
        await svc.sequencer.start()
        task = asyncio.create_task(pages.follower.run())
        try:
            await _indexed(pages, account.id, 0)  # the start-up catch-up read the log
            await asyncio.sleep(0.1)
            latest = svc.storage.latest_checkpoint
            monkeypatch.setattr(
                svc.storage, "latest_checkpoint", lambda: reads.append(1) or latest()
            )
            items = [Notarization(hashlib.sha256(b"one").hexdigest(), "<one@example.org>")]
            await svc.notarize(account, items, timestamp=False)
            return await _indexed(pages, account.id, 1)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await svc.sequencer.stop()

    assert asyncio.run(scenario()) == 1
    assert reads == []
