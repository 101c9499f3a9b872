"""Which evidence a bundle may show: blind copies stay hidden from the other recipients.

The relay logs one ``SubmissionAcceptance`` naming the recipients in To:/Cc:
and, per blind copy (an envelope recipient the header does not name), one of
its own with ``"blind": true`` naming only that recipient (docs/relay.md,
"Blind copies"). A bundle is shown to recipients, so by default it leaves
out every blind copy's statements (its acceptance and every statement whose
``recipient`` it is); a bundle made *for* one blind copy keeps that one's.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["blind_copies", "visible_to"]


def _statement(receipt: Mapping[str, Any]) -> dict[str, Any]:
    try:
        s = json.loads(base64.b64decode(str(receipt.get("entry", "")), validate=True))
    except (binascii.Error, ValueError):
        return {}  # not this function's to judge: the bundle's checks refuse it
    return s if isinstance(s, dict) else {}


def _is_blind(s: Mapping[str, Any]) -> bool:
    return s.get("event") == "SubmissionAcceptance" and s.get("blind") is True


def blind_copies(receipts: Sequence[Mapping[str, Any]]) -> set[str]:
    """The blind-copy recipients the receipts' statements name (lower case)."""
    out: set[str] = set()
    for r in receipts:
        s = _statement(r)
        if _is_blind(s):
            out.update(str(a).lower() for a in s.get("recipients") or [])
    return out


def visible_to(
    receipts: Sequence[Mapping[str, Any]], recipient: str | None = None
) -> list[Mapping[str, Any]]:
    """The receipts a bundle for ``recipient`` (None: any recipient) may carry."""
    me = recipient.lower() if recipient else None
    hidden = blind_copies(receipts) - {me}
    out = []
    for r in receipts:
        s = _statement(r)
        if _is_blind(s):
            if {str(a).lower() for a in s.get("recipients") or []} <= hidden:
                continue
        elif str(s.get("recipient", "")).lower() in hidden:
            continue
        out.append(r)
    return out
