"""The requester's side of RFC 3161: a TimeStampReq built (§2.4.1) and a TimeStampResp
read (§2.4.2), for asking an outside TSA (notary/anchors.py, certmail/bundle/renew.py).

Pure format code over the package's DER writer and strict reader. The token an
answer holds is not trusted here: verify it with :func:`notary.rfc3161.verify_token`
against the TSA's root, then compare its nonce with the one asked.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from keys.errors import TemporaryError, VerificationError
from notary.rfc3161 import der
from notary.rfc3161.oids import HASH_OIDS

if TYPE_CHECKING:
    from cryptography import x509

__all__ = ["MAX_RESPONSE_BYTES", "build_query", "read_response", "request_token"]

#: Sends a DER TimeStampReq to a TSA: (HTTP status, body). The transport is the caller's.
Post = Callable[[bytes], tuple[int, bytes]]

#: Largest TimeStampResp read (a token with a few certificates is a few KiB).
MAX_RESPONSE_BYTES = 256 * 1024


def build_query(digest: bytes, nonce: int, *, hash_name: str = "sha256") -> bytes:
    """A DER TimeStampReq (version 1) for ``digest``, with ``nonce`` and certReq TRUE (the
    TSA's certificate in the token, so ``openssl ts -verify`` needs only the root)."""
    if nonce < 0:
        raise ValueError("the nonce is a non-negative integer")
    algorithm = der.seq(der.oid(HASH_OIDS[hash_name]), b"\x05\x00")
    imprint = der.seq(algorithm, der.octets(digest))
    return der.seq(der.integer(1), imprint, der.integer(nonce), b"\x01\x01\xff")


def read_response(resp: bytes) -> bytes:
    """The DER TimeStampToken of a granted TimeStampResp (PKIStatus granted or
    grantedWithMods); VerificationError with the TSA's status text otherwise."""
    if len(resp) > MAX_RESPONSE_BYTES:
        raise VerificationError("the TSA's answer is too large")
    try:
        tag, pos, end = der.read(resp, 0, len(resp))
        if tag != 0x30 or end != len(resp):
            raise der.DerError("TimeStampResp")
        parts = der.children(resp, pos, end)
        tag, _, s, e = parts[0]
        if tag != 0x30:
            raise der.DerError("PKIStatusInfo")
        status_parts = der.children(resp, s, e)
        if status_parts[0][0] != 0x02:
            raise der.DerError("PKIStatus")
        status = der.uint(resp, status_parts[0][2], status_parts[0][3])
    except (der.DerError, IndexError, ValueError):
        raise VerificationError("the TSA's answer is not a TimeStampResp") from None
    if status not in (0, 1):
        text = ""
        if len(status_parts) > 1 and status_parts[1][0] == 0x30:
            inner = der.children(resp, status_parts[1][2], status_parts[1][3])
            text = b"; ".join(resp[c[2] : c[3]] for c in inner if c[0] == 0x0C).decode(
                "utf-8", "replace"
            )
        raise VerificationError(f"the TSA refused the request (status {status}) {text}".strip())
    if len(parts) != 2 or parts[1][0] != 0x30:
        raise VerificationError("the TSA's answer grants a time-stamp but holds no token")
    return resp[parts[1][1] : parts[1][3]]


def request_token(post: Post, digest: bytes, roots: Sequence[x509.Certificate]) -> bytes:
    """Ask a TSA through ``post`` for a token over the SHA-256 ``digest`` (a fresh 63-bit
    nonce) and return it once it verifies against ``roots`` and echoes the nonce;
    TemporaryError for an HTTP failure, VerificationError for a refusal or a bad token."""
    from notary.rfc3161.verify import verify_token

    nonce = secrets.randbits(63)
    status, body = post(build_query(digest, nonce))
    if status != 200:
        raise TemporaryError(f"the TSA answered HTTP {status}")
    token = read_response(body)
    try:
        info = verify_token(token, roots=roots, digest=digest)
    except VerificationError as e:
        raise VerificationError(f"the TSA's token does not verify: {e.message}") from None
    if info.nonce != nonce:
        raise VerificationError("the TSA's token does not echo the nonce asked")
    return token
