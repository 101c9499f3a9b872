"""What an operator needs when a request hangs: slow requests logged, thread stacks on demand.

- :class:`SlowRequests` wraps the FastAPI application (inside the raw-ASGI fast
  paths, which answer in microseconds and stay unwrapped): a request whose
  answer has not begun ``threshold`` seconds after it arrived is logged once,
  as a WARNING naming its method and path, while it is still waiting, and
  again when its answer starts, with the time it took. A client that gave up
  (its own timeout) thus leaves a line saying which request it waited for.
- :func:`install_stack_dump`: ``kill -USR1 PID`` writes every thread's Python
  stack to the process's stderr (the serve log), without stopping it
  (:mod:`faulthandler`).
"""

from __future__ import annotations

import asyncio
import faulthandler
import logging
import signal
import sys
import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["DEFAULT_THRESHOLD", "SlowRequests", "install_stack_dump"]

log = logging.getLogger("certmail.notary.http")

#: Seconds after which a request without an answer is logged.
DEFAULT_THRESHOLD = 5.0


class SlowRequests:
    """ASGI: log the HTTP requests of ``app`` that take ``threshold`` seconds or more
    to start their answer (see the module docstring)."""

    def __init__(self, app: ASGIApp, threshold: float = DEFAULT_THRESHOLD) -> None:
        self.app, self.threshold = app, threshold

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.monotonic()
        what = f"{scope.get('method', '?')} {scope.get('path', '?')}"
        waiting = asyncio.get_running_loop().call_later(
            self.threshold,
            log.warning,
            "request still unanswered after %g s: %s",
            self.threshold,
            what,
        )

        async def timed_send(message: Message) -> None:
            if message["type"] == "http.response.start" and not waiting.cancelled():
                waiting.cancel()
                took = time.monotonic() - start
                if took >= self.threshold:
                    log.warning(
                        "slow request: %s answered %s after %.1f s", what, message["status"], took
                    )
            await send(message)

        try:
            await self.app(scope, receive, timed_send)
        finally:
            waiting.cancel()


def install_stack_dump(signum: Any = None) -> None:
    """Dump every thread's stack to stderr on ``signum`` (SIGUSR1 by default)."""
    faulthandler.register(signum or signal.SIGUSR1, file=sys.stderr, all_threads=True)
