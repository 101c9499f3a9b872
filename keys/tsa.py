"""The notary's RFC 3161 time-stamping authority key material.

RFC 3161 §2.3 fixes what a TSA certificate must be: exactly one
extendedKeyUsage extension, critical, holding only id-kp-timeStamping. This
module creates such a PKI (an ECDSA P-256 root CA and a TSA certificate it
issues), imports an existing one after validating it, and loads it back.

File layout of a TSA directory (the same whether generated or imported)::

    tsa-key.pem       the TSA's private key, PKCS#8, mode 0600
    tsa-cert.pem      the TSA certificate
    tsa-chain.pem     the TSA certificate, then its issuers up to the root
    root-ca.pem       the root of that chain (the trust anchor verifiers use)
    root-ca-key.pem   the root's private key, mode 0600 (generated PKIs only,
                      unless ``root_dir`` puts it elsewhere)

Serving needs only the TSA's own key: :func:`generate_tsa_pki` with
``root_dir`` writes the root's key (and a copy of its certificate) to that
separate directory (0700), to be kept offline; ``notary init`` does so.

No network I/O; nothing here prints.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID

from keys.errors import ConflictError, KeyMaterialError, NotFoundError
from keys.x509ca import (
    certs_pem,
    key_pem,
    root_certificate,
    signer_certificate,
    write_public,
    write_secret,
)

TSA_KEY = "tsa-key.pem"
TSA_CERT = "tsa-cert.pem"
TSA_CHAIN = "tsa-chain.pem"
ROOT_CERT = "root-ca.pem"
ROOT_KEY = "root-ca-key.pem"

#: The TSA certificate's lifetime. A token stays verifiable after the TSA
#: certificate expires (verifiers check the chain at genTime), so the TSA
#: certificate is shorter-lived than the root (`keys.x509ca.ROOT_LIFETIME`).
TSA_LIFETIME = timedelta(days=10 * 365)

_IMPORT_HINT = "pass --tsa-cert/--tsa-key/--tsa-chain for a valid TSA, or omit them to generate one"


@dataclass(frozen=True)
class TsaCredentials:
    """A TSA's signing key, its certificate, and the certificate's issuers.

    ``chain`` holds the issuers of ``cert`` in order, up to and including the
    root; it does not contain ``cert`` itself.
    """

    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate
    chain: tuple[x509.Certificate, ...]

    def root(self) -> x509.Certificate:
        """The trust anchor: the last issuer, or the certificate itself if self-issued."""
        return self.chain[-1] if self.chain else self.cert


def generate_tsa_pki(
    directory: Path,
    common_name: str,
    *,
    now: datetime | None = None,
    root_dir: Path | None = None,
) -> TsaCredentials:
    """Create a P-256 root CA and a TSA certificate under ``directory``.

    With ``root_dir`` the root CA's private key is written there (with a copy
    of the root certificate), not under ``directory``: the serving directory
    then holds only the TSA's own key. Refuses with :class:`ConflictError` if
    any of the files already exists.
    """
    now = _utc(now)
    _refuse_overwrite(directory, (TSA_KEY, TSA_CERT, TSA_CHAIN, ROOT_CERT, ROOT_KEY))
    if root_dir is not None:
        _refuse_overwrite(root_dir, (ROOT_CERT, ROOT_KEY))
    root_key = ec.generate_private_key(ec.SECP256R1())
    root = root_certificate(root_key, f"{common_name} Root CA", now)
    tsa_key = ec.generate_private_key(ec.SECP256R1())
    # RFC 3161 §2.3: exactly one extendedKeyUsage, critical, only timeStamping.
    tsa = signer_certificate(
        tsa_key.public_key(),
        common_name,
        root,
        root_key,
        now,
        TSA_LIFETIME,
        extended_key_usage=x509.ExtendedKeyUsage([ExtendedKeyUsageOID.TIME_STAMPING]),
    )
    creds = TsaCredentials(key=tsa_key, cert=tsa, chain=(root,))
    validate_tsa_certificate(tsa, creds.chain, tsa_key, now)
    _write_layout(directory, creds)
    _write_root_key(root_dir or directory, root_key, root if root_dir is not None else None)
    return creds


def _write_root_key(
    directory: Path, root_key: ec.EllipticCurvePrivateKey, root: x509.Certificate | None
) -> None:
    """Write the root's private key under ``directory``; with ``root`` (a separate,
    offline root directory) make that directory 0700 and put a copy of the root there."""
    if root is not None:
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(directory, 0o700)
    write_secret(directory / ROOT_KEY, key_pem(root_key))
    if root is not None:
        write_public(directory / ROOT_CERT, certs_pem([root]))


def import_tsa(
    directory: Path,
    cert_path: Path,
    key_path: Path,
    chain_path: Path | None,
    *,
    now: datetime | None = None,
) -> TsaCredentials:
    """Validate an existing TSA certificate, key and chain, then copy them into ``directory``.

    ``chain_path`` holds the issuers of the certificate up to the root (a file
    that starts with the TSA certificate itself is accepted too). It may be
    omitted only for a self-issued TSA certificate.
    """
    now = _utc(now)
    cert = _read_one_cert(cert_path)
    key = _read_key(key_path)
    chain: tuple[x509.Certificate, ...] = ()
    if chain_path is not None:
        chain = tuple(_read_certs(chain_path))
        if chain and chain[0] == cert:
            chain = chain[1:]
    validate_tsa_certificate(cert, chain, key, now)
    assert isinstance(key, ec.EllipticCurvePrivateKey)  # checked by validate_tsa_certificate
    _refuse_overwrite(directory, (TSA_KEY, TSA_CERT, TSA_CHAIN, ROOT_CERT))
    creds = TsaCredentials(key=key, cert=cert, chain=chain)
    _write_layout(directory, creds)
    return creds


def load_tsa(directory: Path) -> TsaCredentials:
    """Load the TSA key material written by :func:`generate_tsa_pki` or :func:`import_tsa`.

    Checks that the key matches the certificate and that the chain links up;
    not the validity period (the TSA refuses to stamp outside it).
    """
    key_file = directory / TSA_KEY
    if not key_file.exists():
        raise NotFoundError(
            f"no TSA key in {directory}",
            hint="run `certmail notary init` to create the notary's TSA",
        )
    key = _read_key(key_file)
    cert = _read_one_cert(directory / TSA_CERT)
    certs = _read_certs(directory / TSA_CHAIN)
    if not certs or certs[0] != cert:
        raise KeyMaterialError(
            f"{directory / TSA_CHAIN} does not start with the certificate in {TSA_CERT}",
            hint="re-import the TSA with `certmail notary init --tsa-cert ... --tsa-chain ...`",
        )
    chain = tuple(certs[1:])
    validate_tsa_certificate(cert, chain, key, None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    return TsaCredentials(key=key, cert=cert, chain=chain)


def validate_tsa_certificate(
    cert: x509.Certificate,
    chain: Sequence[x509.Certificate],
    key: object,
    now: datetime | None,
) -> None:
    """Check that ``cert`` may act as an RFC 3161 TSA certificate for ``key``.

    RFC 3161 §2.3: exactly one extendedKeyUsage, critical, with only
    id-kp-timeStamping. Also: not a CA, an ECDSA P-256 key matching ``key``,
    keyUsage (if present) allows signatures, and ``chain`` issues ``cert`` up to
    a self-signed root. With ``now``, every certificate must be valid at ``now``.
    Raises :class:`KeyMaterialError` naming what is wrong.
    """
    what = _describe(cert)
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP256R1):
        raise KeyMaterialError(
            "the TSA key is not an ECDSA P-256 key",
            hint="create one with `openssl ecparam -name prime256v1 -genkey -noout`",
        )
    pub = cert.public_key()
    if not isinstance(pub, ec.EllipticCurvePublicKey) or pub.public_numbers() != (
        key.public_key().public_numbers()
    ):
        raise KeyMaterialError(
            f"the TSA key does not match the certificate {what}",
            hint="pass the private key that belongs to --tsa-cert",
        )

    try:
        eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage)
    except x509.ExtensionNotFound:
        raise KeyMaterialError(
            f"{what} has no extendedKeyUsage; RFC 3161 needs timeStamping, critical",
            hint=_IMPORT_HINT,
        ) from None
    except ValueError as exc:  # e.g. a duplicated extension
        raise KeyMaterialError(
            f"{what} has malformed extensions: {exc}", hint=_IMPORT_HINT
        ) from exc
    if not eku.critical:
        raise KeyMaterialError(
            f"{what}: the extendedKeyUsage extension is not critical (RFC 3161 §2.3)",
            hint=_IMPORT_HINT,
        )
    purposes = list(eku.value)
    if purposes != [ExtendedKeyUsageOID.TIME_STAMPING]:
        raise KeyMaterialError(
            f"{what}: extendedKeyUsage must be exactly timeStamping, "
            f"not {', '.join(p.dotted_string for p in purposes) or 'empty'}",
            hint=_IMPORT_HINT,
        )
    if _is_ca(cert):
        raise KeyMaterialError(
            f"{what} is a CA certificate; a TSA certificate must have CA:FALSE",
            hint=_IMPORT_HINT,
        )
    try:
        ku = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        pass
    else:
        if not (ku.digital_signature or ku.content_commitment):
            raise KeyMaterialError(
                f"{what}: keyUsage allows neither digitalSignature nor nonRepudiation",
                hint=_IMPORT_HINT,
            )

    _check_chain(cert, chain, now)


def _check_chain(
    cert: x509.Certificate, chain: Sequence[x509.Certificate], now: datetime | None
) -> None:
    path = [cert, *chain]
    for c in path:
        if now is not None and not (c.not_valid_before_utc <= now <= c.not_valid_after_utc):
            state = "expired" if now > c.not_valid_after_utc else "not yet valid"
            raise KeyMaterialError(
                f"{_describe(c)} is {state} (valid {c.not_valid_before_utc:%Y-%m-%d} "
                f"to {c.not_valid_after_utc:%Y-%m-%d})",
                hint="renew the certificate, then import it again",
            )
    for child, parent in itertools.pairwise(path):
        if not _is_ca(parent):
            raise KeyMaterialError(
                f"{_describe(parent)} in the chain is not a CA certificate",
                hint="--tsa-chain must list the TSA certificate's issuers, nearest first",
            )
        try:
            child.verify_directly_issued_by(parent)
        except (ValueError, TypeError, InvalidSignature) as exc:
            raise KeyMaterialError(
                f"{_describe(child)} is not issued by {_describe(parent)}",
                hint="--tsa-chain must list the TSA certificate's issuers, nearest first, "
                "up to the root",
            ) from exc
    top = path[-1]
    try:
        top.verify_directly_issued_by(top)
    except (ValueError, TypeError, InvalidSignature) as exc:
        raise KeyMaterialError(
            f"the chain ends at {_describe(top)}, which is not a self-signed root",
            hint="add the missing issuers, up to and including the root, to --tsa-chain",
        ) from exc


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        bc = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        return False
    return bc.ca


def _describe(cert: x509.Certificate) -> str:
    return f"certificate '{cert.subject.rfc4514_string()}'"


def _utc(now: datetime | None) -> datetime:
    if now is None:
        return datetime.now(UTC)
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    return now.astimezone(UTC)


def _refuse_overwrite(directory: Path, names: Sequence[str]) -> None:
    existing = [n for n in names if (directory / n).exists()]
    if existing:
        raise ConflictError(
            f"{directory} already holds a TSA ({', '.join(existing)})",
            hint="keep it, or move the directory away before creating a new TSA",
        )


def _write_layout(directory: Path, creds: TsaCredentials) -> None:
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    write_secret(directory / TSA_KEY, key_pem(creds.key))
    write_public(directory / TSA_CERT, certs_pem([creds.cert]))
    write_public(directory / TSA_CHAIN, certs_pem([creds.cert, *creds.chain]))
    write_public(directory / ROOT_CERT, certs_pem([creds.root()]))


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError as exc:
        raise NotFoundError(f"{path} does not exist", hint="check the path") from exc
    except OSError as exc:
        raise KeyMaterialError(
            f"cannot read {path}: {exc.strerror}", hint="check the path"
        ) from exc


def _read_certs(path: Path) -> list[x509.Certificate]:
    data = _read_bytes(path)
    try:
        if b"-----BEGIN" in data:
            return x509.load_pem_x509_certificates(data)
        return [x509.load_der_x509_certificate(data)]
    except ValueError as exc:
        raise KeyMaterialError(
            f"{path} holds no readable X.509 certificate",
            hint="pass PEM or DER certificates",
        ) from exc


def _read_one_cert(path: Path) -> x509.Certificate:
    certs = _read_certs(path)
    if len(certs) != 1:
        raise KeyMaterialError(
            f"{path} holds {len(certs)} certificates, expected the TSA certificate alone",
            hint="put the issuers in the chain file (--tsa-chain)",
        )
    return certs[0]


def _read_key(path: Path) -> object:
    data = _read_bytes(path)
    try:
        if b"-----BEGIN" in data:
            return serialization.load_pem_private_key(data, password=None)
        return serialization.load_der_private_key(data, password=None)
    except TypeError as exc:
        raise KeyMaterialError(
            f"{path} is encrypted",
            hint=f"decrypt it first: `openssl pkey -in {path} -out tsa-key.pem`",
        ) from exc
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise KeyMaterialError(
            f"{path} holds no readable private key",
            hint="pass a PEM or DER private key (PKCS#8 or SEC1)",
        ) from exc
