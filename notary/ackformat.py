"""The acknowledgement of receipt as text and as a request (docs/ack.md): pure format.

The acknowledgement text is a small line-oriented UTF-8 document the recipient
signs with their OpenPGP key (detached, armored) or their S/MIME key (a
detached CMS SignedData, base64 DER in the request). :func:`ack_text` writes it,
:func:`parse_ack_text` reads it strictly (both versions: v1, the five fields; v2,
the same fields and then, per attachment, the virus-scan verdict the sender's
manifest states and the recipient's own, issue 11 item 6); :func:`parse_ack_request` validates a
``POST /v1/ack`` body. Clients (:mod:`certmail.ack`) and the notary
(:mod:`notary.ack`) both use this module; it imports nothing of the service,
storage, HTTP or gpg.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from keys.errors import MalformedError
from notary.evidence import format_time, parse_time

__all__ = [
    "ACK_TITLE",
    "ACK_TITLE_V2",
    "MAX_ACK_BODY",
    "MAX_CMS_TEXT",
    "MAX_PUBLIC_KEY",
    "MAX_SIGNATURE",
    "MAX_TEXT",
    "Ack",
    "AckRequest",
    "AttachmentScan",
    "ScanResult",
    "ack_text",
    "parse_ack_request",
    "parse_ack_text",
]

#: The first line of an acknowledgement text of version 1 (no scan verdicts).
ACK_TITLE = "certmail acknowledgement of receipt v1"
#: The first line of version 2: the v1 fields, then the attachments' scan verdicts.
ACK_TITLE_V2 = "certmail acknowledgement of receipt v2"
#: Largest ``POST /v1/ack`` body accepted, in bytes (text + signature + public key).
MAX_ACK_BODY = 48 * 1024
MAX_TEXT = 24 * 1024  # 40 attachments with 200-character engine names fit
#: Most attachments a version 2 text lists.
MAX_SCANNED = 40
#: Longest engine name (clamd's VERSION answer) in a verdict.
MAX_ENGINE = 200
MAX_SIGNATURE = 8192
MAX_PUBLIC_KEY = 32 * 1024
#: Longest ``cms`` member (base64 of a detached SignedData with the signer's chain).
MAX_CMS_TEXT = 32 * 1024

_FIELDS = ("SHA-256", "Message-ID", "Recipient", "Time", "Notary")
_HEX64 = re.compile(r"[0-9a-f]{64}")
_PRINTABLE = re.compile(r"[\x21-\x7e]([\x20-\x7e]*[\x21-\x7e])?")
_ADDR = re.compile(r"[^\s@<>()\[\],;:\"]+@[^\s@<>()\[\],;:\"]+")
_STATEMENT = "I received the message identified below."
_SCANS_HEAD = "Attachments scanned for viruses"
#: The results a verdict may state; ``not stated``: the manifest said nothing usable.
_RESULTS = ("clean", "not scanned", "not stated")


@dataclass(frozen=True)
class ScanResult:
    """One virus-scan verdict: ``clean`` (by ``engine``, clamd's VERSION answer
    ``ClamAV x.y.z/DBVER/date``), ``not scanned``, or (a manifest's) ``not stated``."""

    result: str
    engine: str | None = None

    def text(self) -> str:
        """The verdict as a v2 line writes it: ``clean by ENGINE``, ``not scanned``."""
        return f"{self.result} by {self.engine}" if self.engine is not None else self.result


@dataclass(frozen=True)
class AttachmentScan:
    """One attachment of an acknowledgement of version 2: its SHA-256, what the sender's
    signed manifest states about its scan before sending, and the recipient's own scan
    on opening."""

    sha256: str
    manifest: ScanResult
    opened: ScanResult


@dataclass(frozen=True)
class Ack:
    """The facts an acknowledgement text states; ``scans`` (version 2) the attachments'
    verdicts, ``None`` for a version 1 text (which states none)."""

    sha256: str
    message_id: str
    recipient: str
    time: datetime
    notary: str
    scans: tuple[AttachmentScan, ...] | None = None

    @property
    def version(self) -> int:
        return 1 if self.scans is None else 2


def ack_text(ack: Ack) -> str:
    """The exact text to sign: LF line ends, ASCII, fields in a fixed order (version 2,
    with the scan verdicts, when ``ack.scans`` is not None)."""
    title = ACK_TITLE if ack.scans is None else ACK_TITLE_V2
    text = (
        f"{title}\n\n{_STATEMENT}\n\n"
        f"SHA-256: {ack.sha256}\n"
        f"Message-ID: {ack.message_id}\n"
        f"Recipient: {ack.recipient}\n"
        f"Time: {format_time(ack.time)}\n"
        f"Notary: {ack.notary}\n"
    )
    if ack.scans is not None:
        text += f"\n{_SCANS_HEAD}: {len(ack.scans)}\n"
        for s in ack.scans:
            text += (
                f"\nAttachment: {s.sha256}\n"
                f"Manifest-Scan: {s.manifest.text()}\n"
                f"Opened-Scan: {s.opened.text()}\n"
            )
    parse_ack_text(text)  # refuse to write what the notary would refuse to read
    return text


def _field(name: str, line: str) -> str:
    prefix = f"{name}: "
    if not line.startswith(prefix):
        raise MalformedError(f"expected the {name} field, got {line[:40]!r}")
    value = line[len(prefix) :]
    if not _PRINTABLE.fullmatch(value):
        raise MalformedError(f"the {name} field must be printable ASCII")
    return value


def _verdict(name: str, line: str) -> ScanResult:
    """``clean by ENGINE`` | ``clean`` | ``not scanned`` (| ``not stated``, Manifest-Scan)."""
    value = _field(name, line)
    result, by, engine = value.partition(" by ")
    allowed = _RESULTS if name == "Manifest-Scan" else _RESULTS[:2]
    if result not in allowed or (by and result != "clean"):
        raise MalformedError(f"{name} must be one of {', '.join(allowed)} (clean by ENGINE)")
    if by and (not engine or len(engine) > MAX_ENGINE):
        raise MalformedError(f"{name}: the engine must be 1 to {MAX_ENGINE} characters")
    return ScanResult(result, engine if by else None)


def _scans(lines: list[str]) -> tuple[AttachmentScan, ...]:
    """A version 2 text's lines after the five fields: a blank line, the count, and per
    attachment a blank line and its three lines."""
    if len(lines) < 2 or lines[0] != "":
        raise MalformedError("a v2 acknowledgement lists its attachments after the fields")
    count = _field(_SCANS_HEAD, lines[1])
    if not count.isdigit() or count != str(int(count)) or not 1 <= int(count) <= MAX_SCANNED:
        raise MalformedError(f"a v2 acknowledgement lists 1 to {MAX_SCANNED} attachments")
    blocks = lines[2:]
    if len(blocks) != 4 * int(count):
        raise MalformedError(f"the acknowledgement does not list {count} attachments")
    out = []
    for i in range(0, len(blocks), 4):
        blank, att, sent, opened = blocks[i : i + 4]
        if blank != "":
            raise MalformedError("a blank line must precede each attachment")
        sha = _field("Attachment", att)
        if not _HEX64.fullmatch(sha):
            raise MalformedError("Attachment must be a SHA-256: 64 lowercase hex digits")
        out.append(
            AttachmentScan(sha, _verdict("Manifest-Scan", sent), _verdict("Opened-Scan", opened))
        )
    return tuple(out)


def parse_ack_text(text: str) -> Ack:
    """Read an acknowledgement text written by :func:`ack_text` (v1 or v2);
    MalformedError otherwise."""
    if len(text) > MAX_TEXT:
        raise MalformedError("the acknowledgement text is too long")
    for title in (ACK_TITLE, ACK_TITLE_V2):
        head = f"{title}\n\n{_STATEMENT}\n\n"
        if text.startswith(head) and text.endswith("\n"):
            break
    else:
        raise MalformedError(f"not a certmail acknowledgement: it must start with {ACK_TITLE!r}")
    lines = text[len(head) : -1].split("\n")
    if title == ACK_TITLE and len(lines) != len(_FIELDS):
        raise MalformedError(f"an acknowledgement has exactly the fields {', '.join(_FIELDS)}")
    scans = _scans(lines[len(_FIELDS) :]) if title == ACK_TITLE_V2 else None
    values = {
        name: _field(name, line) for name, line in zip(_FIELDS, lines[: len(_FIELDS)], strict=False)
    }
    if len(values) != len(_FIELDS):
        raise MalformedError(f"an acknowledgement has exactly the fields {', '.join(_FIELDS)}")
    if not _HEX64.fullmatch(values["SHA-256"]):
        raise MalformedError("SHA-256 must be 64 lowercase hex digits")
    if len(values["Message-ID"]) > 998:
        raise MalformedError("Message-ID too long")
    if not _ADDR.fullmatch(values["Recipient"]) or len(values["Recipient"]) > 254:
        raise MalformedError("Recipient must be a bare address (local@domain)")
    return Ack(
        values["SHA-256"],
        values["Message-ID"],
        values["Recipient"],
        parse_time(values["Time"]),
        values["Notary"],
        scans,
    )


@dataclass(frozen=True)
class AckRequest:
    """A parsed ``POST /v1/ack`` body."""

    sha256: str
    message_id: str
    recipient: str
    signed: str
    signature: str
    public_key: str
    ack: Ack
    #: The S/MIME form: a detached CMS SignedData (base64 DER, with the signer's
    #: certificate) over ``signed``; then ``signature`` and ``public_key`` are empty.
    cms: str = ""

    @property
    def proof(self) -> tuple[str, str]:
        """The statement member that carries the signature, and its value."""
        return ("cms", self.cms) if self.cms else ("signature", self.signature)


_BASE = ("sha256", "message_id", "recipient", "signed")
_OPENPGP = ("signature", "public_key")


def _signature_members(obj: dict[str, Any]) -> tuple[str, ...]:
    """The members that carry the signature: OpenPGP's two, or ``cms`` (never both)."""
    form = ("cms",) if "cms" in obj else _OPENPGP
    unknown = set(obj) - set(_BASE) - set(form)
    if unknown:
        raise MalformedError(f"unknown members: {sorted(unknown)}")
    for n in (*_BASE, *form):
        if not isinstance(obj.get(n), str) or not obj[n]:
            raise MalformedError(f"{n} must be a non-empty string")
    if form == ("cms",):
        if len(obj["cms"]) > MAX_CMS_TEXT:
            raise MalformedError("cms too large")
        return form
    if len(obj["signature"]) > MAX_SIGNATURE or len(obj["public_key"]) > MAX_PUBLIC_KEY:
        raise MalformedError("signature or public_key too large")
    if "-----BEGIN PGP SIGNATURE-----" not in obj["signature"]:
        raise MalformedError("signature must be an ASCII-armored OpenPGP signature")
    if "-----BEGIN PGP PUBLIC KEY BLOCK-----" not in obj["public_key"]:
        raise MalformedError("public_key must be an ASCII-armored OpenPGP public key")
    return form


def parse_ack_request(obj: Any) -> AckRequest:
    """Validate a ``POST /v1/ack`` JSON body (the OpenPGP form or the CMS one);
    MalformedError naming what is wrong."""
    if not isinstance(obj, dict):
        raise MalformedError("the body must be a JSON object")
    form = _signature_members(obj)
    ack = parse_ack_text(obj["signed"])
    if ack.sha256 != obj["sha256"]:
        raise MalformedError("the signed text names another SHA-256 than the request")
    if ack.message_id != obj["message_id"]:
        raise MalformedError("the signed text names another Message-ID than the request")
    if ack.recipient.lower() != str(obj["recipient"]).lower():
        raise MalformedError("the signed text names another recipient than the request")
    return AckRequest(
        obj["sha256"],
        obj["message_id"],
        obj["recipient"],
        obj["signed"],
        obj.get("signature", ""),
        obj.get("public_key", ""),
        ack,
        obj["cms"] if form == ("cms",) else "",
    )
