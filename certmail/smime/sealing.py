"""Sealing an outgoing message with S/MIME (RFC 8551): sign, encrypt, re-verify.

The inner entity is :mod:`certmail.compose`'s (with its certmail manifest and
RFC 9788 header protection, as for PGP/MIME). It is signed as part 1 of a
``multipart/signed`` (detached CMS SignedData, SHA-256, your certificate and
the issuers your PKCS #12 file carried), and that entity is encrypted
(EnvelopedData, AES-256-CBC; RSA key transport by ``cryptography``, or
ECDH key agreement, RFC 5753, by ``openssl cms -encrypt`` when a recipient's
key is EC) to every recipient's
certificate and to yours, as ``application/pkcs7-mime;
smime-type=enveloped-data`` (§3.3). Before the bytes may leave, they are
checked: decrypted again with your key, equal to what was signed, and the
signature verified by ``openssl cms -verify`` (DESIGN §5).

Recipients' certificates come from the home's store and must be valid, for
email encryption, and chain to the CA bundle (``openssl verify``).
:class:`SmimeSealer` is the S/MIME twin of :class:`certmail.signer.Sealer`
(same ``seal`` interface, same DKIM steps).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.ciphers import algorithms
from cryptography.hazmat.primitives.serialization import pkcs7

from keys.errors import Error, MalformedError, VerificationError

from ..compose import (
    Headers,
    Progress,
    ScanRecord,
    compose_inner,
    header_lines,
    new_boundary,
)
from ..fileio import copy_file, file_sha256
from ..mime import canonicalize
from ..pipeline import REVERIFY_HINT
from ..rfc3156 import OBSCURED_SUBJECT
from ..seal import Sealed
from ..signer import NOTARY_HEADER, Sealer
from . import openssl
from .certs import check_certificate, to_pem
from .entities import enveloped_entity, signed_entity_head, signed_entity_tail
from .opening import SmimeContext, verify

if TYPE_CHECKING:
    from keys.gpg import Keyring

__all__ = ["CertLookup", "SmimeSealer", "recipient_certificates", "seal_smime"]

#: How the sealer finds the recipients' certificates (default :func:`recipient_certificates`).
CertLookup = Callable[["SmimeContext", Sequence[str], Path], list[x509.Certificate]]


class SmimeSealer(Sealer):
    """Seals messages with S/MIME from one identity (its S/MIME key, its DKIM key)."""

    def __init__(
        self,
        keyring: Callable[[], Keyring],
        dkim_dir: Path,
        smime: SmimeContext,
        certificates: CertLookup | None = None,
    ) -> None:
        super().__init__(keyring, dkim_dir)
        self.smime = smime
        # A campaign's worker: the certificates its command checked this run.
        self.certificates = certificates or recipient_certificates

    def seal(
        self,
        work: Path,
        headers: Headers,
        data: bytes,
        scanned: list[tuple[Path, ScanRecord]],
        *,
        notary_url: str | None,
        sign: bool,
        encrypt: bool,
        request_mdn: bool,
        progress: Progress | None,
        compress: bool = False,
        html: bytes | None = None,
    ) -> Sealed:
        """Compose, sign, encrypt (and DKIM-sign, then DKIM-check) with S/MIME.

        The :attr:`gpg` options are OpenPGP's; S/MIME always signs, then
        encrypts, as RFC 8551 nests them. ``html``: the pickup notice's HTML
        alternative (signed, not encrypted; docs/sealed.md "Pickup")."""
        extra = [f"{NOTARY_HEADER}: {notary_url}"] if notary_url else []
        if request_mdn:
            extra.append(f"Disposition-Notification-To: {headers.from_addr}")
        dkim = self.dkim_signer(headers.from_addr.rpartition("@")[2].lower())
        sealed = seal_smime(
            self.smime, work, headers, data, scanned,
            sign=sign, encrypt=encrypt, extra_outer=extra, dkim=dkim, progress=progress,
            html=html, certificates=self.certificates,
        )  # fmt: skip
        if dkim is not None:
            self.dkim_check(sealed.path, headers.from_addr)
        return sealed


def recipient_certificates(
    ctx: SmimeContext,
    addrs: Sequence[str],
    work: Path,
    find: Callable[[str], x509.Certificate] | None = None,
) -> list[x509.Certificate]:
    """Each recipient's certificate, checked: valid, for encryption, chaining to the CA.

    ``find``: the lookup by address (default ``ctx.store.certificate_for``; a campaign
    passes its :meth:`~certmail.smime.store.SmimeStore.certificate_index`)."""
    out = []
    for addr in addrs:
        cert = (find or ctx.store.certificate_for)(addr)
        check_certificate(cert, "encrypt", address=addr)
        path = work / "smime-recipient.pem"
        path.write_bytes(to_pem([cert]))
        try:
            openssl.verify_chain(path, ctx.ca, untrusted=None, crl=ctx.crl)
        except VerificationError as e:
            raise VerificationError(f"not encrypting to {addr}: {e.message}", hint=e.hint) from None
        out.append(cert)
    return out


def seal_smime(
    ctx: SmimeContext,
    workdir: Path,
    headers: Headers,
    body: bytes,
    attachments: Sequence[tuple[Path, ScanRecord]] = (),
    *,
    sign: bool = True,
    encrypt: bool = True,
    extra_outer: Sequence[str] = (),
    dkim: Callable[[Path], bytes] | None = None,
    progress: Progress | None = None,
    html: bytes | None = None,
    certificates: CertLookup | None = None,
) -> Sealed:
    """Compose, S/MIME-sign and -encrypt (to the recipients and to you), re-verify.

    The result is ``workdir/message.eml`` (as :func:`certmail.seal.seal`'s).
    ``html``: an HTML alternative of the body (:func:`certmail.compose.compose_inner`),
    for a message that is not encrypted (the pickup notice). ``certificates``: how the
    recipients' certificates are found (default :func:`recipient_certificates`).
    """
    if html is not None and encrypt:
        raise Error("an HTML alternative is for a message that is not encrypted")
    if not sign and not encrypt:
        raise Error("--smime needs signing or encryption", hint="drop --no-sign or --no-encrypt")
    workdir.mkdir(parents=True, exist_ok=True)
    own = ctx.own()
    check_certificate(own.cert, "sign" if sign else "encrypt", address=headers.from_addr)
    lookup = certificates or recipient_certificates
    certs = lookup(ctx, headers.recipients, workdir) if encrypt else []
    inner = workdir / "inner.mime"
    with inner.open("wb") as f:
        manifest = compose_inner(
            f, headers, body, attachments,
            hp="cipher" if encrypt else "clear",
            outer_subject=OBSCURED_SUBJECT if encrypt else None,
            progress=progress,
            html=html,
        )  # fmt: skip
    outer = [
        *header_lines(headers, subject=OBSCURED_SUBJECT if encrypt else None),
        "MIME-Version: 1.0",
        *extra_outer,
    ]
    content = inner.read_bytes()
    if progress is not None:
        progress("sign", 0, 1)
    payload = _signed(ctx, content, () if encrypt else outer) if sign else content
    if encrypt:
        if progress is not None:
            progress("encrypt", 0, 1)
        der = _encrypt(payload, [*certs, own.cert], workdir)
        message = enveloped_entity(der, "enveloped-data", outer)
    else:
        message = payload
    if progress is not None:
        progress("check", 0, 1)
    _reverify(ctx, message, payload, content, workdir, encrypted=encrypt, signed=sign)
    final = workdir / "message.eml"
    _write(final, message, dkim, workdir)
    return Sealed(final, file_sha256(final), final.stat().st_size, manifest, sign, encrypt)


def _signed(ctx: SmimeContext, content: bytes, fields: Sequence[str]) -> bytes:
    """``multipart/signed`` around ``content`` (exact bytes), with a detached signature."""
    own = ctx.own()
    builder = (
        pkcs7.PKCS7SignatureBuilder()
        .set_data(content)
        .add_signer(own.cert, own.key, hashes.SHA256())
    )
    for c in own.chain:
        builder = builder.add_certificate(c)
    opts = [pkcs7.PKCS7Options.DetachedSignature, pkcs7.PKCS7Options.Binary]
    sig = builder.sign(serialization.Encoding.DER, opts)
    b = new_boundary()
    return signed_entity_head(b, fields) + content + signed_entity_tail(sig, b)


def _encrypt(payload: bytes, certs: list[x509.Certificate], work: Path) -> bytes:
    """EnvelopedData of ``payload`` for ``certs`` (each once), AES-256-CBC."""
    unique = list({c.fingerprint(hashes.SHA256()): c for c in certs}.values())
    if all(isinstance(c.public_key(), rsa.RSAPublicKey) for c in unique):
        builder = pkcs7.PKCS7EnvelopeBuilder().set_data(payload)
        builder = builder.set_content_encryption_algorithm(algorithms.AES256)
        for c in unique:
            builder = builder.add_recipient(c)
        return builder.encrypt(serialization.Encoding.DER, [pkcs7.PKCS7Options.Binary])
    # An EC recipient: cryptography encrypts to RSA only; OpenSSL does ECDH (RFC 5753).
    src, out = work / "smime-payload", work / "smime-enveloped.der"
    src.write_bytes(payload)
    args = ["cms", "-encrypt", "-binary", "-aes-256-cbc", "-outform", "DER"]
    args += ["-in", str(src), "-out", str(out)]
    for i, c in enumerate(unique):
        path = work / f"smime-recipient-{i}.pem"
        path.write_bytes(to_pem([c]))
        args.append(str(path))
    r = openssl.run(args, what="encrypt an S/MIME message")
    if r.returncode != 0:
        raise openssl.explain(r.stderr, "openssl could not encrypt the message")
    return out.read_bytes()


def _reverify(
    ctx: SmimeContext,
    message: bytes,
    payload: bytes,
    content: bytes,
    work: Path,
    *,
    encrypted: bool,
    signed: bool,
) -> None:
    """Raise Error unless the finished bytes decrypt to ``payload`` and its signature verifies."""
    from ..mime import parse_entity
    from .entities import detached_parts, p7_der
    from .opening import decrypt

    try:
        top = parse_entity(message)
        if encrypted and decrypt(ctx, p7_der(top), work) != payload:
            raise VerificationError("the decrypted bytes differ from what was signed")
        if signed:
            signed_part, sig = detached_parts(parse_entity(payload))
            if signed_part != content:
                raise VerificationError("the signed part differs from the composed message")
            verify(ctx, sig, work, content=content, chain=False)
    except (VerificationError, MalformedError) as e:
        raise Error(
            f"refusing to send: the finished S/MIME message did not re-verify ({e.message})",
            hint=REVERIFY_HINT,
        ) from e


def _write(final: Path, message: bytes, dkim: Callable[[Path], bytes] | None, work: Path) -> None:
    """The message file, with the DKIM-Signature field(s) in front when there is a DKIM key."""
    unsigned = work / "message.unsigned"
    unsigned.write_bytes(message)
    with final.open("wb") as f:
        if dkim is not None:
            f.write(canonicalize(dkim(unsigned)))
        with unsigned.open("rb") as src:
            copy_file(src, f)
        f.flush()
    unsigned.unlink()
