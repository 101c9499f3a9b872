"""Proof bundles (DESIGN §4.5): one zip that proves what was sent and what happened to it.

Layout (docs/proof-bundle.md)::

    message.eml                       the exact bytes the notary hashed
    notary.vkey                       checkpoint verifier key (one line)
    tsa-chain.pem                     TSA certificate, then its issuers up to the root
    evidence/NN-<event>.json          receipts (DESIGN §4.3), in time order
    evidence/NN-<event>.tlog-proof    the same proof as a file (c2sp.org/tlog-proof)
    evidence/NN-<event>.tsr           the RFC 3161 TimeStampToken (DER), where there is one
    evidence/consistency-M-N.json     RFC 9162 consistency proof between checkpoints M < N
    certificate.html, certificate.pdf human-readable certificate
    VERIFY.txt                        how to check every item with stock tools

:func:`verify_bundle` checks a bundle offline and returns a
:class:`BundleReport` or raises :class:`keys.errors.VerificationError` naming
what failed. :func:`export_bundle` writes a bundle and verifies it before
returning it. The library never prints.

Modules: ``layout`` (member names, caps, canonical JSON form), ``zipio`` (the
one strict zip reader and the writer), ``checks``/``tokens``/``openpgp`` (one
function per check), ``verify`` (the driver and the report), ``export``,
``headers`` (what the certificate says of message.eml), ``documents`` (the
certificate, its PDF and VERIFY.txt).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from certmail.bundle.layout import (
    MAX_BUNDLE_SIZE,
    MAX_EVENTS,
    MAX_MEMBER_SIZE,
    MAX_MEMBERS,
    MAX_MESSAGE_SIZE,
    receipt_text,
)
from certmail.bundle.report import BundleReport, Check, ReportEvent
from certmail.bundle.verify import verify_bundle
from certmail.bundle.zipio import STORED_UP_TO, read_members, write_members

if TYPE_CHECKING:
    from certmail.bundle.export import export_bundle


def __getattr__(name: str) -> Any:
    """``export_bundle``, imported on first use (verifying needs none of the exporter:
    ``certmail proof verify`` starts without it)."""
    if name == "export_bundle":
        from certmail.bundle.export import export_bundle

        return export_bundle
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "MAX_BUNDLE_SIZE",
    "MAX_EVENTS",
    "MAX_MEMBERS",
    "MAX_MEMBER_SIZE",
    "MAX_MESSAGE_SIZE",
    "STORED_UP_TO",
    "BundleReport",
    "Check",
    "ReportEvent",
    "export_bundle",
    "read_members",
    "receipt_text",
    "verify_bundle",
    "write_members",
]
