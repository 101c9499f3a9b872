"""Offline checks of a notary receipt (DESIGN §4.3), for people and scripts.

:func:`verify_receipt` checks, with nothing but the files given: the C2SP
checkpoint's Ed25519 signature against the pinned verifier key, the RFC 9162
inclusion proof of the exact entry bytes, the evidence statement, that it
names the expected message, and the RFC 3161 token over the message against
a trusted TSA root (the log's tokens carry no certificates: the TSA's chain,
``GET /v1/tsa/chain``, is given beside them; older tokens that embed it verify
without). It returns what was proved or raises VerificationError.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509

from keys.errors import Error, MalformedError, VerificationError
from notary.checkpoint import Checkpoint
from notary.note import Verifier
from notary.receipt import Receipt
from notary.rfc3161 import TokenInfo, verify_token


@dataclass(frozen=True)
class VerifiedReceipt:
    """What a receipt proved."""

    statement: dict[str, Any]
    checkpoint: Checkpoint
    index: int
    token: TokenInfo | None


def load_receipt(path: Path) -> Receipt:
    """Read a receipt JSON file; MalformedError when it is not one."""
    try:
        obj = json.loads(path.read_bytes())
    except FileNotFoundError:
        raise Error(f"no such receipt file: {path}") from None
    except (ValueError, OSError) as e:
        raise MalformedError(f"{path} is not a receipt: {e}") from None
    return Receipt.from_json(obj)


def load_certificates(path: Path) -> list[x509.Certificate]:
    """Read PEM certificates; MalformedError when there are none."""
    try:
        certs = x509.load_pem_x509_certificates(path.read_bytes())
    except FileNotFoundError:
        raise Error(f"no such file: {path}") from None
    except ValueError as e:
        raise MalformedError(f"{path} holds no PEM certificates: {e}") from None
    return certs


def verify_receipt(
    receipt: Receipt,
    vkey: str,
    *,
    data: bytes | None = None,
    sha256: str | None = None,
    tsa_roots: list[x509.Certificate] | None = None,
    tsa_chain: list[x509.Certificate] | None = None,
) -> VerifiedReceipt:
    """Verify ``receipt`` offline; see the module docstring. Raises VerificationError."""
    verifier = Verifier.from_vkey(vkey)
    statement = receipt.verify(verifier)
    checkpoint = receipt.checkpoint()
    want = hashlib.sha256(data).hexdigest() if data is not None else sha256
    got = statement["message"]["sha256"]
    if want is not None and got != want:
        raise VerificationError(f"the receipt is for message {got}, not for this one ({want})")
    token = None
    if receipt.tst is not None and tsa_roots:
        kwargs: dict[str, Any] = (
            {"data": data} if data is not None else {"digest": bytes.fromhex(got)}
        )
        try:
            token = verify_token(
                receipt.tst, roots=tsa_roots, certificates=tsa_chain or (), **kwargs
            )
        except VerificationError as e:
            if tsa_chain:
                raise
            # The log's tokens carry no certificates: the chain comes from the notary.
            raise VerificationError(
                e.message,
                hint="give the TSA's chain with --tsa-chain (GET /v1/tsa/chain of the notary,"
                " or tsa-chain.pem of a proof bundle)",
            ) from None
        if token.digest != bytes.fromhex(got):
            raise VerificationError("the time-stamp token is for another message")
    return VerifiedReceipt(statement, checkpoint, receipt.index, token)
