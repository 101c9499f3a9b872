"""``POST /v1/receipts/batch``: the receipts of many messages of one account in one request.

A campaign hands hundreds of messages to the relay and wants each one's
SubmissionAcceptance receipt; one ``GET /v1/messages/{sha256}/receipts`` per
message is a round trip, an authentication and a checkpoint read each. This
answers the same receipts (the same format, proved against the same
checkpoint, cosigned where :func:`notary.cosigning.cosigned_receipts` has a
cosigned one) for up to :data:`MAX_RECEIPTS_BATCH` hashes at once.

Only the account's own evidence is answered, as for the GET: a hash with
none for this account, whether the log holds other accounts' entries about it
or nothing at all, answers an empty list, alike in every byte (DESIGN §4.1:
the answer does not tell whether a hash is in the log). Bad input is a 4xx
JSON error (docs/api.md).
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field

from notary.api_schema import SHA256_PATTERN, ApiError, ReceiptModel
from notary.body_limit import TooLarge, json_error, read_bytes
from notary.service import NotaryService
from notary.storage import Account

__all__ = [
    "MAX_RECEIPTS_BATCH",
    "MAX_RECEIPTS_BODY",
    "include_receipts_routes",
    "parse_receipts_batch",
]

#: Hashes one request may ask for (a campaign asks for a few dozen at a time).
MAX_RECEIPTS_BATCH = 1000
#: The body's bound: 1,000 quoted hashes and their commas, with room for spaces.
MAX_RECEIPTS_BODY = 128 * 1024

_SHA256_RE = re.compile(SHA256_PATTERN)


class ReceiptsBatchRequest(BaseModel):
    """The messages whose receipts are wanted, by the SHA-256 of their exact bytes."""

    model_config = ConfigDict(extra="forbid")
    sha256: list[str] = Field(
        min_length=1, max_length=MAX_RECEIPTS_BATCH, description="lowercase hex SHA-256s"
    )


class MessageReceiptsModel(BaseModel):
    sha256: str
    receipts: list[ReceiptModel] = Field(description="empty: no evidence in this account")


class ReceiptsBatchModel(BaseModel):
    messages: list[MessageReceiptsModel] = Field(
        description="one per distinct hash asked, in order"
    )


def parse_receipts_batch(body: bytes) -> list[str]:
    """The distinct hashes of a ``POST /v1/receipts/batch`` body, in the order given;
    ApiError(400) naming what is wrong."""
    try:
        obj = json.loads(body)
    except (ValueError, RecursionError):
        raise ApiError(400, "bad_json", "the body is not valid JSON") from None
    if not isinstance(obj, dict):
        raise ApiError(400, "bad_request", "the body must be a JSON object")
    unknown = set(obj) - {"sha256"}
    if unknown:
        raise ApiError(400, "bad_request", f"unknown members: {sorted(unknown)}")
    hashes = obj.get("sha256")
    if not isinstance(hashes, list) or not 1 <= len(hashes) <= MAX_RECEIPTS_BATCH:
        raise ApiError(
            400, "bad_request", f"sha256 must be a list of 1 to {MAX_RECEIPTS_BATCH} hashes"
        )
    for i, h in enumerate(hashes):
        if not isinstance(h, str) or not _SHA256_RE.fullmatch(h):
            raise ApiError(400, "bad_sha256", f"sha256.{i}: must be 64 lowercase hex digits")
    return list(dict.fromkeys(hashes))


def receipts_of(service: NotaryService, account: Account, hashes: list[str]) -> dict[str, Any]:
    """The answer: each hash's receipts for ``account``, all against one checkpoint
    (blocking: the store is read; run it in a thread)."""
    from notary.cosigning import cosigned_receipts

    found = service.receipts_of(account, hashes)
    directory = service.config.directory
    return {
        "messages": [
            {
                "sha256": h,
                "receipts": [
                    r.to_json() for r in cosigned_receipts(directory, got, service.storage)
                ],
            }
            for h, got in found.items()
        ]
    }


def include_receipts_routes(
    app: FastAPI,
    service: NotaryService,
    authenticate: Callable[[NotaryService, str | None], Awaitable[Account]],
) -> None:
    """``POST /v1/receipts/batch`` (module docstring)."""

    @app.post(
        "/v1/receipts/batch",
        summary="The receipts of many of the account's messages, as GET .../receipts answers",
        responses={200: {"model": ReceiptsBatchModel}},
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {"schema": ReceiptsBatchRequest.model_json_schema()}
                },
            }
        },
    )
    async def receipts_batch(request: Request) -> Response:
        acct = await authenticate(service, request.headers.get("authorization"))
        try:
            body = await read_bytes(request, MAX_RECEIPTS_BODY)
        except TooLarge:
            return json_error(413, "too_large", f"body over {MAX_RECEIPTS_BODY} bytes")
        hashes = parse_receipts_batch(body)
        answer = await asyncio.to_thread(receipts_of, service, acct, hashes)
        return Response(json.dumps(answer, separators=(",", ":")), media_type="application/json")
