"""Protected header fields as other mail clients write them (RFC 9788 and its drafts).

Two schemes mark the cryptographic payload whose header section holds the
protected fields:

- RFC 9788 (Header Protection for Cryptographically Protected Email):
  ``hp="cipher"`` or ``hp="clear"`` on the payload's Content-Type, the outer
  fields recorded as ``HP-Outer``; a main body part may begin with a *legacy
  display element* (§4.5.3: a block of ``Subject: ...`` lines and a blank line
  in ``text/plain``, a ``div.header-protection-legacy-display`` in
  ``text/html``), marked ``hp-legacy-display="1"``, which a reader that knows
  the protected fields does not show.
- The earlier drafts (draft-autocrypt-lamps-protected-headers, Autocrypt's
  "protected headers"): ``protected-headers="v1"`` on the payload, as
  Thunderbird, Enigmail, K-9 Mail / FairEmail and NeoMutt
  (``crypt_protected_headers_write``) write it. Their *legacy display part*
  is the first child of the payload's ``multipart/mixed``: a
  ``text/rfc822-headers`` part (Enigmail, the draft) or an inline
  ``text/plain; protected-headers="v1"`` part (Thunderbird) holding only
  header lines; it is not shown.

A payload carries protected fields when it is so marked, or (certmail's
own older messages, some clients) when its header section holds any of
:data:`certmail.mime.FIELDS`. Its fields win; the fields it lacks come from
the outer header (NeoMutt protects only Subject, so From, To, Date and
Message-ID are the outer ones). Pure: no GnuPG, no I/O.
"""

from __future__ import annotations

import re
from email.message import Message

from .mime import FIELDS, Entity

LEGACY_DISPLAY_CLASS = "header-protection-legacy-display"
_HEADER_LINE = re.compile(rb"^[A-Za-z][A-Za-z0-9-]*:[ \t]")
_HTML_DISPLAY = re.compile(
    rb"<div\b[^>]*class=[\"']?[^\"'>]*" + LEGACY_DISPLAY_CLASS.encode() + rb"[^>]*>.*?</div>\s*",
    re.IGNORECASE | re.DOTALL,
)


def scheme(entity: Entity) -> str | None:
    """``"cipher"``/``"clear"`` (RFC 9788 ``hp``), ``"v1"`` (the drafts), or None."""
    hp = entity.param("hp")
    if hp:
        return hp.strip().lower()
    v1 = entity.param("protected-headers")
    return "v1" if v1 is not None and v1.strip().lower() == "v1" else None


def is_protected(entity: Entity) -> bool:
    """Whether the payload's own header section is the protected one."""
    return scheme(entity) is not None or any(name in entity.headers for name in FIELDS)


def merged_fields(payload: Entity, outer: Message) -> Message:
    """The payload's header fields, then those of ``outer`` the payload lacks."""
    out = Message()
    for name, value in payload.headers.items():
        out[name] = value
    for name, value in outer.items():
        if name not in payload.headers:
            out[name] = value
    return out


def without_legacy_display(parent: Entity, children: list[Entity]) -> list[Entity]:
    """``children`` of ``parent`` less a leading legacy display part (the drafts' §4.1)."""
    if not children or parent.content_type != "multipart/mixed" or scheme(parent) != "v1":
        return children
    first = children[0]
    if _is_legacy_display_part(first):
        return children[1:]
    return children


def _is_legacy_display_part(e: Entity) -> bool:
    if e.content_type == "text/rfc822-headers":
        return True
    if e.content_type != "text/plain" or scheme(e) != "v1":
        return False
    disposition = str(e.headers.get("Content-Disposition") or "").split(";")[0].strip().lower()
    lines = [ln for ln in e.body.split(b"\r\n") if ln.strip()]
    return (
        disposition == "inline"
        and 0 < len(lines) <= 20
        and all(_HEADER_LINE.match(ln) for ln in lines)
    )


def strip_legacy_display(entity: Entity, data: bytes) -> bytes:
    """``data`` (the decoded body of a main body part) without its RFC 9788 §4.5.3 element."""
    if (entity.param("hp-legacy-display") or "").strip() != "1":
        return data
    if entity.content_type == "text/html":
        return _HTML_DISPLAY.sub(b"", data, count=1)
    if entity.content_type != "text/plain":
        return data
    nl = b"\r\n" if b"\r\n" in data else b"\n"
    lines = data.split(nl)
    for i, line in enumerate(lines):
        if not line.strip():
            return nl.join(lines[i + 1 :]) if i > 0 else data
        if not _HEADER_LINE.match(line) or i >= 20:
            return data
    return data
