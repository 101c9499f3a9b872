"""The S/MIME keys of one certmail home: ``HOME/smime`` (docs/smime.md#keys).

- ``key.pem``: your private key, PKCS #8, encrypted with the passphrase the
  PKCS #12 file had (unencrypted only when that file had none), mode 0600;
- ``cert.pem``: your certificate, then the issuers the PKCS #12 file carried;
- ``certs/<sha256>.pem``: your correspondents' certificates, one per file.

The directory is 0700. Nothing here trusts a certificate: the chain is checked
against the CA bundle when a certificate is imported, used to encrypt, or seen
on a signature (:mod:`certmail.smime.openssl`). The passphrase comes from a
:data:`keys.gpg.Ask` (the same sources as OpenPGP's: ``--passphrase-fd``,
``CERTMAIL_PASSPHRASE_FILE``, the CLI's prompt), asked at most
:data:`keys.gpg.MAX_TRIES` times.
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import pkcs12

from keys.errors import KeyMaterialError, MalformedError, NotFoundError
from keys.gpg import (
    MAX_TRIES,
    Ask,
    BadPassphraseError,
    PassphraseRequest,
    PassphraseRequiredError,
)

from ..mime import same_address
from .certs import CertInfo, emails, fingerprint, key_matches, load_certificates, to_pem

__all__ = ["OwnKey", "SmimeStore"]

MAX_P12 = 1 << 20  # bytes
IMPORT_HINT = "certmail keys smime import FILE.p12"


@dataclass(frozen=True)
class OwnKey:
    """Your S/MIME private key, its certificate and the issuers that came with it."""

    key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
    cert: x509.Certificate
    chain: tuple[x509.Certificate, ...]


def _unlock(what: str, attempt: Callable[[bytes | None], Any], ask: Ask | None) -> tuple[Any, str]:
    """``attempt(None)`` or with an empty passphrase, else ``attempt(passphrase)`` asked up
    to MAX_TRIES times."""
    for none in (None, b""):
        try:
            return attempt(none), ""
        except (ValueError, TypeError):
            pass
    if ask is None:
        raise PassphraseRequiredError(f"{what} needs its passphrase")
    wrong = False
    for n in range(1, MAX_TRIES + 1):
        passphrase = ask(PassphraseRequest(what, n, wrong))
        try:
            return attempt(passphrase.encode("utf-8")), passphrase
        except (ValueError, TypeError):
            wrong = True
    raise BadPassphraseError(f"wrong passphrase for {what}")


class SmimeStore:
    """``HOME/smime``: your key and certificate, and your correspondents' certificates."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory

    @property
    def key_path(self) -> Path:
        return self.dir / "key.pem"

    @property
    def cert_path(self) -> Path:
        return self.dir / "cert.pem"

    @property
    def certs_dir(self) -> Path:
        return self.dir / "certs"

    def _ensure(self) -> None:
        self.certs_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(self.dir, 0o700)
        os.chmod(self.certs_dir, 0o700)

    # -- your own key ----------------------------------------------------------------

    def import_p12(self, data: bytes, name: str, ask: Ask | None) -> CertInfo:
        """Keep the key and certificate of a PKCS #12 file (RFC 7292); replaces the old ones."""
        if len(data) > MAX_P12:
            raise MalformedError(f"{name} is too large for a PKCS #12 file")
        what = f"the PKCS #12 file {name}"

        _check_pfx(data, name)
        (key, cert, extra), passphrase = _unlock(
            what, lambda pw: pkcs12.load_key_and_certificates(data, pw), ask
        )
        if key is None or cert is None:
            raise KeyMaterialError(f"{name} holds no private key with its certificate")
        if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
            raise KeyMaterialError(f"{name}: only RSA and EC keys are supported for S/MIME")
        if not key_matches(cert, key):
            raise KeyMaterialError(f"{name}: the private key does not belong to the certificate")
        if not emails(cert):
            raise KeyMaterialError(
                f"{name}: the certificate names no email address (SubjectAltName rfc822Name)"
            )
        enc: serialization.KeySerializationEncryption = (
            serialization.BestAvailableEncryption(passphrase.encode("utf-8"))
            if passphrase
            else serialization.NoEncryption()
        )
        pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, enc)
        self._ensure()
        _write_private(self.key_path, pem)
        _write_private(self.cert_path, to_pem([cert, *extra]))
        return CertInfo.of(cert, own=True)

    def own_certificate(self) -> x509.Certificate | None:
        if not self.cert_path.exists():
            return None
        return load_certificates(self.cert_path.read_bytes(), str(self.cert_path))[0]

    def own_key(self, ask: Ask | None) -> OwnKey:
        """Your key (unlocked with its passphrase), certificate and chain; NotFoundError if none."""
        if not self.key_path.exists() or not self.cert_path.exists():
            raise NotFoundError("you have no S/MIME key", hint=IMPORT_HINT)
        pem = self.key_path.read_bytes()
        key, _ = _unlock(
            "your S/MIME key",
            lambda pw: serialization.load_pem_private_key(pem, pw),
            ask,
        )
        certs = load_certificates(self.cert_path.read_bytes(), str(self.cert_path))
        return OwnKey(key, certs[0], tuple(certs[1:]))

    # -- correspondents ----------------------------------------------------------------

    def import_certs(self, certs: list[x509.Certificate]) -> list[CertInfo]:
        """Keep each certificate (already checked by the caller) under ``certs/``."""
        self._ensure()
        out = []
        for cert in certs:
            path = self.certs_dir / f"{fingerprint(cert)}.pem"
            _write_private(path, to_pem([cert]), mode=0o644)
            out.append(CertInfo.of(cert))
        return out

    def correspondents(self) -> list[x509.Certificate]:
        if not self.certs_dir.is_dir():
            return []
        found = []
        for p in sorted(self.certs_dir.glob("*.pem")):
            found += load_certificates(p.read_bytes(), str(p))[:1]
        return found

    def list(self) -> list[CertInfo]:
        own = self.own_certificate()
        mine = [CertInfo.of(own, own=True)] if own is not None else []
        return mine + [CertInfo.of(c) for c in self.correspondents()]

    def certificate_for(
        self, addr: str, *, now: datetime.datetime | None = None
    ) -> x509.Certificate:
        """The correspondent's certificate naming ``addr`` exactly, valid now (the latest)."""
        named = [c for c in self.correspondents() if any(same_address(addr, e) for e in emails(c))]
        return _current(addr, named, now)

    def certificate_index(self) -> Callable[[str], x509.Certificate]:
        """:meth:`certificate_for` over one parse of the store, for many lookups (a
        campaign's rows): each address's certificates found in a dict, not by reading
        and parsing every certificate file again for each address."""
        by_addr: dict[str, list[x509.Certificate]] = {}
        for c in self.correspondents():
            for e in emails(c):
                by_addr.setdefault(e.lower(), []).append(c)
        return lambda addr: _current(addr, by_addr.get(addr.lower(), []), None)


