"""``GET /v1/messages/{sha256}/deliveries``: the relay's delivery state, for the sender.

Per recipient of the account's relayed messages with that SHA-256: the state
(``held``, ``queued``, ``delivered``, ``failed``), the number of attempts, the
last attempt's time, the last server reply (``{code, text}``), the last error
and, while queued, the next attempt (docs/api.md). Another account's message
answers 404, exactly as an unknown one: whether a hash was relayed does not leak.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any

from fastapi import FastAPI, Header, Response

from keys.errors import Error, NotFoundError
from notary.storage import DeliveryStatus

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
    }


def include_delivery_routes(
    app: FastAPI, service: Any, authenticate: Callable[[Any, str | None], Any]
) -> None:
    """Add ``GET /v1/messages/{sha256}/deliveries`` to ``app``."""

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
