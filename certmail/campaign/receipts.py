"""``campaign send``'s notary step for many messages at once, in the sending process.

A worker hands its recipient's message over (relay mode: to the notary's
relay; direct mode: to the user's SMTP server) and stops there, the ledger
recording the hand-over and the notarization still ``pending``
(:meth:`certmail.outbox.Outbox.deliver` with ``receipt=False``). The parent
gathers those hand-overs (:class:`Receipts`) and, every :data:`BATCH` of them
or :data:`WAIT` seconds (at once when the pool is idle), asks the notary
once for all: ``POST /v1/receipts/batch`` for the relay's SubmissionAcceptance
receipts, ``POST /v1/notarize/batch`` in direct mode. Each receipt is checked
as one fetched alone is (:meth:`certmail.notary_client.NotaryClient.check_receipt`:
the entry, its inclusion proof, the checkpoint's signature by the notary's key,
the message's hash and Message-ID) before the ledger keeps it.

Crash safety is the ledger's: killed before a batch, the messages are
``sent`` with their notarization ``pending``; ``campaign send`` again finds
them there, hands nothing over again, and asks for their receipts.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from keys.errors import Error, TemporaryError, VerificationError

from ..timeline import statement_of

if TYPE_CHECKING:
    from ..api import Certmail

__all__ = ["BATCH", "HANDED", "WAIT", "Receipts", "acceptances", "first_acceptance"]

#: The state :func:`certmail.campaign.worker.run_one` answers for a hand-over whose
#: receipt is still to get (never recorded: :class:`Receipts` turns it into another).
HANDED = "handed over"
#: Hand-overs asked about in one request, at most.
BATCH = 64
#: Seconds the first of a batch waits for more (the pool still busy) before it is asked.
WAIT = 0.5


def first_acceptance(receipts: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The first SubmissionAcceptance receipt among a message's (not yet checked), or None."""
    for x in receipts:
        stmt = statement_of(x)
        if stmt is not None and stmt.get("event") == "SubmissionAcceptance":
            return x
    return None


def acceptances(
    cm: Certmail, hashes: list[str], per: int = BATCH
) -> dict[str, dict[str, Any] | None]:
    """Each message's SubmissionAcceptance receipt at the notary (not yet checked), or
    None: ``per`` messages a request (``POST /v1/receipts/batch``)."""
    out: dict[str, dict[str, Any] | None] = {}
    for i in range(0, len(hashes), per):
        got = cm.notary().receipts_batch(hashes[i : i + per])
        out |= {h: first_acceptance(got.get(h, [])) for h in hashes[i : i + per]}
    return out


class Receipts:
    """The hand-overs of a ``campaign send`` waiting for their receipts (module docstring)."""

    def __init__(self, cm: Certmail, via: str) -> None:
        self.cm, self.via = cm, via
        self.waiting: list[dict[str, Any]] = []
        self.since = 0.0

    def add(self, results: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Keep the hand-overs among ``results``; the others, to record now."""
        rest = []
        for r in results:
            if r["state"] != HANDED:
                rest.append(r)
                continue
            if not self.waiting:
                self.since = time.monotonic()
            self.waiting.append(r)
        return rest

    def due(self, idle: bool) -> bool:
        """Whether to ask now: a full batch, one waiting long enough, or an idle pool."""
        if not self.waiting:
            return False
        return idle or len(self.waiting) >= BATCH or time.monotonic() - self.since >= WAIT

    def flush(self) -> list[dict[str, Any]]:
        """Ask for the waiting hand-overs' receipts (a batch at a time); their final results."""
        out: list[dict[str, Any]] = []
        while self.waiting:
            batch, self.waiting = self.waiting[:BATCH], self.waiting[BATCH:]
            out += self._relay(batch) if self.via == "relay" else self._direct(batch)
        return out

    def _relay(self, batch: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Relay mode: each message's SubmissionAcceptance receipt, one request for all."""
        notary = self.cm.notary()
        try:
            got = notary.receipts_batch([r["sha256"] for r in batch])
        except TemporaryError as e:
            why = f"accepted by the notary relay, but its receipt is not here yet: {e.message}"
            return [self._failed(r, why, permanent=False) for r in batch]
        except Error as e:
            why = f"accepted by the notary relay, but its receipt could not be fetched: {e.message}"
            return [self._failed(r, why, permanent=True) for r in batch]
        out = []
        for r in batch:
            acceptance = first_acceptance(got.get(r["sha256"], []))
            if acceptance is None:
                why = "accepted by the notary relay, but its receipt is not here yet: the "
                out.append(self._failed(r, why + "notary shows none for it", permanent=False))
                continue
            out.append(self._keep(r, acceptance, "accepted by the notary relay, but its receipt"))
        return out

    def _direct(self, batch: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Direct mode: notarize every message's hash, one request for all."""
        notary = self.cm.notary()
        try:
            got = notary.notarize_batch([(r["sha256"], r["message_id"]) for r in batch])
        except TemporaryError as e:
            why = f"sent, but not yet notarized: {e.message}"
            return [self._failed(r, why, permanent=False) for r in batch]
        except Error as e:
            why = f"sent, but the notary refused to notarize it: {e.message}"
            return [self._failed(r, why, permanent=True) for r in batch]
        return [
            self._keep(r, receipt, "sent, but the notary's receipt")
            for r, receipt in zip(batch, got, strict=True)
        ]

    def _keep(self, r: dict[str, Any], receipt: dict[str, Any], what: str) -> dict[str, Any]:
        """Check one receipt as :meth:`NotaryClient.check_receipt` does, then keep it."""
        try:
            self.cm.notary().check_receipt(receipt, r["sha256"], r["message_id"])
        except VerificationError as e:
            return self._failed(r, f"{what} does not verify: {e.message}", permanent=True)
        self.cm.ledger.add_receipt(r["sha256"], receipt)
        return {**r, "state": "accepted", "error": None}

    def _failed(self, r: dict[str, Any], why: str, *, permanent: bool) -> dict[str, Any]:
        """The notary step failed: ``submitted`` (handed over; asked again on the next
        ``campaign send``) or, refused for good, ``failed``, as a lone message's would be."""
        self.cm.ledger.mark_notary_failed(r["sha256"], why, permanent=permanent)
        return {**r, "state": "failed" if permanent else "submitted", "error": why}
