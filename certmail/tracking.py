"""Opt-in open tracking, sender side (``certmail send --track-open``; docs/ack.md).

Per recipient a random token (256 bits, URL-safe base64) goes into a link
``<notary>/r/<token>`` in a small HTML part inside the signed and encrypted
content (with one recipient also as a 1x1 image; with several, links only, each
naming its recipient, since all of them receive the same part); only the
tokens' SHA-256 are registered with the notary (``POST /v1/tracking``), once
the sealed message's SHA-256 is known and before it is sent. A hit is weak
evidence (mail proxies prefetch links).
"""

from __future__ import annotations

import hashlib
import html
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from keys.errors import Error

__all__ = ["TRACKING_FILENAME", "Tracking", "prepare_tracking", "register_tracking"]

#: The name of the HTML part that carries the links.
TRACKING_FILENAME = "read-receipt.html"
#: Most tokens one message registers (``POST /v1/tracking`` takes 1 to 100).
MAX_TRACKED = 100


@dataclass(frozen=True)
class Tracking:
    """The tokens of one message (recipient -> token) and the HTML part's file."""

    tokens: dict[str, str]
    html_path: Path

    def links(self, notary_url: str) -> dict[str, str]:
        return {r: f"{notary_url.rstrip('/')}/r/{t}" for r, t in self.tokens.items()}


def tracking_html(links: dict[str, str]) -> str:
    """The HTML part: a visible link per recipient; with a single recipient also a 1x1
    image for clients that load it. With several, every recipient gets the same part, so
    an image per recipient would report all of them at once: links only, each named."""
    one = len(links) == 1
    rows = "".join(
        f'<p><a href="{html.escape(u)}">Confirm that {html.escape(r)} opened this message</a>'
        + (f'<img src="{html.escape(u)}" width="1" height="1" alt="">' if one else "")
        + "</p>\n"
        for r, u in links.items()
    )
    return (
        '<!doctype html>\n<html><head><meta charset="utf-8"><title>Read receipt</title>'
        "</head><body>\n<p>The sender asked to know when this message is opened. "
        "Following the link tells the sender's notary; it is weak evidence.</p>\n"
        f"{rows}</body></html>\n"
    )


def prepare_tracking(
    notary_url: str,
    recipients: Sequence[str],
    workdir: Path,
    *,
    token: Callable[[], str] = lambda: secrets.token_urlsafe(32),
) -> Tracking:
    """Make one token per recipient and write the HTML part to ``workdir``."""
    if not recipients or len(recipients) > MAX_TRACKED:
        raise Error(
            f"--track-open takes 1 to {MAX_TRACKED} recipients",
            hint="send to fewer recipients at a time with --track-open",
        )
    tokens = {r: token() for r in recipients}
    t = Tracking(tokens, workdir / TRACKING_FILENAME)
    t.html_path.write_text(tracking_html(t.links(notary_url)), encoding="utf-8")
    return t


def register_tracking(notary: Any, sha256: str, message_id: str, tracking: Tracking) -> None:
    """Register the tokens' SHA-256 with the notary (``POST /v1/tracking``)."""
    body = {
        "sha256": sha256,
        "message_id": message_id,
        "tokens": [
            {"recipient": r, "token_sha256": hashlib.sha256(t.encode()).hexdigest()}
            for r, t in tracking.tokens.items()
        ],
    }
    notary.request("POST", "/v1/tracking", json=body)
