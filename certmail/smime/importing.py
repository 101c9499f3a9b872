"""Importing correspondents' certificates: checked before they are kept (docs/smime.md).

Each end-entity certificate of the file must name an address (SubjectAltName
rfc822Name), be valid now, allow email encryption, and chain to the CA bundle
(``openssl verify``; key usage is checked by certmail); the other certificates of the file
may serve as intermediates. Nothing is kept when one fails.
"""

from __future__ import annotations

from keys.errors import MalformedError, VerificationError

from ..fileio import private_dir
from . import openssl
from .certs import CertInfo, check_certificate, emails, load_certificates, to_pem
from .opening import SmimeContext

__all__ = ["import_certificates"]


def import_certificates(ctx: SmimeContext, data: bytes, name: str) -> list[CertInfo]:
    """Check and keep the end-entity certificates of ``data``; their descriptions."""
    certs = load_certificates(data, name)
    leaves = [c for c in certs if emails(c)]
    if not leaves:
        raise MalformedError(
            f"{name} holds no certificate naming an email address (SubjectAltName rfc822Name)"
        )
    with private_dir("smime", ctx.store.dir.parent / "tmp") as work:
        issuers = [c for c in certs if not emails(c)]
        others = work / "untrusted.pem" if issuers else None
        if others is not None:
            others.write_bytes(to_pem(issuers))
        for cert in leaves:
            check_certificate(cert, "encrypt")
            path = work / "leaf.pem"
            path.write_bytes(to_pem([cert]))
            try:
                openssl.verify_chain(path, ctx.ca, untrusted=others, crl=ctx.crl)
            except VerificationError as e:
                who = ", ".join(emails(cert))
                raise VerificationError(
                    f"not imported: the certificate of {who}: {e.message}", hint=e.hint
                ) from None
    return ctx.store.import_certs(leaves)
