"""Choosing the key for an address or fingerprint from the keyring's listing.

Pure functions over :class:`~keys.gpg.colons.Listed` keys: the newest usable
key first; encryption only to a key that can encrypt and whose user id for the
address (or, by fingerprint, the key) is fully valid (GnuPG ``pgp`` trust
model), a revoked or expired key named as such; signing only with an own key
that can sign and is neither expired nor revoked. Each raises the error a person
can act on, with the next command.
"""

from __future__ import annotations

from collections.abc import Sequence

from keys.errors import Error, KeyMaterialError, NotFoundError
from keys.gpg.colons import FPR_RE, TRUSTED_VALIDITY, Listed, normalize_fingerprint
from keys.gpg.importing import UNUSABLE, require_usable
from keys.gpg.status import IMPORT_HINT

__all__ = ["encryption_key_of", "find_keys", "signing_key_of", "trusted_by_fingerprint"]

_USABLE = ("full", "ultimate", "unknown", "marginal", "never")


def find_keys(listed: Sequence[Listed], addr_or_fpr: str) -> list[Listed]:
    """Keys matching a fingerprint (or key id suffix) or an address, newest usable first."""
    query = normalize_fingerprint(addr_or_fpr)
    if FPR_RE.match(query):
        found = [k for k in listed if k.info.fingerprint.endswith(query)]
    else:
        addr = query.strip("<>").lower()
        found = [k for k in listed if addr in k.info.emails]
    found.sort(key=lambda k: (k.info.validity in _USABLE, k.info.created), reverse=True)
    return found


def encryption_key_of(found: Sequence[Listed], addr: str) -> str:
    """Fingerprint of the first of ``found`` (keys for ``addr``) that can encrypt and is valid."""
    addr_l = normalize_fingerprint(addr).strip("<>").lower()
    if not found:
        raise NotFoundError(f"no OpenPGP key for {addr}", hint=IMPORT_HINT)
    if all(k.info.validity in UNUSABLE for k in found):
        require_usable(found[0].info, addr)  # names the key and says revoked / expired
    capable = [k for k in found if "E" in k.capabilities and "D" not in k.capabilities]
    if not capable:
        states = ", ".join(sorted({k.info.validity for k in found}))
        raise KeyMaterialError(
            f"the key for {addr} cannot encrypt ({states})",
            hint=f"ask {addr} for a current key, then {IMPORT_HINT}",
        )
    for k in capable:
        validity = k.uid_validity.get(addr_l, k.info.validity)
        if FPR_RE.match(normalize_fingerprint(addr)):
            validity = k.info.validity
        if validity in TRUSTED_VALIDITY:
            return k.info.fingerprint
    fpr = capable[0].info.fingerprint
    raise Error(
        f"the key {fpr} for {addr} is not trusted; check its fingerprint with {addr}",
        hint=f"certmail keys trust {addr}",
    )


def signing_key_of(found: Sequence[Listed], addr: str) -> str:
    """Fingerprint of the first of ``found`` (own secret keys for ``addr``) that can sign."""
    usable = [
        k for k in found if "S" in k.capabilities and k.info.validity not in ("expired", "revoked")
    ]
    if not usable:
        raise NotFoundError(
            f"no secret key of your own for {addr}",
            hint="certmail init --email ADDR --name NAME",
        )
    return usable[0].info.fingerprint


def trusted_by_fingerprint(listed: Sequence[Listed], fpr: str) -> str:
    """The full fingerprint of the listed key ``fpr`` names, if it is fully valid."""
    query = normalize_fingerprint(fpr)
    match = [k for k in listed if k.info.fingerprint.endswith(query)]
    if not match:
        raise NotFoundError(f"no OpenPGP key {fpr}", hint=IMPORT_HINT)
    k = match[0]
    if k.info.validity not in TRUSTED_VALIDITY:
        raise Error(
            f"the key {k.info.fingerprint} is not trusted",
            hint=f"certmail keys trust {k.info.fingerprint}",
        )
    return k.info.fingerprint
