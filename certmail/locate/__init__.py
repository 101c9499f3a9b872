"""Finding a correspondent's OpenPGP key by address (docs/keys.md, "Finding keys").

Three sources, tried in this order unless the caller names some:

1. the Web Key Directory of the address's domain (:mod:`.wkd`): the domain
   publishes the key over HTTPS, so the key is labelled **domain-verified**;
2. a Verifying Key Server (:mod:`.vks`, ``CERTMAIL_KEYSERVER``), labelled
   **keyserver** (its owner confirmed the address to that server);
3. the Autocrypt state fed by received mail (:mod:`certmail.autocrypt`),
   labelled **tofu** (trust on first use: whoever sent that mail).

Whatever is found is vetted (:mod:`.admit`: exactly that address's user ID,
size-bounded, not secret) and imported with validity *unknown*: never
trusted; ``certmail keys trust`` is how a person trusts it. Each key's source is
recorded in ``HOME/peers.db`` (:mod:`.store`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from keys.errors import Error, NotFoundError, TemporaryError, VerificationError
from keys.gpg import Keyring

from . import vks, wkd
from .admit import admit
from .store import KeySource, get_peer, now_text, record_source

LABELS = {"wkd": "domain-verified", "keyserver": "keyserver", "autocrypt": "tofu"}
METHODS = ("wkd", "keyserver", "autocrypt")


@dataclass(frozen=True)
class Located:
    """A key found for ``addr`` and imported (untrusted), with where it came from."""

    addr: str
    fingerprints: list[str]
    source: str  # "wkd", "keyserver" or "autocrypt"
    label: str  # "domain-verified", "keyserver" or "tofu"
    url: str | None
    detail: str  # e.g. "advanced method", "prefer-encrypt=mutual"
    warnings: list[str] = field(default_factory=list)

    def describe(self) -> str:
        where = {"wkd": "the Web Key Directory", "keyserver": "the keyserver"}.get(
            self.source, "an Autocrypt header of mail received"
        )
        return f"{where} ({self.detail}; {self.label})"

    def to_json(self) -> dict[str, Any]:
        return {
            "addr": self.addr,
            "fingerprints": self.fingerprints,
            "source": self.source,
            "label": self.label,
            "url": self.url,
            "detail": self.detail,
            "trusted": False,
            "warnings": self.warnings,
        }


def locate(
    keyring: Keyring,
    home: Path,
    addr: str,
    *,
    methods: tuple[str, ...] = METHODS,
    keyserver: str | None = None,
    env: Mapping[str, str] | None = None,
) -> Located:
    """Find ``addr``'s key by ``methods`` in order; import the first one found.

    A source that fails or answers a refused key is skipped (its error is a
    warning of the result); when none finds a key, the first refusal is raised
    (:class:`VerificationError`: another address's key, too large, garbage), else
    the first network error (:class:`TemporaryError`), else :class:`NotFoundError`.
    """
    env = os.environ if env is None else env
    wkd.split_address(addr)  # an address at all, before any network
    keyserver = keyserver or env.get(vks.KEYSERVER_ENV) or None
    problems: list[Error] = []
    for method in methods:
        if method == "keyserver" and not keyserver:
            continue
        try:
            found = _try(method, keyring, home, addr, keyserver, env)
        except (VerificationError, TemporaryError) as e:
            problems.append(e)
            continue
        if found is not None:
            for fpr in found.fingerprints:
                record_source(
                    home, KeySource(fpr, addr, found.source, found.label, found.url, now_text())
                )
            return replace(found, warnings=[p.message for p in problems])
    refused = [p for p in problems if isinstance(p, VerificationError)]
    if refused or problems:
        raise (refused or problems)[0]
    tried = ", ".join(_tried(m, addr, env) for m in methods if m != "keyserver" or keyserver)
    raise NotFoundError(
        f"no key found for {addr} ({tried})",
        hint=f"ask {addr} for their key, then certmail keys import FILE",
    )


def _try(
    method: str,
    keyring: Keyring,
    home: Path,
    addr: str,
    keyserver: str | None,
    env: Mapping[str, str],
) -> Located | None:
    if method == "wkd":
        w = wkd.lookup(addr, env=env)
        if w is None:
            return None
        fprs = admit(keyring, w.data, addr, source=f"the Web Key Directory ({w.url})")
        return Located(addr, fprs, "wkd", LABELS["wkd"], w.url, f"{w.method} method")
    if method == "keyserver":
        assert keyserver is not None
        k = vks.lookup(keyserver, addr, env=env)
        if k is None:
            return None
        fprs = admit(keyring, k.data, addr, source=f"the keyserver ({k.url})")
        return Located(addr, fprs, "keyserver", LABELS["keyserver"], k.url, "VKS by-email")
    if method == "autocrypt":
        peer = get_peer(home, addr)
        if peer is None or peer.keydata is None:
            return None
        fprs = admit(keyring, peer.keydata, addr, source="the Autocrypt state")
        seen = peer.autocrypt_timestamp.isoformat() if peer.autocrypt_timestamp else "?"
        detail = f"header of {seen}, prefer-encrypt={peer.prefer_encrypt}"
        return Located(addr, fprs, "autocrypt", LABELS["autocrypt"], None, detail)
    raise Error(f"unknown key discovery method {method!r}")


def _tried(method: str, addr: str, env: Mapping[str, str]) -> str:
    """How a method appears in the not-found message (WKD may not have been asked)."""
    from .fetch import overrides

    domain = wkd.split_address(addr)[1]
    named = overrides(env).keys() & {domain, "openpgpkey." + domain}
    if method == "wkd" and wkd.special_use(domain) and not named:
        return "wkd not asked: special-use domain"
    return method


def missing(keyring: Keyring, addrs: list[str]) -> list[str]:
    """Those of ``addrs`` for which the keyring holds no key at all."""
    out = []
    for a in addrs:
        try:
            keyring.key_for(a)
        except NotFoundError:
            out.append(a)
    return out
