"""``openssl cms`` and ``openssl verify`` through a subprocess (OpenSSL 3).

``cryptography`` signs and encrypts CMS but does not verify signatures or
chains, and decrypts only AES-CBC EnvelopedData; these steps run the
``openssl`` program (Debian's package). Arguments are file names under a
private work directory; a passphrase never goes on the command line (it is
written to the program's stdin, ``-passin stdin``). Each run is bounded in
time. Failures are mapped from OpenSSL's messages to one clear
:class:`keys.errors.VerificationError` per cause (:func:`explain`). Signatures are
checked by :func:`keys.cms.verify_detached` (the one ``openssl cms -verify``), with
:func:`cms_trust`'s CA file and :func:`explain`'s words.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from keys.errors import Error, VerificationError

__all__ = ["TIMEOUT", "cms_trust", "crl_args", "explain", "run", "verify_chain"]

TIMEOUT = 120.0  # seconds per openssl run (a large message is decrypted in one)

# What OpenSSL says (its verify error strings, its CMS reason strings) -> what failed.
_CAUSES: tuple[tuple[tuple[str, ...], str, str | None], ...] = (
    (
        ("certificate has expired",),
        "the signer's S/MIME certificate has expired",
        "ask the sender for a current certificate",
    ),
    (("certificate is not yet valid",), "the signer's S/MIME certificate is not yet valid", None),
    (
        (
            "unable to get local issuer certificate",
            "self-signed certificate",
            "self signed certificate",
            "unable to get issuer certificate",
            "certificate signature failure",
        ),
        "the signer's S/MIME certificate does not chain to a trusted CA",
        "name the CA bundle with --smime-ca FILE or CERTMAIL_SMIME_CA (default: the system store)",
    ),
    (
        ("unsuitable certificate purpose", "unsupported certificate purpose", "invalid purpose"),
        "the signer's certificate is not for S/MIME signing (key usage or extended key usage)",
        None,
    ),
    (
        ("certificate revoked",),
        "the signer's S/MIME certificate is revoked (its CA's CRL lists it)",
        "do not trust this message's signature; ask the sender how they sign now",
    ),
    (
        ("unable to get certificate crl",),
        "the CRL file holds no CRL of the signer's CA: cannot tell whether it is revoked",
        "give the CA's current CRL with --smime-crl FILE",
    ),
    (
        ("crl has expired", "crl is not yet valid", "crl signature failure"),
        "the CRL given with --smime-crl is not current or not the CA's",
        "fetch the CA's current CRL",
    ),
    (
        ("digest failure", "content verify error", "signature failure", "verification failure"),
        "the S/MIME signature does not verify: the message was changed or the signature forged",
        None,
    ),
    (
        ("no recipient matches", "decrypt error", "no matching recipient"),
        "the message is not encrypted to your S/MIME key",
        "certmail keys smime list (the key the sender must have used)",
    ),
)


def openssl_binary() -> str:
    found = shutil.which("openssl")
    if found is None:
        raise Error(
            "the openssl program is not installed (S/MIME needs it)",
            hint="apt-get install openssl",
        )
    return found


def run(args: list[str], *, stdin: bytes = b"", what: str) -> subprocess.CompletedProcess[bytes]:
    """``openssl ARGS``; the finished process (any exit status), or Error when it cannot run."""
    try:
        return subprocess.run(
            [openssl_binary(), *args],
            input=stdin,
            capture_output=True,
            timeout=TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise Error(f"openssl took more than {TIMEOUT:.0f} s to {what}") from None
    except OSError as e:
        raise Error(f"cannot run openssl to {what}: {e.strerror or e}") from None


def explain(stderr: bytes, default: str) -> VerificationError:
    """The one error for OpenSSL's complaint: a known cause, else ``default`` and its last line."""
    text = stderr.decode("utf-8", "replace")
    low = text.lower()
    for needles, message, hint in _CAUSES:
        if any(n in low for n in needles):
            if "certificate verify error" in low and message.startswith("the S/MIME signature"):
                break  # the certificate failed for a reason not listed: said below
            return VerificationError(message, hint=hint)
    if "verify error:" in low:
        why = low.rsplit("verify error:", 1)[1].strip().splitlines()[0][:200]
        return VerificationError(f"the signer's S/MIME certificate does not verify ({why})")
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    last = lines[-1] if lines else "no detail"
    return VerificationError(f"{default} (openssl: {last[:200]})")


def ca_args(ca: Path | None) -> list[str]:
    """``-CAfile FILE``, or nothing: OpenSSL's default store (Debian: /etc/ssl/certs)."""
    return [] if ca is None else ["-CAfile", str(ca)]


def crl_args(crl: Path | None) -> list[str]:
    """``openssl verify``'s ``-crl_check -CRLfile FILE`` (the certificate against its CA's
    CRL), or nothing: no revocation checking without a CRL."""
    return [] if crl is None else ["-crl_check", "-CRLfile", str(crl)]


def cms_trust(ca: Path | None, crl: Path | None, workdir: Path) -> tuple[Path | None, bool]:
    """``openssl cms -verify``'s trust: the CA file and whether to ``-crl_check``; with a
    CRL (``cms`` has no ``-CRLfile``: its store reads CRLs from the CA file) the CA
    certificates and the CRLs in one file of ``workdir``."""
    if crl is None:
        return ca, False
    import ssl

    cafile = ca or Path(ssl.get_default_verify_paths().openssl_cafile)
    try:
        data = cafile.read_bytes().rstrip(b"\n") + b"\n" + crl.read_bytes()
    except OSError as e:
        raise Error(f"cannot read {e.filename}: {e.strerror}") from None
    both = workdir / "smime-trust.pem"
    both.write_bytes(data)
    return both, True


def verify_chain(
    cert: Path, ca: Path | None, *, untrusted: Path | None, crl: Path | None = None
) -> None:
    """Raise VerificationError unless ``cert`` chains to ``ca`` and is valid now.

    No ``-purpose``: OpenSSL's ``smimeencrypt`` asks for keyEncipherment, which
    an EC certificate (keyAgreement) lacks; the caller checks key usage itself
    (:func:`certmail.smime.certs.check_certificate`).
    """
    args = ["verify", *ca_args(ca), *crl_args(crl)]
    if untrusted is not None:
        args += ["-untrusted", str(untrusted)]
    r = run([*args, str(cert)], what="check a certificate chain")
    if r.returncode != 0:
        err = explain(r.stdout + r.stderr, "the S/MIME certificate does not verify")
        raise VerificationError(err.message.replace("the signer's", "the"), hint=err.hint)
