"""What :func:`certmail.bundle.verify_bundle` reports about a valid proof bundle."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["BundleReport", "Check", "ReportEvent"]


@dataclass(frozen=True)
class Check:
    """One item checked: what, how it came out (ok, warning, skipped) and the detail.
    ``applies`` is false for a check with nothing to check (a message that is not
    OpenPGP has no signature): skipped, but not a check that could not run."""

    item: str
    status: str
    detail: str
    applies: bool = True


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
    #: A version 2 acknowledgement's virus-scan verdicts, each labelled with who asserted
    #: it (:func:`certmail.scanverdicts.labelled`); None otherwise.
    scans: list[dict[str, Any]] | None = None


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
    format: int = 1  # the bundle format version (docs/proof-bundle.md)

    @property
    def unchecked(self) -> tuple[Check, ...]:
        """The checks that could not run (status ``skipped`` where the check applies): no
        keyring, no key for a signer, a signature inside the encryption."""
        return tuple(c for c in self.checks if c.status == "skipped" and c.applies)

    @property
    def verdict(self) -> str:
        """``valid``, or ``valid, but N checks could not run``."""
        n = len(self.unchecked)
        if not n:
            return "valid"
        return f"valid, but {n} check{'s' if n > 1 else ''} could not run"

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready object (``valid`` is always true: invalid bundles raise);
        ``verdict`` and ``unchecked`` (the items of the checks that could not run)."""
        obj = asdict(self)
        obj["valid"] = True
        obj["verdict"] = self.verdict
        obj["unchecked"] = [c.item for c in self.unchecked]
        return obj
