"""How certmail's logged events map to the ETSI EN 319 522-2 event set (docs/etsi.md).

The log keeps certmail's own names (notary/evidence.py). Only the ETSI view
renames: a recipient's signed acknowledgement (certmail ``ContentHandover``)
is the recipient accepting the consignment, closer to ETSI's
``ConsignmentAcceptance`` than to ETSI's ``ContentHandover`` (the ERDS handing
the content to the recipient, which the relay's ``RelayToNonERDS`` already is
for a non-ERDS mailbox). A refused scan is a ``SubmissionRejection`` with the
reason ``virus``. An open seen through a tracking link has no ETSI
counterpart and is weak evidence: it is not issued as ETSI evidence.
"""

from __future__ import annotations

#: ETSI event URIs: ``EVENT_BASE + name``.
EVENT_BASE = "http://uri.etsi.org/19522/Event/"

#: certmail event -> ETSI EN 319 522-2 event name (absent: no ETSI evidence).
ETSI_EVENTS: dict[str, str] = {
    "SubmissionAcceptance": "SubmissionAcceptance",
    "SubmissionRejection": "SubmissionRejection",
    "VirusDetected": "SubmissionRejection",
    "RelayToNonERDS": "RelayToNonERDS",
    "RelayToNonERDSFailure": "RelayToNonERDSFailure",
    "ContentHandover": "ConsignmentAcceptance",
}


def etsi_event(certmail_event: str) -> str | None:
    """The ETSI event name for a certmail event, or None when none is issued."""
    return ETSI_EVENTS.get(certmail_event)


def event_uri(name: str) -> str:
    """``http://uri.etsi.org/19522/Event/<name>``."""
    return EVENT_BASE + name
