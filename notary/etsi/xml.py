"""ETSI EN 319 522-3 evidence XML: written from a receipt, read back for checking.

Pure format code (lxml only). The element names follow EN 319 522-3's
evidence (namespace ``http://uri.etsi.org/19522/v1#``); where the standard's
text was not at hand the names are inferred (docs/etsi.md lists which). The
log entry itself (the JCS statement) and its tlog-proof travel in
``TransactionLogInformation``, so the XML never says more than the log does.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any

from lxml import etree  # type: ignore[import-untyped]

from notary.errors import MalformedError
from notary.etsi.mapping import etsi_event, event_uri
from notary.evidence import parse_statement
from notary.receipt import Receipt

NS = "http://uri.etsi.org/19522/v1#"
NSMAP = {"erds": NS}

#: Identifier schemes (EN 319 522-3 §5.2 asks every identifier to name its scheme).
SCHEME_ENTRY = "urn:certmail:tlog-entry"
SCHEME_ORIGIN = "urn:certmail:tlog-origin"
SCHEME_MAILTO = "mailto"
SCHEME_MESSAGE_ID = "urn:ietf:rfc:5322:message-id"
SCHEME_SHA256 = "urn:certmail:message-sha256"
SCHEME_PROOF = "c2sp.org/tlog-proof@v1"
SCHEME_REASON = "urn:certmail:reason:"
POLICY_ID = "urn:certmail:evidence-policy:non-qualified:v1"


def _q(name: str) -> str:
    return f"{{{NS}}}{name}"


def _sub(parent: Any, name: str, text: str | None = None, **attrs: str) -> Any:
    el = etree.SubElement(parent, _q(name), attrs)
    if text is not None:
        el.text = text
    return el


def _ident(parent: Any, name: str, scheme: str, value: str) -> Any:
    return _sub(parent, name, value, scheme=scheme)


def evidence_id(index: int) -> str:
    """The ``Id`` of entry ``index``'s evidence (what its signature references)."""
    return f"evidence-{index}"


def _reasons(root: Any, stmt: dict[str, Any]) -> None:
    reason = stmt.get("reason") or ("virus" if stmt["event"] == "VirusDetected" else None)
    if not isinstance(reason, str):
        return
    details = stmt.get("detail") or stmt.get("signature")
    reply = stmt.get("reply")
    if not details and isinstance(reply, dict):
        details = f"{reply.get('code')} {reply.get('text')}"
    er = _sub(_sub(root, "EventReasons"), "EventReason")
    _sub(er, "Code", SCHEME_REASON + reason)
    if isinstance(details, str) and details:
        _sub(er, "Details", details)


def _parties(root: Any, stmt: dict[str, Any]) -> None:
    if isinstance(stmt.get("submitter"), str):
        _ident(_sub(root, "SenderDetails"), "Identifier", SCHEME_MAILTO, stmt["submitter"])
    recipients = stmt.get("recipients")
    if not isinstance(recipients, list):
        one = stmt.get("recipient")
        recipients = [one] if isinstance(one, str) else []
    if recipients:
        rd = _sub(root, "RecipientsDetails")
        for r in recipients:
            _ident(_sub(rd, "RecipientDetails"), "Identifier", SCHEME_MAILTO, str(r))


def build_evidence(receipt: Receipt) -> Any:
    """The unsigned ``erds:Evidence`` element for one receipt (an lxml element).

    Raises MalformedError when the entry's event has no ETSI counterpart.
    """
    stmt = parse_statement(receipt.entry)
    name = etsi_event(stmt["event"])
    if name is None:
        raise MalformedError(f"event {stmt['event']} is not issued as ETSI evidence")
    origin, index = stmt["notary"], receipt.index
    root = etree.Element(_q("Evidence"), nsmap=NSMAP, version="1", Id=evidence_id(index))
    _ident(root, "EvidenceIdentifier", SCHEME_ENTRY, f"{origin}#{index}")
    _sub(root, "EventCode", event_uri(name))
    _reasons(root, stmt)
    _sub(root, "EventTime", stmt["time"])
    if name == "SubmissionAcceptance":
        _sub(root, "SubmissionTime", stmt["time"])
    _sub(_sub(root, "EvidenceIssuerPolicyID"), "PolicyID", POLICY_ID)
    _ident(_sub(root, "EvidenceIssuerDetails"), "Identifier", SCHEME_ORIGIN, origin)
    _parties(root, stmt)
    smd = _sub(root, "SenderMessageDetails")
    _ident(smd, "AppLayerIdentifier", SCHEME_MESSAGE_ID, stmt["message"]["id"])
    _ident(smd, "AppLayerIdentifier", SCHEME_SHA256, stmt["message"]["sha256"])
    tli = _sub(root, "TransactionLogInformation")
    _ident(tli, "TransactionLogIdentifier", SCHEME_ORIGIN, origin)
    _sub(tli, "TransactionLogEntry", base64.b64encode(receipt.entry).decode(), encoding="base64")
    _sub(tli, "TransactionLogProof", receipt.proof.to_bytes().decode("utf-8"), scheme=SCHEME_PROOF)
    return root


@dataclass(frozen=True)
class EvidenceFacts:
    """What an evidence XML states, read back (not verified: see notary.etsi.sign)."""

    event_uri: str
    message_id: str
    sha256: str
    entry: bytes
    proof: str


def _one(root: Any, path: str) -> Any:
    found = root.findall(path, NSMAP)
    if len(found) != 1:
        raise MalformedError(f"ETSI evidence must hold exactly one {path}, found {len(found)}")
    return found[0]


def _app_id(root: Any, scheme: str) -> str:
    ids = [
        e.text or ""
        for e in root.findall("erds:SenderMessageDetails/erds:AppLayerIdentifier", NSMAP)
        if e.get("scheme") == scheme
    ]
    if len(ids) != 1:
        raise MalformedError(f"ETSI evidence must hold one AppLayerIdentifier of scheme {scheme}")
    return ids[0]


def read_evidence(root: Any) -> EvidenceFacts:
    """Read the facts of an ``erds:Evidence`` element; MalformedError when one is missing."""
    if root.tag != _q("Evidence"):
        raise MalformedError(f"not ETSI evidence: root element is {root.tag}")
    entry_text = _one(root, "erds:TransactionLogInformation/erds:TransactionLogEntry").text or ""
    try:
        entry = base64.b64decode(entry_text, validate=True)
    except ValueError:
        raise MalformedError("ETSI evidence: TransactionLogEntry is not base64") from None
    return EvidenceFacts(
        event_uri=_one(root, "erds:EventCode").text or "",
        message_id=_app_id(root, SCHEME_MESSAGE_ID),
        sha256=_app_id(root, SCHEME_SHA256),
        entry=entry,
        proof=_one(root, "erds:TransactionLogInformation/erds:TransactionLogProof").text or "",
    )
