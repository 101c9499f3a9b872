"""Run a background task for the whole life of a FastAPI app.

The task starts once the app's existing lifespan has started (so after the sequencer) and is
cancelled, awaited and then cleaned up (``close``) when the app stops.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI


def run_in_lifespan(
    app: FastAPI,
    work: Callable[[], Coroutine[Any, Any, Any]],
    close: Callable[[], None] | None = None,
    name: str | None = None,
) -> None:
    """Run ``work()`` as a task in ``app``'s lifespan; at its end cancel it, then ``close()``."""
    outer = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(a: Any) -> AsyncIterator[Any]:
        async with outer(a) as state:
            task = asyncio.create_task(work(), name=name)
            try:
                yield state
            finally:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
                if close is not None:
                    close()

    app.router.lifespan_context = lifespan
