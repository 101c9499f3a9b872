"""The relay's TLS certificate: created by ``notary init`` when none is configured.

A self-signed ECDSA P-256 certificate for the relay's domain. Clients do not
need a CA: ``GET /v1/relay`` names the certificate and its SHA-256, and the
certmail client pins it.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import ipaddress
import os
import ssl
from pathlib import Path

from keys.errors import Error, KeyMaterialError
from notary.config import NotaryConfig


def ensure_relay_certificate(cfg: NotaryConfig, *, now: _dt.datetime | None = None) -> None:
    """Create the relay's certificate and key unless both exist."""
    cert, key = cfg.relay_cert_path, cfg.relay_key_path
    if cert.exists() and key.exists():
        return
    if cert.exists() != key.exists():
        raise KeyMaterialError(
            f"the relay has only one of {cert} and {key}",
            hint="restore the missing file, or remove both to create a new certificate",
        )
    generate_certificate(cert, key, cfg.relay_hostname, now=now)


def generate_certificate(
    cert_path: Path, key_path: Path, hostname: str, *, now: _dt.datetime | None = None
) -> None:
    """Write a self-signed certificate for ``hostname`` (and localhost), valid ten years."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = now or _dt.datetime.now(_dt.UTC)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostname[:64] or "localhost")])
    sans: list[x509.GeneralName] = [
        x509.DNSName("localhost"),
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
    ]
    try:
        sans.insert(0, x509.IPAddress(ipaddress.ip_address(hostname)))
    except ValueError:
        if hostname and hostname != "localhost":
            sans.insert(0, x509.DNSName(hostname))
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _dt.timedelta(minutes=5))
        .not_valid_after(now + _dt.timedelta(days=3650))
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        f.flush()
        os.fsync(f.fileno())
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def certificate_sha256(pem: str) -> str:
    """Lowercase hex SHA-256 of a PEM certificate's DER bytes."""
    return hashlib.sha256(ssl.PEM_cert_to_DER_cert(pem)).hexdigest()


def server_context(cfg: NotaryConfig) -> ssl.SSLContext:
    """The TLS context the submission server offers with STARTTLS (TLS 1.2+)."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        ctx.load_cert_chain(cfg.relay_cert_path, cfg.relay_key_path)
    except (OSError, ssl.SSLError) as e:
        raise Error(
            f"cannot load the relay's TLS certificate {cfg.relay_cert_path}: {e}",
            hint="set relay_tls_cert and relay_tls_key in notary.toml",
        ) from None
    return ctx


def handshake_failure(error: BaseException) -> str:
    """One line saying why a client's TLS handshake failed (e.g. it rejected the certificate).

    aiosmtpd wraps the handshake's :class:`ssl.SSLError` in its own
    ``TLSSetupException``; the reason is the cause's (OpenSSL's) reason code.
    """
    cause = error.__cause__ or error
    reason = getattr(cause, "reason", None) or getattr(cause, "strerror", None) or str(cause)
    return str(reason or type(cause).__name__).lower().replace("_", " ")
