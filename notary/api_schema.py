"""The shapes of the v1 API (DESIGN §4.6): request validation and the OpenAPI models.

The notarize bodies are validated by hand (:func:`parse_notarize`,
:func:`parse_batch`; the same rules as the pydantic models, which document
them in the OpenAPI document): pydantic costs more than the log itself on
10,000-item batches. Errors are :class:`ApiError`, answered as 4xx JSON.
"""

import json
import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from notary.service import Notarization

SHA256_PATTERN = r"^[0-9a-f]{64}$"
MAX_BATCH_ITEMS = 10_000
_MESSAGE_ID_RE = re.compile(r"[\x21-\x7e]([\x20-\x7e]*[\x21-\x7e])?")


class ApiError(Exception):
    """An error answered as JSON with ``status``."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


class NotarizeRequest(BaseModel):
    """Notarize one message by the SHA-256 of its exact bytes."""

    model_config = ConfigDict(extra="forbid")
    sha256: str = Field(pattern=SHA256_PATTERN, description="lowercase hex SHA-256")
    message_id: str = Field(min_length=1, max_length=998, description="the Message-ID")


class BatchRequest(BaseModel):
    """Notarize many messages in one request."""

    model_config = ConfigDict(extra="forbid")
    items: list[NotarizeRequest] = Field(min_length=1, max_length=MAX_BATCH_ITEMS)
    tst: bool = Field(True, description="attach an RFC 3161 token to each receipt")


class ReceiptModel(BaseModel):
    """DESIGN §4.3: the entry, its C2SP tlog-proof, and the RFC 3161 token."""

    entry: str = Field(description="base64 of the exact entry bytes (RFC 8785 JSON)")
    proof: str = Field(description="C2SP tlog-proof whose checkpoint covers the entry")
    tst: str | None = Field(None, description="base64 DER RFC 3161 TimeStampToken")


class ReceiptsModel(BaseModel):
    receipts: list[ReceiptModel]


class ConsistencyModel(BaseModel):
    old: int
    new: int
    proof: list[str]


class RelayModel(BaseModel):
    """The SMTP relay: submit with STARTTLS, then AUTH (address, API token)."""

    host: str
    port: int
    domain: str = Field(description="the relay's mail domain (EHLO name, DKIM d=)")
    starttls: bool
    auth: list[str]
    max_message_bytes: int
    certificate: str = Field(description="PEM of the certificate STARTTLS presents")
    cert_sha256: str = Field(description="SHA-256 of its DER bytes, lowercase hex: pin it")


class ErrorModel(BaseModel):
    error: str
    message: str


def check_message_id(mid: str) -> None:
    if not _MESSAGE_ID_RE.fullmatch(mid):
        raise ApiError(400, "bad_message_id", "message_id must be printable ASCII")


_SHA256_RE = re.compile(SHA256_PATTERN)


def _load_json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (ValueError, RecursionError):
        raise ApiError(400, "bad_json", "the body is not valid JSON") from None


def parse_notarize(body: bytes) -> Notarization:
    """Validate a POST /v1/notarize body; ApiError(400) naming what is wrong."""
    return _notarization(_load_json(body))


def parse_batch(body: bytes) -> tuple[list[Notarization], bool]:
    """Validate a POST /v1/notarize/batch body: its items and whether tokens are wanted."""
    obj = _load_json(body)
    if not isinstance(obj, dict):
        raise ApiError(400, "bad_request", "the body must be a JSON object")
    unknown = set(obj) - {"items", "tst"}
    if unknown:
        raise ApiError(400, "bad_request", f"unknown members: {sorted(unknown)}")
    items, tst = obj.get("items"), obj.get("tst", True)
    if not isinstance(items, list) or not 1 <= len(items) <= MAX_BATCH_ITEMS:
        raise ApiError(400, "bad_request", f"items must be a list of 1 to {MAX_BATCH_ITEMS}")
    if not isinstance(tst, bool):
        raise ApiError(400, "bad_request", "tst must be true or false")
    out = []
    for i, item in enumerate(items):
        try:
            out.append(_notarization(item))
        except ApiError as e:
            raise ApiError(e.status, e.code, f"items.{i}: {e.message}") from None
    return out, tst


def _notarization(obj: Any) -> Notarization:
    if not isinstance(obj, dict):
        raise ApiError(400, "bad_request", "the body must be a JSON object")
    unknown = set(obj) - {"sha256", "message_id"}
    if unknown:
        raise ApiError(400, "bad_request", f"unknown members: {sorted(unknown)}")
    digest, mid = obj.get("sha256"), obj.get("message_id")
    if not isinstance(digest, str) or not _SHA256_RE.fullmatch(digest):
        raise ApiError(400, "bad_sha256", "sha256 must be 64 lowercase hex digits")
    if not isinstance(mid, str) or not 1 <= len(mid) <= 998:
        raise ApiError(400, "bad_message_id", "message_id must be 1 to 998 characters")
    check_message_id(mid)
    return Notarization(digest, mid)
