"""A byte budget: how many bytes of large messages may be in memory at once.

Whole-message work (reading a spooled message back, scanning it, handing it
to the database, delivering it) needs the message's bytes in memory. Small
messages (at most ``small`` bytes) pass freely; larger ones wait until the
bytes held, theirs included, fit in ``limit``, or until nothing else is held
(so a message larger than the limit still gets through, alone). Memory then
grows with the budget, not with the number of sessions or deliveries.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

SMALL = 1024 * 1024


class ByteBudget:
    """See the module docstring. Fair: waiters are let in in arrival order."""

    def __init__(self, limit: int, *, small: int = SMALL) -> None:
        self.limit = limit
        self.small = small
        self.held = 0
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []

    def _fits(self, n: int) -> bool:
        return self.held == 0 or self.held + n <= self.limit

    @asynccontextmanager
    async def hold(self, n: int) -> AsyncIterator[None]:
        """Hold ``n`` bytes of the budget for the ``async with`` block."""
        if n <= self.small:
            yield
            return
        if self._waiters or not self._fits(n):
            fut = asyncio.get_running_loop().create_future()
            self._waiters.append((n, fut))
            try:
                await fut
            except BaseException:
                if fut.done() and not fut.cancelled():
                    self._release(n)  # granted just as we were cancelled
                else:
                    self._waiters = [w for w in self._waiters if w[1] is not fut]
                    self._grant()
                raise
        else:
            self.held += n
        try:
            yield
        finally:
            self._release(n)

    def _release(self, n: int) -> None:
        self.held -= n
        self._grant()

    def _grant(self) -> None:
        while self._waiters and self._fits(self._waiters[0][0]):
            n, fut = self._waiters.pop(0)
            self.held += n
            fut.set_result(None)


#: glibc's mallopt parameter for the mmap threshold (malloc.h).
_M_MMAP_THRESHOLD = -3


def return_large_buffers(threshold: int = SMALL) -> bool:
    """Have glibc serve allocations over ``threshold`` bytes by mmap, and so give them
    back to the system when freed (True if it could be set).

    glibc raises its mmap threshold after each large free (up to 32 MiB), so a
    process that handles many multi-MiB messages in several threads keeps the
    freed memory of each thread's heap arena: RSS then grows with the number of
    threads and sizes seen, not with what is in use. A fixed threshold stops
    that. Without glibc (e.g. musl) this does nothing.
    """
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError, TypeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, threshold))
