"""A hung request leaves a line in the notary's log; SIGUSR1 writes its threads' stacks."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time

import httpx
import pytest
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from notary.slowlog import SlowRequests
from tests.fixtures.notary import NotaryProcess


async def _slow(request: object) -> PlainTextResponse:
    await asyncio.sleep(0.6)
    return PlainTextResponse("late")


async def _fast(request: object) -> PlainTextResponse:
    return PlainTextResponse("soon")


def test_a_slow_request_is_logged_while_it_waits_and_when_it_answers(
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = SlowRequests(Starlette(routes=[Route("/slow", _slow), Route("/fast", _fast)]), 0.2)

    async def ask(path: str) -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://n") as client:
            return await client.get(path)

    with caplog.at_level(logging.WARNING, logger="certmail.notary.http"):
        assert asyncio.run(ask("/fast")).text == "soon"
        assert caplog.messages == []
        assert asyncio.run(ask("/slow")).text == "late"
    assert caplog.messages[0] == "request still unanswered after 0.2 s: GET /slow"
    assert caplog.messages[1].startswith("slow request: GET /slow answered 200 after 0.")
    assert len(caplog.messages) == 2


def test_sigusr1_writes_the_stacks_and_the_notary_keeps_serving(
    notary_server: NotaryProcess,
) -> None:
    assert notary_server.proc is not None
    before = notary_server.log_path.stat().st_size
    os.kill(notary_server.proc.pid, signal.SIGUSR1)
    deadline = time.monotonic() + 5
    text = ""
    while time.monotonic() < deadline and "most recent call first" not in text:
        time.sleep(0.05)
        text = notary_server.log_path.read_bytes()[before:].decode(errors="replace")
    assert "most recent call first" in text and "File " in text
    assert notary_server.proc.poll() is None
    assert httpx.get(notary_server.url + "/healthz").status_code == 200
