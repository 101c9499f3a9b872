"""Receipts (DESIGN §4.3): an evidence statement, its tlog-proof and, for submissions, a TST.

JSON form::

    {"entry": "<base64 entry bytes>",
     "proof": "<c2sp.org/tlog-proof@v1 text>",
     "tst":   "<base64 DER RFC 3161 TimeStampToken>"}     (only when present)

The proof's checkpoint covers the entry, so a receipt verifies offline with the
notary's verifier key alone. :meth:`Receipt.verify` does not check the TST
(see the RFC 3161 module).
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any

from keys.encoding import Base64Error, NonCanonicalBase64Error, b64decode_canonical
from notary.checkpoint import Checkpoint
from notary.errors import MalformedError, VerificationError
from notary.evidence import MAX_STATEMENT_SIZE, parse_statement
from notary.note import Verifier
from notary.tlogproof import MAX_PROOF_SIZE, TlogProof, parsed_checkpoint

__all__ = ["MAX_TST_SIZE", "Receipt"]

#: Largest RFC 3161 token accepted, in bytes.
MAX_TST_SIZE = 64 * 1024

_MEMBERS = frozenset({"entry", "proof", "tst"})


def _b64(value: object, what: str, cap: int) -> bytes:
    if not isinstance(value, str) or not value:
        raise MalformedError(f"malformed receipt: {what} must be a non-empty base64 string")
    if len(value) > (cap // 3 + 1) * 4:
        raise MalformedError(f"malformed receipt: {what} too large")
    try:
        return b64decode_canonical(value)
    except NonCanonicalBase64Error:
        raise MalformedError(f"malformed receipt: {what} is not canonical base64") from None
    except Base64Error:
        raise MalformedError(f"malformed receipt: {what} is not base64") from None


@dataclass(frozen=True)
class Receipt:
    """The exact entry bytes, the proof of their inclusion, and an optional RFC 3161 token."""

    entry: bytes
    proof: TlogProof
    tst: bytes | None = None

    @property
    def index(self) -> int:
        """The entry's index in the log."""
        return self.proof.index

    def checkpoint(self) -> Checkpoint:
        """The proof's checkpoint, parsed but NOT verified (use :meth:`verify`)."""
        return parsed_checkpoint(self.proof.checkpoint)[1]

    def to_json(self) -> dict[str, Any]:
        """The receipt as a JSON-ready object."""
        obj: dict[str, Any] = {
            "entry": base64.b64encode(self.entry).decode("ascii"),
            "proof": self.proof.to_bytes().decode("utf-8"),
        }
        if self.tst is not None:
            obj["tst"] = base64.b64encode(self.tst).decode("ascii")
        return obj

    @classmethod
    def from_json(cls, obj: Any) -> Receipt:
        """Parse a receipt object (as from ``json.loads``) strictly; raise MalformedError."""
        if not isinstance(obj, dict):
            raise MalformedError("malformed receipt: not a JSON object")
        unknown = set(obj) - _MEMBERS
        if unknown:
            raise MalformedError(f"malformed receipt: unknown members {sorted(map(str, unknown))}")
        if "entry" not in obj or "proof" not in obj:
            raise MalformedError("malformed receipt: 'entry' and 'proof' are required")
        entry = _b64(obj["entry"], "entry", MAX_STATEMENT_SIZE)
        proof_text = obj["proof"]
        if not isinstance(proof_text, str):
            raise MalformedError("malformed receipt: proof must be a string")
        if len(proof_text) > MAX_PROOF_SIZE:
            raise MalformedError("malformed receipt: proof too large")
        try:
            proof_bytes = proof_text.encode("utf-8")
        except UnicodeEncodeError:
            raise MalformedError("malformed receipt: proof is not valid Unicode") from None
        proof = TlogProof.from_bytes(proof_bytes)
        tst = _b64(obj["tst"], "tst", MAX_TST_SIZE) if "tst" in obj else None
        return cls(entry, proof, tst)

    def verify(self, verifier: Verifier) -> dict[str, Any]:
        """Verify the entry's inclusion under a checkpoint signed by ``verifier``.

        Returns the parsed evidence statement. Raises VerificationError if the
        checkpoint signature, the inclusion proof or the statement fails, or if
        the statement names another notary than the log's origin.
        """
        cp = self.proof.verify(self.entry, verifier)
        stmt = parse_statement(self.entry)
        if stmt["notary"] != cp.origin:
            raise VerificationError(
                f"statement names notary {stmt['notary']!r}, but the log is {cp.origin!r}"
            )
        return stmt
