"""A detached CMS signature (RFC 5652 SignedData) over exact bytes, checked by ``openssl cms``.

The S/MIME acknowledgement of receipt (docs/ack.md) is such a signature over
the acknowledgement text. The notary checks it on ``POST /v1/ack`` and the
sender's client and ``proof verify`` check it again: :func:`verify_detached`
is the one check all of them run. ``cryptography`` signs CMS but does not
verify it, so the ``openssl`` program (Debian's package) does, in a private
work directory, bounded in time: the signature must be over these exact bytes
(``-binary``: no MIME canonicalisation), the signer's certificate must chain to
the CA bundle, be valid at the check's time and allow S/MIME signing
(``-purpose smimesign``: key usage digitalSignature or nonRepudiation,
extended key usage emailProtection when present). Before any of that, the
structure is read (:func:`signed_data`): one signer, its certificate carried,
no content inside (detached). The S/MIME messages' signatures (opened,
re-verified before sending, an S/MIME signed read receipt, a proof bundle's
sender signature) run the same check with more of its options
(:class:`CmsOptions`: attached content, certificates to look the signer up
among, CRLs, their own words for openssl's complaints).

Which certificate a SignerInfo names (RFC 5652 §5.3, SignerIdentifier:
issuerAndSerialNumber or subjectKeyIdentifier) is :func:`signer_certificates`:
the RFC 3161 reference verifier (:mod:`notary.rfc3161.reference`) and the S/MIME
signer chain of a proof bundle (:mod:`certmail.bundle.smimesig`) look it up here.
A certificate's SHA-256 fingerprint and its SubjectAltName addresses
(:func:`fingerprint`, :func:`cert_emails`) are read here too, for certmail's
S/MIME (:mod:`certmail.smime.certs`).
"""

from __future__ import annotations

import base64
import binascii
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from keys.errors import Error, MalformedError, VerificationError

__all__ = [
    "MAX_CMS",
    "CmsOptions",
    "CmsSigner",
    "cert_emails",
    "decode_cms",
    "fingerprint",
    "signed_data",
    "signer_certificates",
    "verify_detached",
]

#: Largest CMS signature accepted (DER bytes): a signer's chain of a few certificates.
MAX_CMS = 24 * 1024
TIMEOUT = 30.0

_FORGED = ("content verify error", "digest failure", "signerinfo_verify")
_BAD = (
    "BAD signature: the text or the CMS signature was modified, "
    "or it was made by another key than its certificate's"
)
_CHAIN = ("unable to get local issuer", "self-signed", "self signed", "unable to get issuer")


@dataclass(frozen=True)
class CmsSigner:
    """Who made a good CMS signature: the signer's certificate."""

    certificate: x509.Certificate
    sha256: str  # of the certificate's DER, lower-case hex (as `keys smime list` shows it)
    subject: str  # RFC 4514
    emails: tuple[str, ...]  # SubjectAltName rfc822Name, lower-case

    @property
    def pem(self) -> str:
        return self.certificate.public_bytes(serialization.Encoding.PEM).decode("ascii")


@dataclass(frozen=True)
class CmsOptions:
    """What :func:`verify_detached` runs beyond an acknowledgement's check (S/MIME messages).

    ``work``: a private directory for openssl's files (None: a temporary one).
    ``out``: where the signed content is written (an opaque SignedData's content).
    ``certs``: PEM certificates to look the signer up among (``-certfile``: one the
    signature does not carry), ``nointern`` among those only (``-nointern``).
    ``crl_check``: the CA bundle holds CRLs too (``-crl_check``). ``strict``: the
    structure is read first (:func:`signed_data`). ``explain``: openssl's complaint
    (its stderr) as the caller's error; ``what`` names the check in a timeout's.
    """

    work: Path | None = None
    out: Path | None = None
    certs: bytes = b""
    nointern: bool = False
    crl_check: bool = False
    strict: bool = True
    timeout: float = TIMEOUT
    what: str = "check a CMS signature"
    explain: Callable[[bytes], Error] | None = None


