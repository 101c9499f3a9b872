"""Opt-in open tracking: ``POST /v1/tracking`` and ``GET /r/{token}`` (docs/ack.md).

A sender registers, per recipient, the SHA-256 of a random token (≥128 bits)
it put in a link inside the encrypted message; the notary never learns a
token until someone follows the link. A hit on ``/r/{token}`` logs
``ContentAccessTracking`` for the sender's account, labelled weak evidence:
mail proxies and scanners fetch links without anyone reading the message.
Hits are logged each time, at most :data:`HITS_PER_WINDOW` per token per
:data:`WINDOW_SECONDS` (further hits get 429 and are not logged).
"""

from __future__ import annotations

import hashlib
import re
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from keys.errors import MalformedError, NotFoundError
from notary.receipt import Receipt
from notary.sequencer import Submission
from notary.storage import TrackingToken

__all__ = [
    "HITS_PER_WINDOW",
    "MAX_TOKENS",
    "PIXEL_GIF",
    "WEAK_NOTE",
    "RateLimiter",
    "Registration",
    "parse_registration",
    "record_hit",
    "register",
]

MAX_TOKENS = 100
HITS_PER_WINDOW = 5
WINDOW_SECONDS = 60.0
MAX_USER_AGENT = 512
WEAK_NOTE = (
    "weak evidence: a tracking link was fetched; mail proxies and security scanners "
    "fetch links and images without anyone reading the message"
)
#: A transparent 1x1 GIF.
PIXEL_GIF = bytes.fromhex(
    "47494638396101000100800000000000ffffff21f90401000000002c000000000100010000020144003b"
)

_HEX64 = re.compile(r"[0-9a-f]{64}")
_TOKEN = re.compile(r"[A-Za-z0-9_-]{22,128}")
_ADDR = re.compile(r"[^\s@<>()\[\],;:\"]+@[^\s@<>()\[\],;:\"]+")


def token_hash(token: str) -> bytes:
    """What the notary stores of a tracking token: the SHA-256 of its ASCII text."""
    return hashlib.sha256(token.encode("ascii")).digest()


def well_formed_token(token: str) -> bool:
    """True for URL-safe base64 text of 22 to 128 characters (≥128 bits)."""
    return _TOKEN.fullmatch(token) is not None


@dataclass(frozen=True)
class Registration:
    """A parsed ``POST /v1/tracking`` body."""

    sha256: str
    message_id: str
    tokens: tuple[tuple[str, bytes], ...]  # (recipient, token hash)


def parse_registration(obj: Any) -> Registration:
    """Validate ``{"sha256", "message_id", "tokens": [{"recipient", "token_sha256"}]}``."""
    if not isinstance(obj, dict):
        raise MalformedError("the body must be a JSON object")
    unknown = set(obj) - {"sha256", "message_id", "tokens"}
    if unknown:
        raise MalformedError(f"unknown members: {sorted(unknown)}")
    sha, mid, tokens = obj.get("sha256"), obj.get("message_id"), obj.get("tokens")
    if not isinstance(sha, str) or not _HEX64.fullmatch(sha):
        raise MalformedError("sha256 must be 64 lowercase hex digits")
    if not isinstance(mid, str) or not 1 <= len(mid) <= 998 or not mid.isprintable():
        raise MalformedError("message_id must be 1 to 998 printable characters")
    if not isinstance(tokens, list) or not 1 <= len(tokens) <= MAX_TOKENS:
        raise MalformedError(f"tokens must be a list of 1 to {MAX_TOKENS} objects")
    out = []
    for t in tokens:
        if not isinstance(t, dict) or set(t) != {"recipient", "token_sha256"}:
            raise MalformedError('each token is {"recipient", "token_sha256"}')
        r, h = t["recipient"], t["token_sha256"]
        if not isinstance(r, str) or not _ADDR.fullmatch(r) or len(r) > 254:
            raise MalformedError("recipient must be a bare address (local@domain)")
        if not isinstance(h, str) or not _HEX64.fullmatch(h):
            raise MalformedError("token_sha256 must be 64 lowercase hex digits")
        out.append((r, bytes.fromhex(h)))
    if len({h for _, h in out}) != len(out):
        raise MalformedError("token hashes repeat")
    return Registration(sha, mid, tuple(out))


def register(service: Any, account_id: int, reg: Registration, now: datetime) -> int:
    """Store the registration's token hashes for ``account_id``; return how many."""
    service.storage.add_tracking_tokens(
        [TrackingToken(h, account_id, reg.sha256, reg.message_id, r, now) for r, h in reg.tokens]
    )
    return len(reg.tokens)


class RateLimiter:
    """At most ``limit`` events per key in any ``window`` seconds (in memory, per process)."""

    def __init__(
        self,
        limit: int = HITS_PER_WINDOW,
        window: float = WINDOW_SECONDS,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_keys: int = 100_000,
    ) -> None:
        self.limit, self.window, self.clock, self.max_keys = limit, window, clock, max_keys
        self._seen: dict[bytes, deque[float]] = {}

    def allow(self, key: bytes) -> bool:
        now = self.clock()
        recent = self._seen.get(key)
        if recent is None:
            if len(self._seen) >= self.max_keys:
                self._seen.pop(next(iter(self._seen)))
            recent = self._seen[key] = deque()
        while recent and now - recent[0] >= self.window:  # oldest first: drop what left
            recent.popleft()
        if len(recent) >= self.limit:
            return False
        recent.append(now)
        return True


class RateLimited(Exception):
    """Too many hits on one token just now."""


async def record_hit(
    service: Any, limiter: RateLimiter, token: str, *, user_agent: str | None, remote: str | None
) -> Receipt:
    """Log ``ContentAccessTracking`` for a hit on ``token``; NotFoundError if unknown."""
    if not well_formed_token(token):
        raise NotFoundError("no such tracking link")
    found = service.storage.tracking_token(token_hash(token))
    if found is None:
        raise NotFoundError("no such tracking link")
    if not limiter.allow(found.token_hash):
        raise RateLimited
    extra = {
        "recipient": found.recipient,
        "user_agent": (user_agent or "")[:MAX_USER_AGENT],
        "remote_address": remote,
        "strength": "weak",
        "note": WEAK_NOTE,
    }
    (receipt,) = await service.sequencer.submit(
        [
            Submission(
                "ContentAccessTracking",
                found.sha256,
                found.message_id,
                found.account_id,
                extra,
                False,
            )
        ]
    )
    result: Receipt = receipt
    return result
