"""What :func:`certmail.bundle.verify_bundle` reports about a valid proof bundle."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["BundleReport", "Check", "ReportEvent"]


@dataclass(frozen=True)
class Check:
    """One item checked: what, how it came out (ok, warning, skipped) and the detail."""

    item: str
    status: str
    detail: str


@dataclass(frozen=True)
class ReportEvent:
    """One verified event of the bundle."""

    number: int
    event: str
    time: str
    recipient: str | None
    index: int
    checkpoint_size: int
    timestamp: str | None
    proves: str


@dataclass(frozen=True)
class BundleReport:
    """What a valid bundle proves and how each item was checked.

    ``warnings`` are things the verifier should act on (an untrusted key or
    root); a report is only ever returned for a bundle whose every present
    item verified.
    """

    sha256: str
    message_id: str
    sender: str
    recipients: tuple[str, ...]
    vkey: str
    vkey_trusted: bool
    tsa_root_trusted: bool
    events: tuple[ReportEvent, ...]
    checks: tuple[Check, ...]
    warnings: tuple[str, ...] = field(default=())

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready object (``valid`` is always true: invalid bundles raise)."""
        obj = asdict(self)
        obj["valid"] = True
        return obj
