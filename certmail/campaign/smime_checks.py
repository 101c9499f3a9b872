"""An S/MIME campaign's checks (docs/campaigns.md "S/MIME campaigns"): the sender's S/MIME
key and certificate, and each recipient's certificate as ``send --smime`` checks it, at
``campaign create`` and again once per ``campaign send`` run."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

from keys.errors import Error, NotFoundError

from .recipients import Problem, Row

if TYPE_CHECKING:
    from ..api import Certmail

__all__ = ["check_smime_sender", "smime_checks"]

IMPORT_HINT = "certmail keys smime import-cert FILE.pem (the recipient's certificate)"


def _cert_hint(message: str, email: str) -> str:
    """What to do about a recipient's certificate: a revoked one needs a new certificate,
    one that cannot be checked for revocation the CA's current CRL."""
    if _crl_trouble(message):
        return "give the CA's current CRL with --smime-crl FILE"
    if "revoked" in message:
        return f"ask {email} for their current certificate, then {IMPORT_HINT}"
    return IMPORT_HINT


def _crl_trouble(message: str) -> bool:
    """The CRL given cannot answer (none of the CA's, stale, not signed by it): a problem
    of the run's CRL file, not of the recipient, so never a reason for a pickup link."""
    return "CRL file holds no CRL" in message or "CRL given with --smime-crl" in message


def smime_checks(
    cm: Certmail, rows: list[Row], *, sealed: bool = False, pickup_if_no_key: bool = False
) -> tuple[dict[str, str], list[Problem], list[str]]:
    """Each recipient's S/MIME certificate, as ``send --smime`` checks it (in the home's
    store, valid, for encryption, chaining to the CA bundle and, with a CRL
    (``--smime-crl``), not revoked: ``openssl verify``, several at a time); the
    certificates' SHA-256 fingerprints by address, the problems, and with
    ``pickup_if_no_key`` the recipients without a usable certificate (a pickup link,
    not a problem; a CRL that cannot answer stays a problem).

    ``sealed``: also the recipient's OpenPGP key (docs/sealed.md: the acknowledgement
    that releases a sealed S/MIME message's content is OpenPGP-signed)."""
    import tempfile

    from ..smime.certs import fingerprint
    from ..smime.sealing import recipient_certificates

    ctx, keyring, home = cm.smime, cm.keyring, cm.settings.home
    find = ctx.store.certificate_index()  # the store parsed once, not once per row

    def lookup(r: Row) -> tuple[Row, str | Problem]:
        base = home / "tmp"
        base.mkdir(parents=True, exist_ok=True, mode=0o700)
        with tempfile.TemporaryDirectory(prefix="c", dir=base) as work:
            try:
                (cert,) = recipient_certificates(ctx, [r.email], Path(work), find)
            except Error as e:
                return r, Problem(
                    r.line,
                    f"no usable S/MIME certificate for {r.email}: {e.message}",
                    _cert_hint(e.message, r.email),
                )
        if sealed:
            try:
                keyring.key_for(r.email)
            except Error as e:
                return r, Problem(
                    r.line,
                    f"sealed delivery needs {r.email}'s OpenPGP key, also with --smime "
                    f"(the acknowledgement that releases the content is OpenPGP-signed): "
                    f"{e.message}",
                    f"certmail keys import FILE (then keys trust), or keys locate {r.email}",
                )
        return r, fingerprint(cert)

    keys: dict[str, str] = {}
    problems = []
    pickup: list[str] = []
    if rows and sealed:
        keyring.list_keys()
    with ThreadPoolExecutor(4) as pool:
        for r, got in pool.map(lookup, rows):
            if isinstance(got, Problem) and pickup_if_no_key and not _crl_trouble(got.message):
                pickup.append(r.email.lower())
            elif isinstance(got, Problem):
                problems.append(got)
            else:
                keys[r.email.lower()] = got
    return keys, problems, pickup


def check_smime_sender(cm: Certmail) -> None:
    """``--smime``: the home has an S/MIME key and a certificate for signing as the sender."""
    from ..smime.certs import check_certificate

    store = cm.smime.store
    own = store.own_certificate()
    if own is None or not store.key_path.exists():
        raise NotFoundError(
            "you have no S/MIME key; nothing was created or sent",
            hint="certmail keys smime import FILE.p12",
        )
    check_certificate(own, "sign", address=cm.settings.email or "")
