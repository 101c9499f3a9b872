"""What a verified RFC 3161 token says (§2.4.2 TSTInfo), and the one error for a bad one."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from cryptography import x509

from notary.errors import VerificationError

__all__ = ["TokenInfo", "token_error"]


@dataclass(frozen=True)
class TokenInfo:
    """What a verified TimeStampToken says (RFC 3161 §2.4.2 TSTInfo).

    ``from_template`` is True when the token was checked on the template path:
    it is then byte for byte the layout certmail's TSA issues for the given
    certificates, so no part of it that the signature does not cover can hold
    anything else (no CRLs, unsigned attributes or foreign certificates). It
    does not take part in comparisons.
    """

    gen_time: datetime
    serial: int
    policy: str
    hash_name: str
    digest: bytes
    nonce: int | None
    tsa_cert: x509.Certificate
    from_template: bool = field(default=False, compare=False)


def token_error(msg: str) -> VerificationError:
    """The VerificationError for a token that fails the check ``msg`` names."""
    return VerificationError(f"time-stamp token: {msg}")
