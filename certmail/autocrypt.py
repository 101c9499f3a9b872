"""Autocrypt Level 1 (autocrypt.org/level1.html): the header and the per-peer state.

:func:`parse_header` reads one ``Autocrypt:`` field (§2.1: ``addr``,
``keydata``, optional ``prefer-encrypt``; an unknown attribute not starting
with ``_`` makes the header invalid). :func:`ingest` runs the update of §2.3
for a received message: the effective date is the Date field, or now when that
lies in the future; a message older than the peer's ``autocrypt_timestamp``
changes nothing; ``multipart/report`` messages are skipped; ``last_seen``
moves forward on every message; a valid header (exactly one, whose ``addr`` is
the From address) sets ``autocrypt_timestamp``, the key and
``prefer_encrypt``. The key is vetted first (OpenPGP, a user ID with exactly
that address: :func:`certmail.locate.admit.vet`) and kept in the peer state,
not imported: ``certmail keys locate`` imports it, labelled TOFU, never trusted.

Stricter than §2.3 on purpose: a header that is present but unreadable (bad
syntax, bad base64, not a key, another address's key) is an error and changes
nothing at all, so a forged header cannot even move ``last_seen``.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import Message
from email.parser import BytesHeaderParser
from email.policy import compat32
from email.utils import getaddresses, parsedate_to_datetime
from pathlib import Path

from keys.errors import Error, MalformedError

from .locate.admit import vet
from .locate.store import Peer, get_peer, put_peer

MAX_HEADER_BYTES = 256 * 1024  # the header block read for Autocrypt
MAX_KEYDATA = 64 * 1024  # a Level 1 key is a few kB (§2.1: SHOULD be small)


class AutocryptError(MalformedError):
    """An Autocrypt header that cannot be read."""


@dataclass(frozen=True)
class AutocryptHeader:
    addr: str
    keydata: bytes
    prefer_encrypt: str  # "mutual" or "nopreference"


def parse_header(value: str) -> AutocryptHeader:
    """One ``Autocrypt:`` field value; raises :class:`AutocryptError`."""
    attrs: dict[str, str] = {}
    for item in value.split(";"):
        if not item.strip():
            continue
        name, sep, val = item.strip().partition("=")
        name = name.strip().lower()
        if not sep or not name:
            raise AutocryptError(f"the Autocrypt header has a malformed attribute {item[:40]!r}")
        if name in attrs:
            raise AutocryptError(f"the Autocrypt header repeats {name!r}")
        attrs[name] = val.strip()
    unknown = [n for n in attrs if n not in ("addr", "keydata", "prefer-encrypt")]
    if [n for n in unknown if not n.startswith("_")]:
        raise AutocryptError(f"the Autocrypt header has unknown critical attributes {unknown}")
    if "addr" not in attrs or "keydata" not in attrs:
        raise AutocryptError("the Autocrypt header lacks addr= or keydata=")
    raw = "".join(attrs["keydata"].split())
    if len(raw) > MAX_KEYDATA * 4 // 3 + 4:
        raise AutocryptError("the Autocrypt keydata is too large")
    try:
        keydata = base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError):
        raise AutocryptError("the Autocrypt keydata is not base64") from None
    if not keydata:
        raise AutocryptError("the Autocrypt keydata is empty")
    pe = "mutual" if attrs.get("prefer-encrypt", "").lower() == "mutual" else "nopreference"
    return AutocryptHeader(attrs["addr"].strip().lower(), keydata, pe)


@dataclass(frozen=True)
class Ingested:
    """What :func:`ingest` did: ``"key"`` (a key stored), ``"seen"``, or ``"skipped"``."""

    addr: str | None
    action: str
    reason: str = ""


def ingest(
    home: Path, raw: bytes, *, now: datetime | None = None, protected_from: str | None = None
) -> Ingested:
    """Update the Autocrypt state of ``home`` from a received message's header.

    ``protected_from`` is the From address the opened message proved (inside
    the signature); an outer From naming someone else changes nothing.
    Raises :class:`AutocryptError` (nothing changed) for an unreadable header.
    """
    headers = _headers(raw)
    sender = _from_addr(headers)
    if sender is None:
        return Ingested(None, "skipped", "no single From address")
    if protected_from is not None and protected_from.strip().lower() != sender:
        return Ingested(sender, "skipped", "the outer From is not the protected one")
    if headers.get_content_type() == "multipart/report":
        return Ingested(sender, "skipped", "a multipart/report message")
    found = _valid_header(headers, sender)
    eff = _effective_date(headers, now or datetime.now(UTC))
    keydata = _vetted(found, sender)
    peer = get_peer(home, sender)
    if peer and peer.autocrypt_timestamp and eff < peer.autocrypt_timestamp:
        return Ingested(sender, "skipped", "older than the Autocrypt state")
    last_seen = max(eff, peer.last_seen) if peer else eff
    if found is None or keydata is None:
        if peer is None:
            put_peer(home, Peer(sender, last_seen, None, None, "nopreference"))
        else:
            put_peer(
                home,
                Peer(
                    sender, last_seen, peer.autocrypt_timestamp, peer.keydata, peer.prefer_encrypt
                ),
            )
        return Ingested(sender, "seen")
    put_peer(home, Peer(sender, last_seen, eff, keydata, found.prefer_encrypt))
    same = peer is not None and peer.keydata == keydata
    return Ingested(sender, "seen" if same else "key")


def _vetted(found: AutocryptHeader | None, sender: str) -> bytes | None:
    if found is None:
        return None
    try:
        return vet(found.keydata, sender, source="the Autocrypt header")
    except Error as e:
        raise AutocryptError(e.message) from None


def _headers(raw: bytes) -> Message:
    end = raw.find(b"\n\n")
    crlf = raw.find(b"\r\n\r\n")
    cut = min(x for x in (end, crlf, len(raw)) if x >= 0)
    if cut > MAX_HEADER_BYTES:
        raise AutocryptError("the message header is too large to read its Autocrypt field")
    return BytesHeaderParser(policy=compat32).parsebytes(raw[: cut + 4])


def _from_addr(headers: Message) -> str | None:
    values = headers.get_all("From") or []
    pairs = getaddresses([str(v) for v in values])
    addrs = [a for _, a in pairs if a]
    if len(values) != 1 or len(addrs) != 1 or "@" not in addrs[0]:
        return None
    return addrs[0].strip().lower()


def _valid_header(headers: Message, sender: str) -> AutocryptHeader | None:
    """The one Autocrypt header for ``sender`` (§2.3: several count as none); raises on garbage."""
    values = [str(v) for v in headers.get_all("Autocrypt") or []]
    if not values:
        return None
    parsed = [parse_header(" ".join(v.split())) for v in values]
    for p in parsed:
        if p.addr != sender:
            raise AutocryptError(
                f"the Autocrypt header is for {p.addr}, but the message is from {sender}"
            )
    return parsed[0] if len(parsed) == 1 else None


def _effective_date(headers: Message, now: datetime) -> datetime:
    try:
        d = parsedate_to_datetime(str(headers.get("Date", "")))
    except (TypeError, ValueError, IndexError):
        return now
    if d.tzinfo is None:
        d = d.replace(tzinfo=UTC)
    return min(d.astimezone(UTC), now)
