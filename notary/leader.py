"""One process of several does a background job: the one holding a lock file.

With ``certmail notary serve --workers N`` every worker starts the background threads
(witness cosigning, outside time-stamps); each takes an exclusive ``flock`` on its
job's lock file first, and only the holder runs rounds. The others retry every
5 s (``poll``), so when the holder dies (the kernel drops its lock) another takes
over. The shared sequencer (:mod:`notary.sequencer_share`) leads the same way,
polling faster.
"""

from __future__ import annotations

import fcntl
import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import httpx

__all__ = ["TAKEOVER_SECONDS", "LeaderJob", "run_as_leader"]

log = logging.getLogger(__name__)

#: How often a worker without the lock tries to take it.
TAKEOVER_SECONDS = 5.0


def run_as_leader(
    lock: Path,
    stop: threading.Event,
    interval: float,
    step: Callable[[], None],
    job: str,
    *,
    poll: float = TAKEOVER_SECONDS,
) -> None:
    """Until ``stop`` is set: wait for ``lock`` (trying every ``poll`` seconds), then call
    ``step`` every ``interval`` seconds; an exception in a step is logged ("``job`` round
    failed") and the next round comes as usual (a peer's or the storage's hiccup never
    ends the thread). The lock is released when ``stop`` is set or the process dies."""
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        while not stop.is_set():
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:  # another worker holds it
                stop.wait(poll)
        while not stop.wait(interval):
            try:
                step()
            except Exception:
                log.exception("%s round failed", job)
    finally:
        os.close(fd)


class LeaderJob:
    """A background job of a notary directory: :meth:`step` every ``interval`` seconds in a
    daemon thread named ``job``, in the one process holding ``lock`` (:func:`run_as_leader`),
    with one HTTP client for all its requests (:meth:`http`: made at the first, 10 s
    timeout, one SSL context and connection pool) that :meth:`stop` closes."""

    def __init__(self, lock: Path, interval: float, job: str) -> None:
        self.lock, self.interval, self.job = lock, interval, job
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._http: httpx.Client | None = None

    def step(self) -> None:
        raise NotImplementedError

    def start_thread(self) -> None:
        """Start the thread (once)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name=self.job, daemon=True)
            self._thread.start()

    def _run(self) -> None:
        run_as_leader(self.lock, self._stop, self.interval, self.step, self.job)

    def stop(self) -> None:
        """Stop the thread (waiting up to 10 s) and close the HTTP client once it has ended."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
        if self._http is not None and not (self._thread and self._thread.is_alive()):
            self._http.close()
            self._http = None

    def http(self) -> httpx.Client:
        """The job's one HTTP client (made at the first call)."""
        if self._http is None:
            import httpx

            self._http = httpx.Client(timeout=10)
        return self._http
