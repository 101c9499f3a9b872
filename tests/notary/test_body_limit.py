"""notary.body_limit.receive_body: the one raw-ASGI reader of a request body."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from notary.body_limit import TooLarge, content_length, receive_body


def _read(chunks: list[bytes | None], limit: int | None, length: bytes | None = None) -> Any:
    """``receive_body`` over ``chunks`` (None: the client goes away); how many were read."""
    headers = [] if length is None else [(b"content-length", length)]
    scope = {"type": "http", "headers": headers}
    messages = [
        {"type": "http.disconnect"}
        if c is None
        else {"type": "http.request", "body": c, "more_body": i < len(chunks) - 1}
        for i, c in enumerate(chunks)
    ]
    read = 0

    async def receive() -> dict[str, Any]:
        nonlocal read
        read += 1
        return messages[read - 1]

    try:
        return asyncio.run(receive_body(scope, receive, limit)), read
    except TooLarge:
        return "413", read


def test_the_chunks_are_joined() -> None:
    assert _read([b"ab", b"", b"cd"], 4) == (b"abcd", 3)
    assert _read([b""], 4) == (b"", 1)


def test_a_declared_length_over_the_limit_is_refused_before_reading() -> None:
    assert _read([b"abcde"], 4, b"5") == ("413", 0)
    assert _read([b"abcd"], 4, b"4") == (b"abcd", 1)


def test_a_body_growing_over_the_limit_is_refused_at_once() -> None:
    assert _read([b"abc", b"de", b"fg"], 4) == ("413", 2)


def test_no_limit_reads_everything() -> None:
    assert _read([b"x" * 10, b"y"], None, b"11") == (b"x" * 10 + b"y", 2)


def test_a_client_that_goes_away_gives_none() -> None:
    assert _read([b"ab", None], 4) == (None, 2)


@pytest.mark.parametrize(
    ("value", "expected"), [(b"12", 12), (b"abc", None), (b"-1", None), (b"\xb2", None)]
)
def test_content_length_is_digits_only(value: bytes, expected: int | None) -> None:
    assert content_length({"headers": [(b"content-length", value)]}) == expected
    assert content_length({"headers": []}) is None
