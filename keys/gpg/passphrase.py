"""The own secret key's passphrase: what gpg says about it, and how a keyring asks for one.

GnuPG reports a locked key in its status lines (GnuPG doc/DETAILS):
``BAD_PASSPHRASE`` and ``MISSING_PASSPHRASE``, or, in GnuPG 2.2/2.4 with
loopback or no pinentry, only ``ERROR pkdecrypt_failed <code>`` (decryption)
or ``FAILURE sign <code>`` (signing), whose libgpg-error code says why:
``GPG_ERR_BAD_PASSPHRASE`` (11), ``GPG_ERR_NO_PIN_ENTRY`` (85),
``GPG_ERR_CANCELED`` (99), ``GPG_ERR_NO_PASSPHRASE`` (177).
``NO_SECKEY`` and ``DECRYPTION_FAILED`` follow such a failure as well, so a
passphrase failure is looked for first (:func:`raise_for_passphrase`): a wrong
passphrase is never reported as "not encrypted to any of your keys".

A :class:`~keys.gpg.Keyring` given an :data:`Ask` calls it with a
:class:`PassphraseRequest` when gpg needs the passphrase or refused the one it
got, and runs the operation again, at most :data:`MAX_TRIES` times. The
passphrase then reaches gpg through a pipe (``--pinentry-mode loopback
--passphrase-fd N``), never argv or the environment.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from keys.errors import KeyMaterialError, VerificationError
from keys.gpg.status import status_values

__all__ = [
    "MAX_TRIES",
    "PASSPHRASE_HINT",
    "Ask",
    "BadPassphraseError",
    "PassphraseError",
    "PassphraseRequest",
    "PassphraseRequiredError",
    "check_secret_key_used",
    "named",
    "passphrase_failure",
    "raise_for_passphrase",
    "usable_passphrase",
]

MAX_TRIES = 3

#: Where a passphrase can come from (docs/keys.md#passphrases).
PASSPHRASE_HINT = (
    "run it on a terminal, or set CERTMAIL_PASSPHRASE_FILE=FILE, or pass --passphrase-fd N"  # noqa: S105
)

# libgpg-error codes (the low 16 bits of gpg's error values).
_BAD = {11}  # GPG_ERR_BAD_PASSPHRASE
_MISSING = {85, 99, 177}  # GPG_ERR_NO_PIN_ENTRY, GPG_ERR_CANCELED, GPG_ERR_NO_PASSPHRASE


class PassphraseError(KeyMaterialError):
    """The own secret key is locked: its passphrase is missing or wrong (exit 1)."""


class PassphraseRequiredError(PassphraseError):
    """The secret key needs its passphrase and none was given (none could be asked for)."""

    def __init__(self, message: str = "your OpenPGP key needs its passphrase", *,
                 hint: str | None = PASSPHRASE_HINT) -> None:  # fmt: skip
        super().__init__(message, hint=hint)


class BadPassphraseError(PassphraseError):
    """gpg refused the passphrase given for the secret key."""

    def __init__(self, message: str = "wrong passphrase for your OpenPGP key", *,
                 hint: str | None = PASSPHRASE_HINT) -> None:  # fmt: skip
        super().__init__(message, hint=hint)


@dataclass(frozen=True)
class PassphraseRequest:
    """What an :data:`Ask` is told: whose key, which try, and whether the last one was wrong."""

    key: str  # "Name <addr> (key id)", or "your OpenPGP key"
    attempt: int  # 1 .. MAX_TRIES
    wrong: bool  # the previous passphrase was refused


#: Returns the passphrase, or raises a :class:`PassphraseError` (e.g. no terminal,
#: a one-shot source already used).
Ask = Callable[[PassphraseRequest], str]


def _codes(stderr: str) -> set[int]:
    """The libgpg-error codes of the ``ERROR`` and ``FAILURE`` status lines."""
    codes: set[int] = set()
    for keyword in ("ERROR", "FAILURE"):
        for value in status_values(stderr, keyword):
            fields = value.split()
            if len(fields) >= 2 and fields[1].isdigit():
                codes.add(int(fields[1]) & 0xFFFF)
    return codes


def passphrase_failure(stderr: str) -> type[PassphraseError] | None:
    """:class:`BadPassphraseError` or :class:`PassphraseRequiredError` if gpg's status
    lines say the secret key stayed locked, else ``None``."""
    codes = _codes(stderr)
    if status_values(stderr, "BAD_PASSPHRASE") or codes & _BAD:
        return BadPassphraseError
    if status_values(stderr, "MISSING_PASSPHRASE") or codes & _MISSING:
        return PassphraseRequiredError
    return None


def raise_for_passphrase(stderr: str, key: str = "your OpenPGP key") -> None:
    """Raise the passphrase error gpg's status lines show, naming ``key``; else return."""
    failure = passphrase_failure(stderr)
    if failure is BadPassphraseError:
        raise BadPassphraseError(f"wrong passphrase for {key}")
    if failure is PassphraseRequiredError:
        raise PassphraseRequiredError(f"{key} needs its passphrase")


def named(error: PassphraseError, key: str, *, tries: int = 0) -> PassphraseError:
    """``error`` again, its message naming ``key`` (and the number of ``tries``)."""
    after = f" ({tries} tries)" if tries else ""
    hint = "check your passphrase and run the command again" if tries else error.hint
    if isinstance(error, BadPassphraseError):
        return BadPassphraseError(f"wrong passphrase for {key}{after}", hint=hint)
    return PassphraseRequiredError(f"{key} needs its passphrase{after}", hint=hint)


def usable_passphrase(passphrase: str) -> None:
    """Raise unless ``passphrase`` can go to gpg as one line (not empty, no CR, LF or NUL)."""
    if passphrase == "":
        raise PassphraseRequiredError("an empty passphrase")
    if any(c in passphrase for c in "\r\n\0"):
        raise BadPassphraseError("a passphrase cannot contain line breaks or NUL")


def check_secret_key_used(stderr: str, key: str = "your OpenPGP key") -> None:
    """Raise if a decryption failed for want of a secret key or of its passphrase.

    The passphrase comes first: gpg adds ``NO_SECKEY`` (for the other
    recipients' keys) and ``DECRYPTION_FAILED`` to a passphrase failure too.
    Only when no passphrase failure and no ``DECRYPTION_KEY`` is there is the
    message not encrypted to any of your keys (exit 3, as before).
    """
    raise_for_passphrase(stderr, key)
    if status_values(stderr, "NO_SECKEY") and not status_values(stderr, "DECRYPTION_KEY"):
        errors = (v.split() for v in status_values(stderr, "ERROR"))
        failed = [f[1] for f in errors if len(f) > 1 and f[0] == "pkdecrypt_failed"]
        if failed:  # a secret key was there, but gpg-agent failed with it (not a passphrase)
            raise KeyMaterialError(
                f"gpg-agent could not decrypt with {key} (gpg error {failed[0]})",
                hint="run `gpgconf --kill gpg-agent` and try again",
            )
        raise VerificationError(
            "not encrypted to any of your keys", hint="certmail keys list --secret"
        )
