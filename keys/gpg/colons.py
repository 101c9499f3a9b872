"""GnuPG's colon key listing (``--with-colons``, GnuPG doc/DETAILS) read into keys.

Also the two helpers for the names in a listing: :func:`normalize_fingerprint`
and :func:`email_of` (the address of an RFC 5322-style user id).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime

__all__ = [
    "FPR_RE",
    "PK_ALGO",
    "TRUSTED_VALIDITY",
    "VALIDITY",
    "KeyInfo",
    "Listed",
    "email_of",
    "normalize_fingerprint",
    "parse_listing",
    "timestamp",
]

# Colon-listing validity letters (GnuPG doc/DETAILS, field 2).
VALIDITY = {
    "o": "unknown",
    "i": "invalid",
    "d": "disabled",
    "r": "revoked",
    "e": "expired",
    "-": "unknown",
    "q": "unknown",
    "n": "never",
    "m": "marginal",
    "f": "full",
    "u": "ultimate",
    "w": "unknown",
    "s": "special",
}
TRUSTED_VALIDITY = ("full", "ultimate")

# OpenPGP public key algorithm ids (RFC 9580 §9.1).
PK_ALGO = {"1": "rsa", "16": "elgamal", "17": "dsa", "18": "ecdh", "19": "ecdsa", "22": "eddsa"}

#: A fingerprint or long key id, optionally with 0x.
FPR_RE = re.compile(r"^(0x)?[0-9A-Fa-f]{16,40}$")
_EMAIL_IN_UID_RE = re.compile(r"<([^<>\s]+@[^<>\s]+)>\s*$")


@dataclass(frozen=True)
class KeyInfo:
    """One OpenPGP key (primary key and its subkeys) as the keyring sees it."""

    fingerprint: str
    uids: tuple[str, ...]
    emails: tuple[str, ...]
    validity: str
    has_secret: bool
    created: datetime
    expires: datetime | None
    algo: str


@dataclass
class Listed:
    """A key from the colon listing, with per-uid validity and capabilities."""

    info: KeyInfo
    uid_validity: dict[str, str]  # lower-case email -> validity word
    capabilities: str


def normalize_fingerprint(value: str) -> str:
    """Upper-case hex without spaces or ``0x``; input that is not hex is returned stripped."""
    compact = value.replace(" ", "").strip()
    if FPR_RE.match(compact):
        return compact.removeprefix("0x").removeprefix("0X").upper()
    return value.strip()


def email_of(uid: str) -> str | None:
    """The lower-case address of a user id ``Name <addr>`` or a bare ``addr``."""
    m = _EMAIL_IN_UID_RE.search(uid)
    if m:
        return m.group(1).lower()
    uid = uid.strip()
    if "@" in uid and " " not in uid:
        return uid.strip("<>").lower()
    return None


def timestamp(value: str) -> datetime | None:
    """A listing or status time: seconds since 1970, or ISO 8601 basic (20240101T120000)."""
    if not value:
        return None
    if value.isdigit():
        return datetime.fromtimestamp(int(value), tz=UTC)
    try:
        return datetime.strptime(value, "%Y%m%dT%H%M%S").replace(tzinfo=UTC)
    except ValueError:
        return None


def _unescape_colon(text: str) -> str:
    raw = re.sub(rb"\\x([0-9a-fA-F]{2})", lambda m: bytes([int(m.group(1), 16)]), text.encode())
    return raw.decode("utf-8", "replace")


@dataclass
class _Key:
    """A key being read: its ``pub``/``sec`` record, then its ``fpr`` and ``uid`` records."""

    validity: str
    created: str
    expires: str
    cap: str
    algo: str
    fingerprint: str = ""
    uids: list[tuple[str, str]] = field(default_factory=list)  # (uid, validity letter)

    def listed(self, has_secret: bool) -> Listed:
        uids = tuple(u for u, _ in self.uids)
        emails = tuple(dict.fromkeys(e for e in (email_of(u) for u in uids) if e))
        info = KeyInfo(
            fingerprint=self.fingerprint,
            uids=uids,
            emails=emails,
            validity=VALIDITY.get(self.validity, "unknown"),
            has_secret=has_secret,
            created=timestamp(self.created) or datetime.fromtimestamp(0, tz=UTC),
            expires=timestamp(self.expires),
            algo=self.algo,
        )
        uid_validity: dict[str, str] = {}
        for u, v in self.uids:
            e = email_of(u)
            if e and e not in uid_validity:
                uid_validity[e] = VALIDITY.get(v, "unknown")
        return Listed(info, uid_validity, self.cap)


def _key_record(f: list[str]) -> _Key:
    algo = PK_ALGO.get(f[3], f[3])
    curve = f[16] if len(f) > 16 else ""
    if curve:
        algo = curve
    elif algo in ("rsa", "dsa", "elgamal"):
        algo = f"{algo}{f[2]}"
    return _Key(validity=f[1], created=f[5], expires=f[6],
                cap=f[11] if len(f) > 11 else "", algo=algo)  # fmt: skip


def parse_listing(text: str, *, secret: bool, secret_fprs: set[str]) -> list[Listed]:
    """The keys of a ``--with-colons --fixed-list-mode`` listing, in order.

    ``secret``: the listing is of secret keys; otherwise a key has a secret
    part when its fingerprint is in ``secret_fprs``.
    """
    keys: list[Listed] = []
    cur: _Key | None = None
    in_sub = False

    def flush() -> None:
        if cur is not None and cur.fingerprint:
            keys.append(cur.listed(secret or cur.fingerprint in secret_fprs))

    for line in text.splitlines():
        f = line.split(":")
        kind = f[0]
        if kind in ("pub", "sec"):
            flush()
            cur = _key_record(f)
            in_sub = False
        elif kind in ("sub", "ssb"):
            in_sub = True
        elif kind == "fpr" and cur is not None and not in_sub:
            cur.fingerprint = f[9]
        elif kind == "uid" and cur is not None:
            cur.uids.append((_unescape_colon(f[9]), f[1]))
    flush()
    return keys
