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

__all__ = ["TAKEOVER_SECONDS", "run_as_leader"]

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
