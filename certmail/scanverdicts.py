"""Virus-scan verdicts at both ends of a message (docs/ack.md, "Scan verdicts").

The sender's terminal scans each attachment before sending and writes the
verdict into the signed manifest (:mod:`certmail.compose`); the recipient's
terminal scans each again on opening (:mod:`certmail.attachments`). A version 2
acknowledgement (:mod:`notary.ackformat`) carries both, signed by the
recipient: :func:`scans_of` makes them from what ``open`` found, and
:func:`labelled` / :func:`sentences` say each with who asserted it, for
``certmail receipts`` and ``certmail proof verify``. Pure.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from keys.errors import MalformedError
from notary.ackformat import (
    MAX_ENGINE,
    MAX_SCANNED,
    AttachmentScan,
    ScanResult,
    parse_ack_text,
)

if TYPE_CHECKING:
    from .results import AttachmentInfo

__all__ = ["handover_scans", "labelled", "manifest_verdict", "scans_of", "sentences"]

#: clamd's VERSION answer: ``ClamAV <engine>/<signature database version>/<its date>``.
_CLAMAV = re.compile(r"(ClamAV [^/]+)/(\d+)/(.+)")
_PRINTABLE = re.compile(r"[\x21-\x7e]([\x20-\x7e]*[\x21-\x7e])?")

#: Who asserted each verdict, as the sender's evidence labels it.
SENT_BY = "the sender's terminal scanned it before sending (its signed manifest)"
OPENED_BY = "the recipient's terminal scanned it on opening"


def _engine(value: object) -> str | None:
    ok = isinstance(value, str) and _PRINTABLE.fullmatch(value) and len(value) <= MAX_ENGINE
    return value if ok and isinstance(value, str) else None


def manifest_verdict(record: object) -> ScanResult:
    """What a manifest's ``scan`` member (``{"status", "engine"}``, written by the sender,
    untrusted) states, in the acknowledgement's words: ``not stated`` unless it is one."""
    if not isinstance(record, dict):
        return ScanResult("not stated")
    status, engine = record.get("status"), _engine(record.get("engine"))
    if status == "clean":
        return ScanResult("clean", engine)
    if status == "not scanned":
        return ScanResult("not scanned")
    return ScanResult("not stated")


def scans_of(attachments: Sequence[AttachmentInfo]) -> tuple[AttachmentScan, ...] | None:
    """The verdicts a version 2 acknowledgement states for an opened message's
    attachments; ``None`` (a version 1 text) when it has none or more than one text lists."""
    if not attachments or len(attachments) > MAX_SCANNED:
        return None
    out = []
    for a in attachments:
        opened = (
            ScanResult("clean", _engine(a.scan_engine))
            if a.scan == "clean"
            else ScanResult("not scanned")
        )
        out.append(AttachmentScan(a.sha256, manifest_verdict(a.manifest_scan), opened))
    return tuple(out)


def _verdict_json(v: ScanResult, asserted_by: str, label: str) -> dict[str, Any]:
    m = _CLAMAV.fullmatch(v.engine or "")
    return {
        "asserted_by": asserted_by,
        "label": label,
        "result": v.result,
        "engine": m.group(1) if m else v.engine,
        "database": m.group(2) if m else None,
        "database_date": m.group(3) if m else None,
        "version": v.engine,
    }


def labelled(scans: Sequence[AttachmentScan]) -> list[dict[str, Any]]:
    """Per attachment: its ``sha256``, ``sent`` (asserted by the sender, in the manifest)
    and ``opened`` (asserted by the recipient), each with its ``label``, ``result``,
    ``engine``, signature ``database`` version and date (clamd's VERSION split)."""
    return [
        {
            "sha256": s.sha256,
            "sent": _verdict_json(s.manifest, "sender", SENT_BY),
            "opened": _verdict_json(s.opened, "recipient", OPENED_BY),
        }
        for s in scans
    ]


def _line(v: dict[str, Any], who: str, when: str) -> str:
    if v["result"] == "clean":
        return f"{who} scanned it {when}: clean ({v['version'] or 'engine not named'})"
    if v["result"] == "not scanned":
        return f"{who} did NOT scan it {when} (no scanner)"
    return f"{who} states no verdict (its manifest says nothing usable)"


def sentences(scans: Sequence[dict[str, Any]]) -> list[str]:
    """Two lines per attachment of :func:`labelled`, each naming who asserted the verdict."""
    out = []
    for s in scans:
        short = s["sha256"][:16]
        out.append(
            f"attachment {short}: " + _line(s["sent"], "the sender's terminal", "before sending")
        )
        out.append(
            f"attachment {short}: " + _line(s["opened"], "the recipient's terminal", "on opening")
        )
    return out


def handover_scans(stmt: dict[str, Any]) -> list[dict[str, Any]] | None:
    """The :func:`labelled` verdicts a ContentHandover statement's signed text states
    (``None``: a version 1 text, or one that does not parse)."""
    signed = stmt.get("signed")
    try:
        ack = parse_ack_text(signed) if isinstance(signed, str) else None
    except MalformedError:
        return None
    return labelled(ack.scans) if ack is not None and ack.scans is not None else None
