"""``GET /v1/messages/{sha256}/deliveries``: the relay's delivery state, for the sender;
``POST /v1/deliveries/batch``: the same for many messages in one request.

Per recipient of the account's relayed messages with that SHA-256: the state
(``held``, ``queued``, ``delivered``, ``failed``), the number of attempts, the
last attempt's time, the last server reply (``{code, text}``), the last error,
while queued the next attempt, and ``history``: every attempt with its time,
outcome, reply and (final ones) the server reached (docs/api.md). Another
account's message answers 404, exactly as an unknown one, and in a batch the
same ``"deliveries": []`` as an unknown one: whether a hash was relayed does not leak.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Annotated, Any

from fastapi import FastAPI, Header, Request, Response

from keys.errors import Error, NotFoundError
from notary.api_receipts import MAX_RECEIPTS_BODY, parse_receipts_batch
from notary.body_limit import TooLarge, json_error, read_bytes
from notary.storage import AttemptRecord, DeliveryStatus

_SHA256 = re.compile(r"[0-9a-f]{64}")


def _time(t: datetime | None) -> str | None:
    return None if t is None else t.isoformat().replace("+00:00", "Z")


def status_json(st: DeliveryStatus) -> dict[str, Any]:
    return {
        "recipient": st.recipient,
        "state": st.state,
        "attempts": st.attempts,
        "accepted": _time(st.received),
        "last_attempt": _time(st.last_attempt),
        "last_reply": st.last_reply,
        "last_error": st.last_error,
        "next_attempt": _time(st.next_attempt),
        "history": [attempt_json(a) for a in st.history],
    }


def attempt_json(a: AttemptRecord) -> dict[str, Any]:
    return {
        "started": _time(a.started),
        "finished": _time(a.finished),
        "outcome": a.outcome,
        "reply": a.reply,
        "host": a.host,
        "error": a.error,
    }


def include_delivery_routes(
    app: FastAPI,
    service: Any,
    authenticate: Callable[[Any, str | None], Any],
    authenticate_async: Callable[[Any, str | None], Awaitable[Any]],
) -> None:
    """Add ``GET /v1/messages/{sha256}/deliveries`` and ``POST /v1/deliveries/batch``."""

    @app.get(
        "/v1/messages/{sha256}/deliveries",
        summary="The relay's delivery state of a message, per recipient (the sender only)",
        tags=["relay"],
    )
    def deliveries(sha256: str, authorization: Annotated[str | None, Header()] = None) -> Response:
        acct = authenticate(service, authorization)
        if not _SHA256.fullmatch(sha256):
            raise Error("sha256 must be 64 lowercase hex digits")
        rows = service.storage.deliveries_for_message(sha256, acct.id)
        if not rows:
            raise NotFoundError(f"no relayed message {sha256} of this account")
        body = {"sha256": sha256, "deliveries": [status_json(r) for r in rows]}
        return Response(json.dumps(body, separators=(",", ":")), media_type="application/json")

    @app.post(
        "/v1/deliveries/batch",
        summary="The delivery state of many of the account's messages, as GET .../deliveries",
        tags=["relay"],
    )
    async def deliveries_batch(request: Request) -> Response:
        """Body ``{"sha256": [...]}`` as ``POST /v1/receipts/batch`` takes (1 to 1,000
        hashes, 128 KiB at most, the same 4xx); each distinct hash answered once, in
        order, ``"deliveries": []`` for one this account did not relay."""
        acct = await authenticate_async(service, request.headers.get("authorization"))
        try:
            body = await read_bytes(request, MAX_RECEIPTS_BODY)
        except TooLarge:
            return json_error(413, "too_large", f"body over {MAX_RECEIPTS_BODY} bytes")
        hashes = parse_receipts_batch(body)
        found = await asyncio.to_thread(service.storage.deliveries_for_messages, hashes, acct.id)
        answer = {
            "messages": [
                {"sha256": h, "deliveries": [status_json(r) for r in found.get(h, [])]}
                for h in hashes
            ]
        }
        return Response(json.dumps(answer, separators=(",", ":")), media_type="application/json")
