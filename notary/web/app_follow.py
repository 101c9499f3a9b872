"""The sender's view's message index, kept caught up with the log in the background.

Each ``serve`` worker runs one :class:`IndexFollower` inside the app's lifespan:
at start-up it brings ``web.db``'s index (:class:`notary.web.app_index.MessageIndex`)
up to the log, then again each time the log's sequencer commits a batch
(:meth:`notary.sequencer.Sequencer.on_commit` wakes it, in every worker of a
``serve --workers N``: see :mod:`notary.sequencer_share`), and every :data:`POLL`
seconds for the batches other nodes commit to the same log, which this serve
does not see. :meth:`MessageIndex.catch_up` applies each batch in
one transaction with its cursor, so followers of several workers (or nodes on
one ``web.db``) never apply an entry twice; whichever gets there first does the work.

A request does no catching up itself. :meth:`IndexFollower.current` nudges the
follower and waits (up to :data:`WAIT_LIMIT` seconds) until the index covers
the log as it was when the request came, so the list it reads is whole: never a
partial page while a backlog is applied.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from fastapi import FastAPI

from notary.lifespan import run_in_lifespan
from notary.storage import LogStore
from notary.web.app_index import CATCH_UP_LIMIT, MessageIndex

__all__ = ["POLL", "WAIT_LIMIT", "IndexFollower", "follow_in_lifespan"]

log = logging.getLogger("certmail.notary.web")

#: Seconds between two checks of the log for the entries other processes commit (this
#: process's own commits wake the follower at once).
POLL = 5.0
#: Seconds between two reads of the cursor by a request waiting for the index.
RECHECK = 0.5
#: Seconds a request waits for the index at most (then it reads what is there).
WAIT_LIMIT = 30.0


class IndexFollower:
    """Applies new log entries to ``index`` in the background (see the module docstring)."""

    def __init__(
        self,
        index: MessageIndex,
        log_store: LogStore,
        poll: float = POLL,
        on_commit: Callable[[Callable[[int], None]], Callable[[], None]] | None = None,
    ) -> None:
        """``on_commit`` registers a listener of this process's commits (the sequencer's
        :meth:`~notary.sequencer.Sequencer.on_commit`); without it only ``poll`` wakes it."""
        self.index, self.log, self.poll = index, log_store, poll
        self._on_commit = on_commit
        self._wake: asyncio.Event | None = None
        self._moved: asyncio.Event | None = None
        #: The log size of this process's latest commit not yet caught up to (None when
        #: the wake-up is a request's or the poll's, which read the log's own size).
        self._committed: int | None = None

    async def run(self) -> None:
        """Catch up now, then whenever a commit or a request nudges it, or every ``poll``
        seconds, until cancelled."""
        self._wake, self._moved = asyncio.Event(), asyncio.Event()
        loop = asyncio.get_running_loop()

        def committed(size: int) -> None:  # in the committing thread
            loop.call_soon_threadsafe(self._heard, size)

        stop = self._on_commit(committed) if self._on_commit is not None else None
        try:
            await self._follow()
        finally:
            if stop is not None:
                stop()

    def _heard(self, size: int) -> None:
        """A commit of this process made the log ``size`` long (on the event loop)."""
        assert self._wake is not None
        # A wake-up already asked for by a request reads the log's size instead.
        if not self._wake.is_set() or self._committed is not None:
            self._committed = max(size, self._committed or 0)
            self._wake.set()

    async def _follow(self) -> None:
        assert self._wake is not None and self._moved is not None
        while True:
            # After a commit of this process, its size (no read of the log); else, read it.
            size, self._committed = self._committed, None
            self._wake.clear()
            try:
                while await asyncio.to_thread(self.index.catch_up, CATCH_UP_LIMIT, size):
                    self._moved.set()
            except Exception:  # web.db or the log unavailable for a moment: the next round
                log.exception("the /app message index could not catch up")
            self._moved.set()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.poll)

    async def current(self) -> None:
        """Return once the index covers the log's size at the call (or after WAIT_LIMIT s)."""
        latest = await asyncio.to_thread(self.log.latest_checkpoint)
        size = latest.size if latest else 0
        deadline = time.monotonic() + WAIT_LIMIT
        while await asyncio.to_thread(self.index.cursor) < size:
            left = deadline - time.monotonic()
            if left <= 0 or self._wake is None or self._moved is None:
                log.warning("the /app message index is behind the log; answering what it has")
                return
            self._moved.clear()
            self._committed = None  # read the log's size: it may be another node's commit
            self._wake.set()
            with contextlib.suppress(TimeoutError):  # another worker's follower may move it
                await asyncio.wait_for(self._moved.wait(), min(left, RECHECK))


def follow_in_lifespan(app: FastAPI, follower: IndexFollower) -> None:
    """Run ``follower`` inside the app's lifespan (started with it, cancelled at its end)."""
    run_in_lifespan(app, follower.run, name="app-index-follower")
