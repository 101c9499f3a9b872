"""An S/MIME campaign's checks at ``campaign create`` (docs/campaigns.md "S/MIME
campaigns"): the sender's S/MIME key and certificate, each recipient's certificate as
``send --smime`` checks it."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

from keys.errors import Error, NotFoundError

from .recipients import Problem, Row

if TYPE_CHECKING:
    from ..api import Certmail

__all__ = ["check_smime_sender", "smime_checks"]


def smime_checks(
    cm: Certmail, rows: list[Row], *, sealed: bool = False
) -> tuple[dict[str, str], list[Problem]]:
    """Each recipient's S/MIME certificate, as ``send --smime`` checks it (in the home's
    store, valid, for encryption, chaining to the CA bundle: ``openssl verify``, several
    at a time); the certificates' SHA-256 fingerprints by address, and the problems.

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
                    "certmail keys smime import-cert FILE.pem (the recipient's certificate)",
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
    if rows and sealed:
        keyring.list_keys()
    with ThreadPoolExecutor(4) as pool:
        for r, got in pool.map(lookup, rows):
            if isinstance(got, Problem):
                problems.append(got)
            else:
                keys[r.email.lower()] = got
    return keys, problems


def check_smime_sender(cm: Certmail, pickup_if_no_key: bool) -> None:
    """``--smime``: the home has an S/MIME key and a certificate for signing as the sender."""
    from ..smime.certs import check_certificate

    if pickup_if_no_key:
        raise Error(
            "--pickup-if-no-key does not go with --smime in a campaign yet; "
            "nothing was created or sent",
            hint="import the recipients' certificates (certmail keys smime import-cert), "
            "or send the recipients without one with certmail send --smime --pickup",
        )
    store = cm.smime.store
    own = store.own_certificate()
    if own is None or not store.key_path.exists():
        raise NotFoundError(
            "you have no S/MIME key; nothing was created or sent",
            hint="certmail keys smime import FILE.p12",
        )
    check_certificate(own, "sign", address=cm.settings.email or "")