def _current(
    addr: str, named: list[x509.Certificate], now: datetime.datetime | None
) -> x509.Certificate:
    """Of the certificates naming ``addr``, the one valid now that expires last."""
    now = now or datetime.datetime.now(datetime.UTC)
    current = [c for c in named if c.not_valid_before_utc <= now <= c.not_valid_after_utc]
    if not current:
        state = "only expired or not yet valid ones" if named else "none"
        raise NotFoundError(
            f"no S/MIME certificate for {addr} ({state} in your keyring)",
            hint="certmail keys smime import-cert FILE.pem (the recipient's certificate)",
        )
    return max(current, key=lambda c: c.not_valid_after_utc)


def _check_pfx(data: bytes, name: str) -> None:
    """MalformedError unless ``data`` is a DER PFX (RFC 7292 §4), before any passphrase."""
    from asn1crypto import pkcs12 as asn1_pkcs12

    try:
        pfx = asn1_pkcs12.Pfx.load(data, strict=True)
        version = pfx["version"].native
        pfx["auth_safe"]["content_type"].native  # noqa: B018 - parses it
    except (ValueError, TypeError, KeyError):
        raise MalformedError(f"{name} is not a PKCS #12 file (.p12 / .pfx)") from None
    if version not in (3, "v3"):
        raise MalformedError(f"{name}: PKCS #12 version {version} is not supported")


def _write_private(path: Path, data: bytes, *, mode: int = 0o600) -> None:
    """Write ``data`` to ``path`` atomically, created with ``mode``, fsynced."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.chmod(tmp, mode)
    os.replace(tmp, path)
