"""Admit a discovered key into the keyring: only the key of the address asked, untrusted.

A key found on the network or in a mail header is first imported into a
throw-away GnuPG home. It is refused (nothing enters the user's keyring) when
it is not OpenPGP, holds a secret key, holds no key, or holds any key without
a user ID whose address is exactly the one looked up (a server answering
another address's key). What passes is exported with only that address's user
IDs (``--export-filter keep-uid=mbox=ADDR``) and imported into the keyring
with validity *unknown*: nothing is certified here; ``certmail keys trust``
stays the only way to trust a key (docs/keys.md).
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

from keys.errors import Error, MalformedError, VerificationError
from keys.gpg import Keyring


class WrongKeyError(VerificationError):
    """The key offered is not the address's: it carries no user ID with that address."""


def admit(keyring: Keyring, data: bytes, addr: str, *, source: str) -> list[str]:
    """Import ``data``'s keys for ``addr`` into ``keyring``; the fingerprints imported.

    ``source`` names where the key came from, for the error messages.
    Raises :class:`WrongKeyError` or :class:`keys.errors.MalformedError`
    (garbage, no key); the keyring is unchanged when it raises.
    """
    return keyring.import_keys(vet(data, addr, source=source), secret=False)


def vet(data: bytes, addr: str, *, source: str) -> bytes:
    """``data`` reduced to its keys for ``addr`` (binary), or raise as :func:`admit` does."""
    want = addr.strip().lower()
    tmp = Path(tempfile.mkdtemp(prefix="cm-locate-"))
    try:
        tmp.chmod(0o700)
        scratch = Keyring(tmp / "g")
        try:
            fprs = scratch.import_keys(data, secret=False)
        except Error as e:  # garbage, no key, a secret key, a v6 key GnuPG cannot read
            raise MalformedError(f"{source} answered no usable key: {e.message}") from None
        for fpr in fprs:
            key = scratch.key_for(fpr)
            if want not in (e.lower() for e in key.emails):
                names = ", ".join(key.emails) or "no address"
                raise WrongKeyError(
                    f"{source} answered a key for another address ({fpr}: {names}), "
                    f"not {addr}; refused, nothing imported"
                )
        filtered = _export_only(tmp / "g", fprs, want)
    finally:
        subprocess.run(
            ["gpgconf", "--homedir", str(tmp / "g"), "--kill", "all"],
            capture_output=True,
            check=False,
        )
        shutil.rmtree(tmp, ignore_errors=True)
    return filtered


def _export_only(home: Path, fprs: list[str], addr: str) -> bytes:
    """The keys ``fprs`` with only the user IDs of ``addr`` (binary)."""
    proc = subprocess.run(
        [
            "gpg",
            "--homedir",
            str(home),
            "--batch",
            "--no-tty",
            "--export",
            "--export-options",
            "export-clean",
            "--export-filter",
            f"keep-uid=mbox={addr}",
            *fprs,
        ],
        capture_output=True,
        check=False,
    )
    if proc.returncode != 0 or not proc.stdout:
        raise Error("could not export the discovered key from the scratch keyring")
    return proc.stdout
