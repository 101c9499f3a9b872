"""RFC 8098 read receipts coming back: recognised, checked, matched, kept in the ledger.

An MDN is a ``multipart/report; report-type=disposition-notification``
(RFC 8098 §3, RFC 6522), either bare or inside an RFC 3156
``multipart/signed`` (certmail's own, :mod:`certmail.mdn`). Its
``message/disposition-notification`` part is read for ``Final-Recipient``,
``Original-Recipient``, ``Original-Message-ID``, ``Disposition`` and
``Reporting-UA`` (§3.2). It is matched to the sent message by
``Original-Message-ID`` (the ledger's ``messages``) and kept, with its exact
bytes, in the ledger file's ``mdns`` table (created here; WAL,
``synchronous=FULL``: durable once :func:`store` returns).

What it is worth is stated with it (``label``):

- ``signed``: a good OpenPGP signature by a key carrying the Final-Recipient
  address, and that address is one the message was sent to: the recipient's
  key says the message was displayed (``signer_trusted`` says whether you
  certified that key);
- ``signed-smime``: a good S/MIME signature (:mod:`certmail.mdn_smime`), the
  certificate chaining to the CA bundle and naming the Final-Recipient address,
  one the message was sent to;
- ``signed-other``: a good signature, but not by a key of the recipient (weak);
- ``unsigned``: anyone could have written it (weak).

A bad signature is an error, never stored as weaker evidence. An encrypted
MDN is not read here (certmail sends them signed, not encrypted).
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from email.parser import BytesHeaderParser
from email.policy import compat32
from pathlib import Path
from typing import TYPE_CHECKING, Any

from keys.errors import Error, MalformedError, NotFoundError

from .mdn_smime import is_smime_signed, verify_smime_mdn
from .mime import Entity, canonicalize, decode_body, parse_entity, same_address, split_multipart
from .rfc3156 import signed_parts
from .sqlitedb import session

if TYPE_CHECKING:
    from keys.cms import CmsSigner
    from keys.gpg import Keyring, SignatureInfo

    from .ledger import Ledger
    from .smime.opening import SmimeContext

MAX_MDN_BYTES = 1 << 20  # an MDN is a few kB; a larger "MDN" is not read as one
REPORT = "multipart/report"

SCHEMA = """
CREATE TABLE IF NOT EXISTS mdns (
    id                  INTEGER PRIMARY KEY,
    mdn_sha256          TEXT NOT NULL UNIQUE,   -- SHA-256 of the MDN as received (CRLF)
    sha256              TEXT NOT NULL,          -- the sent message it is about
    message_id          TEXT NOT NULL,
    final_recipient     TEXT NOT NULL,
    disposition         TEXT NOT NULL,
    label               TEXT NOT NULL,          -- signed | signed-other | unsigned
    signer_fingerprint  TEXT,
    signer_trusted      INTEGER NOT NULL DEFAULT 0,
    reporting_ua        TEXT,
    received            TEXT NOT NULL,
    raw                 BLOB NOT NULL,
    signer_subject      TEXT                    -- S/MIME: the certificate's subject
);
CREATE INDEX IF NOT EXISTS mdns_sha256 ON mdns (sha256);
"""

LABELS = {
    "signed": "signed MDN from the recipient's key",
    "signed-smime": "signed MDN (S/MIME) from the recipient's certificate",
    "signed-other": "signed, but not by the recipient's key (weak)",
    "unsigned": "unsigned MDN (weak: anyone could have sent it)",
}


@dataclass(frozen=True)
class IncomingMdn:
    """What an MDN says, and who (if anyone) signed it."""

    original_message_id: str
    final_recipient: str
    original_recipient: str | None
    disposition: str
    reporting_ua: str | None
    mdn_sha256: str
    signer_fingerprint: str | None = None
    signer_emails: tuple[str, ...] = ()
    signer_trusted: bool = False
    signer_subject: str | None = None  # S/MIME: the certificate's subject (else OpenPGP)

    @property
    def signed(self) -> bool:
        return self.signer_fingerprint is not None

    @property
    def displayed(self) -> bool:
        return self.disposition.rpartition(";")[2].strip().lower().startswith("displayed")


@dataclass(frozen=True)
class StoredMdn:
    """An MDN kept in the ledger for one of your sent messages."""

    sha256: str
    message_id: str
    final_recipient: str
    disposition: str
    label: str
    signer_fingerprint: str | None
    signer_trusted: bool
    reporting_ua: str | None
    received: str
    mdn_sha256: str
    signer_subject: str | None = None

    @property
    def description(self) -> str:
        if self.label == "signed-smime":
            return f"signed MDN (S/MIME) from {self.signer_subject or '?'}/{self.final_recipient}"
        return LABELS.get(self.label, self.label)

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "description": self.description}


def is_mdn(raw: bytes) -> bool:
    """Whether ``raw`` is an MDN, bare or signed (cheap: header fields only)."""
    try:
        return _report(parse_entity(canonicalize(raw[: MAX_MDN_BYTES + 1]))) is not None
    except Error:
        return False


def _report(top: Entity) -> Entity | None:
    """The ``multipart/report`` MDN entity of ``top`` (itself, or a signed part 1)."""
    if _is_report(top):
        return top
    if top.content_type == "multipart/signed":
        try:
            first = parse_entity(split_multipart(top)[0])
        except Error:
            return None
        return first if _is_report(first) else None
    return None


def _is_report(e: Entity) -> bool:
    kind = (e.param("report-type") or "").lower()
    return e.content_type == REPORT and kind == "disposition-notification"


def read_mdn(keyring: Keyring, raw: bytes, smime: SmimeContext | None = None) -> IncomingMdn:
    """Parse and verify an MDN (an S/MIME signed one with ``smime``: its CA bundle);
    raise :class:`MalformedError` or ``VerificationError``."""
    if len(raw) > MAX_MDN_BYTES:
        raise MalformedError(f"a disposition notification larger than {MAX_MDN_BYTES:,} bytes")
    canon = canonicalize(raw)
    top = parse_entity(canon)
    report = _report(top)
    if report is None:
        raise MalformedError("not an RFC 8098 disposition notification")
    sig: SignatureInfo | None = None
    if report is not top and is_smime_signed(top):
        return _mdn(report, canon, verify_smime_mdn(smime, top))
    if report is not top:
        sp = signed_parts(top)
        sig = keyring.verify_detached(sp.signed, sp.signature)  # raises on a bad one
        from .unseal import check_sender

        check_sender(keyring, sig, top.headers.get("From"))
    emails: tuple[str, ...] = ()
    if sig is not None:
        emails = tuple(keyring.key_for(sig.primary_fingerprint).emails)
    found = _mdn(report, canon, None)
    return replace(
        found,
        signer_fingerprint=sig.primary_fingerprint if sig else None,
        signer_emails=emails,
        signer_trusted=bool(sig and sig.trusted),
    )


def _mdn(report: Entity, canon: bytes, smime: CmsSigner | None) -> IncomingMdn:
    """What the report says; signed by ``smime`` (an S/MIME certificate) when given."""
    fields = _fields(report)
    return IncomingMdn(
        original_message_id=_required(fields, "Original-Message-ID"),
        final_recipient=_address(_required(fields, "Final-Recipient")),
        original_recipient=_address(fields["Original-Recipient"])
        if fields.get("Original-Recipient")
        else None,
        disposition=_required(fields, "Disposition"),
        reporting_ua=fields.get("Reporting-UA"),
        mdn_sha256=hashlib.sha256(canon).hexdigest(),
        signer_fingerprint=smime.sha256 if smime else None,
        signer_emails=smime.emails if smime else (),
        signer_trusted=smime is not None,  # the chain verified against the CA bundle
        signer_subject=smime.subject[:300] if smime else None,
    )


def unverified_fields(raw: bytes) -> tuple[dict[str, str], bool]:
    """An MDN's ``message/disposition-notification`` fields and whether it is signed,
    read without checking any signature (a proof bundle states them; MalformedError)."""
    if len(raw) > MAX_MDN_BYTES:
        raise MalformedError(f"a disposition notification larger than {MAX_MDN_BYTES:,} bytes")
    top = parse_entity(canonicalize(raw))
    report = _report(top)
    if report is None:
        raise MalformedError("not an RFC 8098 disposition notification")
    return _fields(report), report is not top


def address_of(value: str) -> str:
    """``rfc822;bob@example.net`` -> ``bob@example.net`` (RFC 8098 §3.2.3, §3.2.4)."""
    return _address(value)


def _fields(report: Entity) -> dict[str, str]:
    for raw in split_multipart(report):
        part = parse_entity(raw)
        if part.content_type == "message/disposition-notification":
            body = decode_body(part)
            msg = BytesHeaderParser(policy=compat32).parsebytes(body.strip() + b"\r\n\r\n")
            return {k: " ".join(str(v).split()) for k, v in msg.items()}
    raise MalformedError("the report has no message/disposition-notification part")


def _required(fields: dict[str, str], name: str) -> str:
    value = fields.get(name, "").strip()
    if not value:
        raise MalformedError(f"the disposition notification has no {name} field")
    return value


def _address(value: str) -> str:
    """``rfc822;bob@example.net`` -> ``bob@example.net`` (RFC 8098 §3.2.3, §3.2.4)."""
    kind, sep, addr = value.partition(";")
    return (addr if sep else kind).strip().strip("<>")


def label_of(mdn: IncomingMdn, recipients: tuple[str, ...]) -> str:
    """``signed``, ``signed-smime``, ``signed-other`` or ``unsigned`` (the module
    docstring)."""
    if not mdn.signed:
        return "unsigned"
    to_them = any(same_address(mdn.final_recipient, r) for r in recipients)
    by_them = any(same_address(mdn.final_recipient, e) for e in mdn.signer_emails)
    if not (to_them and by_them):
        return "signed-other"
    return "signed-smime" if mdn.signer_subject is not None else "signed"


@contextmanager
def _db(path: Path) -> Iterator[sqlite3.Connection]:
    with session(path, SCHEMA) as conn:
        columns = {r[1] for r in conn.execute("PRAGMA table_info(mdns)")}
        if "signer_subject" not in columns:  # a ledger from before S/MIME MDNs
            conn.execute("ALTER TABLE mdns ADD COLUMN signer_subject TEXT")
        yield conn


def store(ledger: Ledger, mdn: IncomingMdn, raw: bytes, received: str) -> StoredMdn:
    """Match ``mdn`` to the sent message and keep it (a second copy is not kept twice).

    Raises :class:`NotFoundError` (nothing stored) when no message of the
    ledger has its Original-Message-ID.
    """
    try:
        entry = ledger.find(mdn.original_message_id)
    except NotFoundError:
        raise NotFoundError(
            f"a read receipt for {mdn.original_message_id}, which is not a message you sent "
            "from this home; nothing stored",
            hint="certmail receipts (lists the messages in your ledger)",
        ) from None
    label = label_of(mdn, entry.recipients)
    row = (
        mdn.mdn_sha256,
        entry.sha256,
        entry.message_id,
        mdn.final_recipient,
        mdn.disposition,
        label,
        mdn.signer_fingerprint,
        int(mdn.signer_trusted),
        mdn.reporting_ua,
        received,
        canonicalize(raw),
        mdn.signer_subject,
    )
    with _db(ledger.path) as c:
        c.execute(
            "INSERT OR IGNORE INTO mdns (mdn_sha256, sha256, message_id, final_recipient,"
            " disposition, label, signer_fingerprint, signer_trusted, reporting_ua, received,"
            " raw, signer_subject) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            row,
        )
    return StoredMdn(
        entry.sha256,
        entry.message_id,
        mdn.final_recipient,
        mdn.disposition,
        label,
        mdn.signer_fingerprint,
        mdn.signer_trusted,
        mdn.reporting_ua,
        received,
        mdn.mdn_sha256,
        mdn.signer_subject,
    )


def stored(ledger_path: Path, sha256: str) -> list[StoredMdn]:
    """The MDNs kept for the sent message ``sha256``, oldest first."""
    if not ledger_path.exists():
        return []
    with _db(ledger_path) as c:
        rows = c.execute(
            "SELECT sha256, message_id, final_recipient, disposition, label,"
            " signer_fingerprint, signer_trusted, reporting_ua, received, mdn_sha256,"
            " signer_subject FROM mdns WHERE sha256 = ? ORDER BY id",
            (sha256,),
        ).fetchall()
    return [
        StoredMdn(r[0], r[1], r[2], r[3], r[4], r[5], bool(r[6]), r[7], r[8], r[9], r[10])
        for r in rows
    ]


def raw_of(ledger_path: Path, mdn_sha256: str) -> bytes:
    """The exact bytes of a kept MDN (for a proof bundle)."""
    with _db(ledger_path) as c:
        row = c.execute("SELECT raw FROM mdns WHERE mdn_sha256 = ?", (mdn_sha256,)).fetchone()
    if row is None:
        raise NotFoundError(f"no kept MDN {mdn_sha256}")
    return bytes(row[0])
