"""What ``keys import`` refuses or names before and after GnuPG imports a key file.

- Secret keys (RFC 9580 §5.5.3) are not imported unless the caller asks for them:
  a key file from a correspondent should be public, and a secret key slipped into
  one would silently become an identity of this profile.
- A file whose key packets are all v6 (RFC 9580 §5.5.2.3) is "not supported by
  the installed GnuPG" when GnuPG imported nothing from it (GnuPG 2.2 rejects
  them as "unknown version"), not "no OpenPGP key found".
- A revoked or expired key is named as such (:func:`key_state`, :func:`require_usable`)
  on import, trust and encryption.
"""

from __future__ import annotations

from keys.errors import Error, MalformedError
from keys.gpg.colons import KeyInfo
from keys.gpg.packets import KeyFileFacts, scan_keys

__all__ = [
    "UNUSABLE",
    "SecretKeyRefused",
    "UnusableKeyError",
    "check_before_import",
    "key_state",
    "nothing_imported",
    "require_usable",
]

#: Validity words of a key nobody can encrypt to or certify (GnuPG doc/DETAILS).
UNUSABLE = ("revoked", "expired")


class SecretKeyRefused(Error):
    """The key file holds secret keys and the caller did not ask to import them."""


class UnusableKeyError(Error):
    """The key is revoked or expired: it cannot be trusted or encrypted to."""


def check_before_import(data: bytes, *, secret: bool) -> KeyFileFacts:
    """The facts of the key file; SecretKeyRefused when it holds secret keys and
    ``secret`` is false."""
    facts = scan_keys(data)
    if facts.secret and not secret:
        raise SecretKeyRefused(
            "the file holds a secret key; keys import takes correspondents' public keys",
            hint="to import your own secret key on purpose: certmail keys import --secret FILE",
        )
    return facts


def nothing_imported(facts: KeyFileFacts, gpg_version: str) -> Error:
    """The error for a file GnuPG imported no key from."""
    if facts.versions and facts.versions <= {5, 6}:
        kinds = " and ".join(f"v{v}" for v in sorted(facts.versions))
        return MalformedError(
            f"the file holds an OpenPGP {kinds} key (RFC 9580), which is not supported by "
            f"the installed GnuPG {gpg_version}".rstrip(),
            hint="ask its owner for a v4 key (e.g. sq key generate --profile rfc4880), "
            "or install a GnuPG that reads v6 keys",
        )
    return MalformedError(
        "no OpenPGP key found in the input",
        hint="export the key with gpg --export --armor ADDR and import that file",
    )


def key_state(key: KeyInfo) -> str | None:
    """The state of a revoked or expired key ("revoked", "expired on YYYY-MM-DD"), else None."""
    if key.validity == "revoked":
        return "revoked"
    if key.validity == "expired":
        return f"expired on {key.expires:%Y-%m-%d}" if key.expires else "expired"
    return None


def require_usable(key: KeyInfo, addr: str | None = None) -> None:
    """UnusableKeyError naming ``key`` when it is revoked or expired."""
    state = key_state(key)
    if state is None:
        return
    who = addr or (key.emails[0] if key.emails else None)
    of = f" for {who}" if who else ""
    ask = f"ask {who} for a current key" if who else "ask its owner for a current key"
    raise UnusableKeyError(
        f"the key {key.fingerprint}{of} is {state}",
        hint=f"{ask}, then certmail keys import FILE",
    )
