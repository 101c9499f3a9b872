"""Opening a received S/MIME message (RFC 8551): decrypt, verify, name the signer.

:func:`open_layers` peels the S/MIME layers of a message, outermost first:
EnvelopedData and AuthEnvelopedData are decrypted with your key
(``cryptography`` for AES-CBC EnvelopedData, ``openssl cms -decrypt``
otherwise), signatures (``multipart/signed`` and opaque SignedData) are
verified with ``openssl cms -verify`` (:func:`keys.cms.verify_detached`) against
the CA bundle (:class:`SmimeContext`), which also checks the signer certificate's dates and
key usage for S/MIME signing (``-purpose smimesign``). The signer certificate
is then checked again here (:func:`certmail.smime.certs.check_certificate`),
and its SubjectAltName rfc822Name must name the From address exactly.

A failure of any step raises :class:`keys.errors.VerificationError` (exit 3):
nothing of the message is shown or trusted.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import pkcs7

from keys.cms import CmsOptions, CmsSigner, verify_detached
from keys.errors import MalformedError, VerificationError
from keys.gpg import BadPassphraseError, PassphraseRequest, SignatureInfo

from ..mime import Entity, canonicalize, parse_entity, single_mailbox
from . import openssl
from .certs import check_certificate, emails, fingerprint, to_pem
from .entities import detached_parts, is_smime, p7_der, smime_kind
from .store import OwnKey, SmimeStore

if TYPE_CHECKING:
    from keys.gpg import Ask

    from ..config import Settings

__all__ = ["MAX_LAYERS", "SmimeContext", "is_smime", "open_layers", "smime_context"]

MAX_LAYERS = 4  # sign + encrypt, and a triple wrap (RFC 2634 §1.1), nothing deeper
VALIDITY = "x509"  # SignatureInfo.validity of a signature whose chain verified


@dataclass
class SmimeContext:
    """What opening and sealing S/MIME needs: the key store, the CA bundle, the passphrase.

    ``ca`` None is OpenSSL's default store (the system's CA certificates). With ``crl``
    (``--smime-crl``) the chain is checked for revocation (``-crl_check``).
    """

    store: SmimeStore
    ca: Path | None = None
    ask: Ask | None = None
    crl: Path | None = None  # CRLs (PEM): the signer's certificate is checked against them
    _own: OwnKey | None = field(default=None, repr=False)

    def own(self) -> OwnKey:
        """Your key, unlocked once per context."""
        if self._own is None:
            self._own = self.store.own_key(self.ask)
        return self._own


def open_layers(
    ctx: SmimeContext, top: Entity, workdir: Path
) -> tuple[Entity, bool, SignatureInfo | None]:
    """The payload entity, whether it was encrypted, and the verified signature (or None)."""
    entity, encrypted, signer, signed_at = top, False, None, None
    for _ in range(MAX_LAYERS):
        kind = smime_kind(entity)
        if kind is None:
            break
        if kind in ("enveloped-data", "authenveloped-data"):
            plain = decrypt(ctx, p7_der(entity), workdir)
            entity, encrypted = parse_entity(canonicalize(plain)), True
            continue
        if signer is not None:
            raise MalformedError("an S/MIME message signed twice is not supported")
        if kind == "multipart-signed":
            content, sig = detached_parts(entity)
            signer, signed_at = verify(ctx, sig, workdir, content=content)
            entity = parse_entity(content)
        elif kind == "signed-data":
            der = p7_der(entity)
            signer, signed_at = verify(ctx, der, workdir)
            entity = parse_entity(canonicalize((workdir / "smime-content").read_bytes()))
        else:
            raise MalformedError(f"S/MIME {kind} is not supported (signed or enveloped data only)")
    else:
        raise MalformedError(f"more than {MAX_LAYERS} S/MIME layers")
    if signer is None:
        return entity, encrypted, None
    protected = bool(entity.param("hp") or "From" in entity.headers)
    sender = single_mailbox((entity.headers if protected else top.headers).get("From"))
    return entity, encrypted, signature_info(signer.certificate, sender, signed_at)


def signature_info(cert: x509.Certificate, sender: str | None, signed_at: object) -> SignatureInfo:
    """The signature as certmail reports it, once the signer is checked against the From."""
    import datetime

    if sender is None:
        raise VerificationError(
            f"signed (S/MIME) by {', '.join(emails(cert)) or cert.subject.rfc4514_string()}, "
            "but the From field is not exactly one address"
        )
    check_certificate(cert, "sign", address=sender)
    created = (
        signed_at
        if isinstance(signed_at, datetime.datetime)
        else datetime.datetime.now(datetime.UTC)
    )
    fpr = fingerprint(cert)
    return SignatureInfo(fpr, fpr, sender, created, VALIDITY, True)


def verify(
    ctx: SmimeContext,
    der: bytes,
    workdir: Path,
    *,
    content: bytes | None = None,
    chain: bool = True,
) -> tuple[CmsSigner, object]:
    """``openssl cms -verify`` of a SignedData (:func:`keys.cms.verify_detached`): the
    signer and the signing time.

    Detached (``content`` given: the exact signed bytes) or opaque (the content
    is written to ``workdir/smime-content``). ``chain`` False checks the
    signature only (the sender's own re-verification).
    """
    ca, crl_check = openssl.cms_trust(ctx.ca, ctx.crl, workdir) if chain else (None, False)
    known = ctx.store.correspondents()  # a signature that does not carry its certificate
    options = CmsOptions(
        work=workdir,
        out=workdir / "smime-content" if content is None else None,
        certs=to_pem(known) if known else b"",  # (RFC 5652 §5.1)
        crl_check=crl_check,
        strict=False,
        timeout=openssl.TIMEOUT,
        what="verify an S/MIME signature",
        explain=_refused,
    )
    signer = verify_detached(content, der, ca, chain=chain, options=options)
    return signer, signing_time(der)


def _refused(stderr: bytes) -> VerificationError:
    return openssl.explain(stderr, "the S/MIME signature does not verify")


def signing_time(der: bytes) -> object:
    """The signingTime signed attribute (RFC 5652 §11.3) of the first signer, or None."""
    from asn1crypto import cms

    try:
        signed = cms.ContentInfo.load(der)["content"]
        for attr in signed["signer_infos"][0]["signed_attrs"]:
            if attr["type"].native == "signing_time":
                return attr["values"][0].native
    except (ValueError, TypeError, KeyError, IndexError):
        return None
    return None


def decrypt(ctx: SmimeContext, der: bytes, workdir: Path) -> bytes:
    """The plaintext of an EnvelopedData or AuthEnvelopedData addressed to your key."""
    own = ctx.own()
    if not addressed_to(der, own.cert):
        raise _not_for_you(own)
    if not isinstance(own.key, rsa.RSAPrivateKey):  # cryptography decrypts with RSA only
        return _openssl_decrypt(own, der, workdir)
    try:
        return pkcs7.pkcs7_decrypt_der(der, own.cert, own.key, [])
    except UnsupportedAlgorithm:
        pass  # 3DES, AES-GCM ...: OpenSSL decrypts those
    except (ValueError, TypeError) as e:
        if "EnvelopedData" not in str(e):  # AuthEnvelopedData is not one
            raise VerificationError(f"the S/MIME message cannot be decrypted ({e})") from None
    return _openssl_decrypt(own, der, workdir)


def addressed_to(der: bytes, cert: x509.Certificate) -> bool:
    """Does a RecipientInfo of the (Auth)EnvelopedData name ``cert`` (RFC 5652 §6.2)?

    By issuer and serial number, or by subject key identifier (key transport,
    ``ktri``, and key agreement, ``kari``). MalformedError for no such structure.
    """
    from asn1crypto import cms

    serial, issuer = cert.serial_number, cert.issuer.public_bytes()
    try:
        ski: bytes | None = cert.extensions.get_extension_for_class(
            x509.SubjectKeyIdentifier
        ).value.digest
    except x509.ExtensionNotFound:
        ski = None
    try:
        infos = cms.ContentInfo.load(der)["content"]["recipient_infos"]
        rids = []
        for info in infos:
            if info.name == "ktri":
                rids.append(info.chosen["rid"])
            elif info.name == "kari":
                rids += [k["rid"] for k in info.chosen["recipient_encrypted_keys"]]
        for rid in rids:
            v = rid.chosen
            if rid.name == "issuer_and_serial_number":
                if v["serial_number"].native == serial and v["issuer"].dump() == issuer:
                    return True
            elif ski is not None and rid.name in ("subject_key_identifier", "r_key_id"):
                key_id = (
                    v.native
                    if rid.name == "subject_key_identifier"
                    else v["subject_key_identifier"].native
                )
                if key_id == ski:
                    return True
    except (ValueError, TypeError, KeyError):
        raise MalformedError("the S/MIME part is not a well-formed EnvelopedData") from None
    return False


def _openssl_decrypt(own: OwnKey, der: bytes, workdir: Path) -> bytes:
    """``openssl cms -decrypt``; the key goes in a file encrypted with a one-time passphrase."""
    once = secrets.token_urlsafe(24)
    key, cert, inp, out = (
        workdir / n for n in ("smime-key.pem", "smime-cert.pem", "smime.p7m", "smime-plain")
    )
    key.write_bytes(
        own.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(once.encode()),
        )
    )
    key.chmod(0o600)
    cert.write_bytes(own.cert.public_bytes(serialization.Encoding.PEM))
    inp.write_bytes(der)
    args = ["cms", "-decrypt", "-binary", "-inform", "DER", "-in", str(inp), "-out", str(out)]
    args += ["-recip", str(cert), "-inkey", str(key), "-passin", "stdin"]
    try:
        r = openssl.run(args, stdin=once.encode() + b"\n", what="decrypt an S/MIME message")
    finally:
        key.unlink()
    if r.returncode != 0:
        raise openssl.explain(r.stderr, "the S/MIME message cannot be decrypted")
    return out.read_bytes()


def _not_for_you(own: OwnKey) -> VerificationError:
    return VerificationError(
        "the S/MIME message is not encrypted to your key "
        f"({', '.join(emails(own.cert))}, certificate {fingerprint(own.cert)[:16]})",
        hint="the sender must encrypt to the certificate certmail keys smime list shows",
    )


def smime_context(settings: Settings, ask: Ask | None, passphrase: str | None) -> SmimeContext:
    """The S/MIME context of a home: ``HOME/smime``, the ``smime_ca`` setting, the passphrase
    source (``ask``, else a fixed ``passphrase`` the Python API was given)."""
    if ask is None and passphrase is not None:
        fixed = passphrase

        def ask_fixed(request: PassphraseRequest) -> str:
            if request.wrong:
                raise BadPassphraseError(f"wrong passphrase for {request.key}")
            return fixed

        ask = ask_fixed
    ca = Path(settings.smime_ca).expanduser() if settings.smime_ca else None
    crl = Path(settings.smime_crl).expanduser() if settings.smime_crl else None
    return SmimeContext(SmimeStore(settings.home / "smime"), ca, ask, crl=crl)
