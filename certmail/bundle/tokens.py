"""The RFC 3161 check of a proof bundle: evidence/NN-<event>.tsr over message.eml.

One function, :func:`check_token`, over :func:`notary.rfc3161.verify_token`: that
tries the token template of tsa-chain.pem first (a benchmarked fast path, off with
``CERTMAIL_REFERENCE_ONLY=1``); a token it cannot place goes through the reference
verifier, and then :func:`_check_token_form` requires the unsigned parts to be as
certmail's TSA writes them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from certmail.bundle.layout import CHAIN, fail
from certmail.bundle.report import Check
from keys.errors import VerificationError

if TYPE_CHECKING:
    from cryptography import x509

    from certmail.bundle.checks import Event, Verified

__all__ = ["check_token"]


def check_token(v: Verified, event: Event, names: Mapping[str, str]) -> Check | None:
    """The receipt's token is the .tsr file and a valid RFC 3161 token over message.eml
    from the TSA of tsa-chain.pem (sets ``event.token``); None when there is no token."""
    tst = event.receipt.tst
    if tst is None:
        return None
    from notary.rfc3161 import verify_token

    tname = names["tsr"]
    if v.files[tname] != tst:
        raise fail(f"{tname} is not the token in {names['json']}")
    try:
        token = verify_token(tst, roots=v.roots, digest=v.digest, certificates=v.chain)
        if not token.from_template:  # not in our TSA's exact layout
            _check_token_form(tst, v.chain, tname)
    except VerificationError as err:
        raise fail(f"{tname}: {err.message}") from None
    except (ValueError, TypeError, KeyError, IndexError) as err:
        raise fail(f"{tname}: malformed token ({err})") from None
    event.token = token
    return Check(
        f"{event.number:02d} time-stamp",
        "ok",
        f"{tname}: RFC 3161 token over message.eml, genTime {token.gen_time:%Y-%m-%dT%H:%M:%SZ}",
    )


def _check_token_form(token: bytes, chain: Sequence[x509.Certificate], name: str) -> None:
    """The parts of a CMS SignedData the signature does not cover must be as certmail's TSA
    writes them: no CRLs, no unsigned attributes, NULL or absent algorithm parameters,
    one digest algorithm, embedded certificates only from tsa-chain.pem."""
    from asn1crypto import cms as a_cms
    from asn1crypto import core as a_core
    from cryptography.hazmat.primitives.serialization import Encoding

    sd = a_cms.ContentInfo.load(token, strict=True)["content"]
    if len(sd["digest_algorithms"]) != 1:
        raise fail(f"{name}: unexpected digest algorithms")
    si = sd["signer_infos"][0]
    for algo in (sd["digest_algorithms"][0], si["digest_algorithm"], si["signature_algorithm"]):
        params = algo["parameters"]
        if params.dump() not in (b"", b"\x05\x00"):
            raise fail(f"{name}: unexpected algorithm parameters")
    if si["unsigned_attrs"].dump() != b"" or sd["crls"].dump() != b"":
        raise fail(f"{name}: unexpected unsigned content")
    chain_der = {c.public_bytes(Encoding.DER) for c in chain}
    certs = sd["certificates"]
    for choice in [] if isinstance(certs, a_core.Void) else certs:
        if choice.name != "certificate" or choice.chosen.dump() not in chain_der:
            raise fail(f"{name}: embeds a certificate that is not in {CHAIN}")
