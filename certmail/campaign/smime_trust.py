"""The CA bundle and the CRL an S/MIME campaign checks its recipients' certificates with
(docs/campaigns.md "The CA bundle and the CRL of an S/MIME campaign").

``campaign create`` checks with the home's (``--smime-ca FILE``, ``CERTMAIL_SMIME_CA``
or ``smime_ca``, else the system store; ``--smime-crl FILE``) and keeps them in the
campaign's spec (:func:`campaign_trust`): the CA bundle as a copy in
``HOME/campaigns/NAME/smime-ca.pem`` with its SHA-256 (what was trusted at create is
what every run trusts), the CRL by its path (a CRL is replaced as the CA issues new
ones, and a revocation after ``create`` must be seen by the next run).
:func:`use_campaign_trust` sets a run's context from them: the campaign's CA bundle (a
run naming another is refused before anything is sent), the CRL given to this run,
else the one ``create`` was given, read again from its path.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from keys.errors import Error

if TYPE_CHECKING:
    from ..api import Certmail

__all__ = ["CA_NAME", "campaign_trust", "use_campaign_trust"]

#: The campaign's copy of the CA bundle ``create`` checked with, in its directory.
CA_NAME = "smime-ca.pem"


def _sha256(path: Path) -> str:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError as e:
        raise Error(
            f"cannot read the S/MIME CA bundle {path}: {e.strerror}; nothing was created or sent",
            hint="give --smime-ca an existing PEM file",
        ) from None


def campaign_trust(cm: Certmail, directory: Path) -> dict[str, Any]:
    """What ``create`` checked the certificates with, for the spec: ``ca`` (the copy's
    ``path``, its ``sha256`` and where it was copied ``from``; None: the system store) and
    ``crl`` (the CRL file's absolute path; None: no revocation check)."""
    ctx = cm.smime
    ca = None
    if ctx.ca is not None:
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        copy = directory / CA_NAME
        shutil.copyfile(ctx.ca, copy)
        ca = {"path": str(copy), "sha256": _sha256(copy), "from": str(ctx.ca.resolve())}
    crl = str(ctx.crl.expanduser().resolve()) if ctx.crl is not None else None
    return {"ca": ca, "crl": crl}


def use_campaign_trust(cm: Certmail, name: str, spec: dict[str, Any]) -> None:
    """Set this run's CA bundle and CRL (``cm.smime``) to campaign ``name``'s (module
    docstring); Error, before anything is sent, when the run names another CA bundle, the
    campaign's copy changed, or the CRL ``create`` was given is gone and none is given."""
    trust = spec.get("smime_trust") or {}
    if "ca" not in trust:  # a campaign made before its trust was kept: the run's own
        return
    ctx = cm.smime
    ctx.ca = _campaign_ca(name, trust["ca"], ctx.ca)
    if ctx.crl is None and trust.get("crl"):
        ctx.crl = Path(trust["crl"])
        if not ctx.crl.is_file():
            raise Error(
                f"campaign {name} checks revocation with the CRL it was created with, "
                f"{ctx.crl}, which is gone; nothing was sent",
                hint=f"certmail campaign send {name} --smime-crl FILE (the CA's current CRL)",
            )


def _campaign_ca(name: str, ca: dict[str, Any] | None, given: Path | None) -> Path | None:
    """The campaign's CA bundle (None: the system store), checked against the run's."""
    if ca is None:
        if given is not None:
            raise Error(
                f"campaign {name} was created to trust the system's CA store, not {given}; "
                "nothing was sent",
                hint=f"certmail campaign send {name} without --smime-ca (and without "
                "CERTMAIL_SMIME_CA or smime_ca), or create a campaign with --smime-ca FILE",
            )
        return None
    copy = Path(ca["path"])
    if not copy.is_file() or _sha256(copy) != ca["sha256"]:
        raise Error(
            f"campaign {name}'s copy of its S/MIME CA bundle ({copy}) changed since it was "
            "created; nothing was sent",
            hint="create the campaign again",
        )
    if given is not None and _sha256(given) != ca["sha256"]:
        raise Error(
            f"campaign {name} was created to trust the CA bundle {ca['from']} (SHA-256 "
            f"{ca['sha256'][:16]}…); {given} is another; nothing was sent",
            hint=f"certmail campaign send {name} without --smime-ca (the campaign's copy is "
            "used), or create a new campaign to trust other CAs",
        )
    return copy