def fingerprint(cert: x509.Certificate) -> str:
    """The SHA-256 fingerprint of the certificate's DER (what ``openssl x509 -fingerprint``
    shows, without the colons, lower case)."""
    return cert.fingerprint(hashes.SHA256()).hex()


def cert_emails(cert: x509.Certificate) -> tuple[str, ...]:
    """The certificate's SubjectAltName rfc822Name addresses (RFC 8550 §3.1), as written;
    MalformedError when the extension does not read."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return ()
    except ValueError:
        raise MalformedError("the certificate's SubjectAltName cannot be read") from None
    return tuple(str(a) for a in san.get_values_for_type(x509.RFC822Name))


def signer_of(cert: x509.Certificate) -> CmsSigner:
    """The :class:`CmsSigner` of ``cert``: its addresses lower-case, each once."""
    emails = tuple(dict.fromkeys(a.lower() for a in cert_emails(cert)))
    return CmsSigner(cert, fingerprint(cert), cert.subject.rfc4514_string(), emails)


def decode_cms(text: str) -> bytes:
    """The DER of a base64 CMS signature (as ``POST /v1/ack`` and the log carry it)."""
    try:
        der = base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeError, ValueError):
        raise MalformedError("cms must be a base64 CMS SignedData (DER)") from None
    if not der or len(der) > MAX_CMS:
        raise MalformedError(f"cms must be 1 to {MAX_CMS} bytes of DER")
    return der


def signed_data(der: bytes) -> None:
    """MalformedError unless ``der`` is a detached SignedData with one signer and certificates."""
    from asn1crypto import cms

    try:
        info = cms.ContentInfo.load(der, strict=True)
        if info["content_type"].native != "signed_data":
            raise MalformedError("cms is not a CMS SignedData")
        sd = info["content"]
        if sd["encap_content_info"]["content"].native is not None:
            raise MalformedError("the CMS signature must be detached (no content inside)")
        if len(sd["signer_infos"]) != 1:
            raise MalformedError("the CMS signature must have exactly one signer")
        if not len(sd["certificates"] or ()):
            raise MalformedError("the CMS signature must carry the signer's certificate")
    except (ValueError, TypeError, KeyError) as e:
        raise MalformedError(f"cms is not a CMS SignedData ({str(e)[:80]})") from None


def _openssl() -> str:
    found = shutil.which("openssl")
    if found is None:
        raise Error("the openssl program is not installed", hint="apt-get install openssl")
    return found


def _why(stderr: bytes, ca: Path | None) -> Error:
    if stderr.startswith(b"Error loading file"):
        return Error(f"cannot read the CA bundle {ca}", hint="a PEM file of CA certificates")
    low = stderr.decode("utf-8", "replace").lower()
    if "certificate has expired" in low:
        return VerificationError("the signer's certificate has expired")
    if "not yet valid" in low:
        return VerificationError("the signer's certificate is not yet valid")
    if any(n in low for n in _CHAIN):
        return VerificationError("the signer's certificate does not chain to a trusted CA")
    if "purpose" in low:
        return VerificationError("the signer's certificate is not for S/MIME signing")
    if any(n in low for n in _FORGED):
        return VerificationError(_BAD)
    if "verify error:" in low:
        why = low.rsplit("verify error:", 1)[1].strip().splitlines()[0][:120]
        return VerificationError(f"the signer's certificate does not verify ({why})")
    return VerificationError(_BAD)


def verify_detached(
    data: bytes | None,
    der: bytes,
    ca: Path | None,
    *,
    at: datetime | None = None,
    chain: bool = True,
    options: CmsOptions | None = None,
) -> CmsSigner:
    """Check the CMS signature ``der`` over ``data``; return its signer.

    ``data``: the exact signed bytes of a detached signature; None for an
    attached (opaque) SignedData, whose content openssl writes to
    ``options.out``. ``ca``: the CA bundle (PEM) the signer must chain to (None:
    OpenSSL's default store). ``at``: judge the certificates' validity at that
    time (``-attime``; the offline verifier's "when it was logged"), else now.
    MalformedError for what is not a detached one-signer SignedData,
    VerificationError for a bad signature or a certificate that is not trusted.
    ``chain`` False checks the signature with the certificate it carries only
    (``-noverify``: no CA, no dates, no purpose). This is the one place that
    runs ``openssl cms -verify``; ``options`` (:class:`CmsOptions`) are the
    S/MIME messages' extras.
    """
    options = options or CmsOptions()
    if options.strict:
        signed_data(der)
    if options.work is not None:
        signer = _verify_in(options.work, data, der, ca, at, chain, options)
    else:
        with tempfile.TemporaryDirectory(prefix="certmail-cms-") as tmp:
            signer = _verify_in(Path(tmp), data, der, ca, at, chain, options)
    return signer


def _verify_in(
    work: Path,
    data: bytes | None,
    der: bytes,
    ca: Path | None,
    at: datetime | None,
    chain: bool,
    o: CmsOptions,
) -> CmsSigner:
    """``openssl cms -verify`` with its files in ``work``."""
    sig, signer_pem = work / "cms-sig.der", work / "cms-signer.pem"
    sig.write_bytes(der)
    args = [_openssl(), "cms", "-verify", "-binary", "-inform", "DER", "-in", str(sig)]
    if data is not None:
        (work / "cms-data").write_bytes(data)
        args += ["-content", str(work / "cms-data")]
    args += ["-signer", str(signer_pem), "-out", str(o.out or work / "cms-out")]
    if o.certs:
        (work / "cms-certs.pem").write_bytes(o.certs)
        args += ["-certfile", str(work / "cms-certs.pem")]
    if o.nointern:
        args.append("-nointern")
    if not chain:
        args.append("-noverify")
    else:
        args += ["-purpose", "smimesign", *(["-CAfile", str(ca)] if ca else [])]
        args += ["-crl_check"] if o.crl_check else []
    if at is not None:
        args += ["-attime", str(int(at.timestamp()))]
    try:
        r = subprocess.run(args, capture_output=True, timeout=o.timeout, check=False)
    except subprocess.TimeoutExpired:
        raise Error(f"openssl took more than {o.timeout:.0f} s to {o.what}") from None
    except OSError as e:
        raise Error(f"cannot run openssl to {o.what}: {e.strerror or e}") from None
    if r.returncode != 0:
        raise o.explain(r.stderr) if o.explain is not None else _why(r.stderr, ca)
    certs = x509.load_pem_x509_certificates(signer_pem.read_bytes())
    if len(certs) != 1:
        raise MalformedError("the CMS signature must have exactly one signer")
    return signer_of(certs[0])


def signer_certificates(sid: Any, pool: Sequence[x509.Certificate]) -> list[x509.Certificate]:
    """The certificates of ``pool`` that the asn1crypto ``SignerIdentifier`` ``sid``
    names, in ``pool`` order.

    issuerAndSerialNumber: the serial number equal and the issuer Name equal as
    encoded or, failing that, as asn1crypto compares Names (RFC 5280 §7.1: no
    stringprep when the bytes are equal). subjectKeyIdentifier: the
    certificate's SubjectKeyIdentifier extension equal to it.
    """
    if sid.name == "issuer_and_serial_number":
        issuer = sid.chosen["issuer"]
        serial = sid.chosen["serial_number"].native
        return [c for c in pool if c.serial_number == serial and _same_issuer(c, issuer)]
    ski = sid.chosen.native
    found = []
    for c in pool:
        try:
            ext = c.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
        except x509.ExtensionNotFound:
            continue
        if ext.value.digest == ski:
            found.append(c)
    return found


def _same_issuer(cert: x509.Certificate, issuer: Any) -> bool:
    if cert.issuer.public_bytes() == issuer.dump():  # as encoded: no stringprep
        return True
    from asn1crypto import x509 as a_x509  # here: start-up cost only when needed

    der = cert.public_bytes(serialization.Encoding.DER)
    return bool(a_x509.Certificate.load(der)["tbs_certificate"]["issuer"] == issuer)
