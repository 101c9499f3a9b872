"""The OpenPGP public keys a proof bundle carries (format 2, docs/proof-bundle.md).

``keys/<FINGERPRINT>.asc`` holds one public key, ASCII-armored (RFC 4880 §6,
RFC 9580): the sender's, and that of each acknowledging recipient as the
sender's keyring held it. Each is *minimal*: only the user ID of the address it
stands for (the From: address, the acknowledging recipient's), its self
signatures and subkeys, and on a recipient's key the sender's own certification
(``certmail keys trust`` makes a non-exportable ``lsign``, exported here with
``export-local-sigs``): what ties the key to the address the sender trusted.

One canonical form, so that no byte goes unchecked: the key as stock GnuPG
exports it with :data:`EXPORT_OPTIONS` from a keyring that holds exactly the
bundle's keys. :func:`bundle_keyring` imports each file into a temporary
GNUPGHOME (no gpg-agent is started: ``no-autostart``), requires it to hold the
one key its name says, exports it again and requires the same bytes; a flipped
byte changes the key (and the name no longer fits), breaks a signature (GnuPG
drops it, the export differs) or the armor (the import fails). The sender's key
is then made the keyring's one trust anchor (ownertrust ultimate), so a
recipient's key is *certified* (validity full) exactly when the sender certified
it: :mod:`certmail.bundle.openpgp` runs its checks on that keyring.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator, Mapping, Sequence
from email.utils import parseaddr
from pathlib import Path
from typing import TYPE_CHECKING

from certmail.bundle.layout import KEY_MEMBER, MAX_KEYS, fail

if TYPE_CHECKING:
    import subprocess

    from keys.gpg import Keyring

__all__ = ["EXPORT_OPTIONS", "KEY_MEMBER", "bundle_keyring", "export_keys", "key_members"]

#: How the canonical form of a key member is exported.
EXPORT_OPTIONS = "export-local-sigs,export-clean"
_TIMEOUT = 60


def key_members(files: Mapping[str, bytes]) -> list[str]:
    """The key members of a bundle, sorted."""
    return sorted(n for n in files if n.startswith("keys/") and KEY_MEMBER.fullmatch(n))


def _gpg(home: Path, args: Sequence[str], stdin: bytes = b"") -> subprocess.CompletedProcess[bytes]:
    import subprocess  # here: a bundle without keys verifies without gpg's modules

    from keys.errors import KeyMaterialError
    from keys.gpg.process import base_command

    try:
        return subprocess.run(
            [*base_command(home), "--no-autostart", *args],
            input=stdin,
            capture_output=True,
            check=False,
            timeout=_TIMEOUT,
        )
    except subprocess.TimeoutExpired:
        raise KeyMaterialError(f"gpg took over {_TIMEOUT} s on the bundle's keys") from None
    except OSError as e:
        raise KeyMaterialError(
            f"cannot run gpg: {e.strerror or e}", hint="install GnuPG 2.2 or later"
        ) from None


@contextlib.contextmanager
def _scratch() -> Iterator[Path]:
    """A temporary GNUPGHOME with certmail's configuration and no agent."""
    import shutil
    import tempfile

    from keys.gpg.home import GPG_CONF

    home = Path(tempfile.mkdtemp(prefix="cm-keys-"))
    try:
        home.chmod(0o700)
        (home / "gpg.conf").write_text(GPG_CONF + "no-autostart\n", encoding="utf-8")
        yield home
    finally:
        shutil.rmtree(home, ignore_errors=True)


def _imported(home: Path, data: bytes) -> set[str]:
    """Import ``data`` (with local certifications); the primary fingerprints imported."""
    proc = _gpg(home, ["--import", "--import-options", "import-local-sigs"], data)
    text = proc.stderr.decode("utf-8", "replace")
    return {
        m.group(1).upper()
        for m in re.finditer(r"^\[GNUPG:\] IMPORT_OK \d+ ([0-9A-Fa-f]{40})$", text, re.M)
    }


def _canonical(home: Path, fpr: str) -> bytes:
    proc = _gpg(home, ["--armor", "--export", "--export-options", EXPORT_OPTIONS, fpr])
    return proc.stdout if proc.returncode == 0 else b""


def _one_uid(gnupghome: Path, fpr: str, addr: str, options: str) -> bytes:
    """Key ``fpr`` of the sender's keyring with only the user ID of ``addr``."""
    proc = _gpg(
        gnupghome,
        [
            "--export",
            "--export-options",
            options,
            "--export-filter",
            f"keep-uid=mbox = {addr.lower()}",
            fpr,
        ],
    )
    return proc.stdout if proc.returncode == 0 else b""


def export_keys(
    gnupghome: Path, sender: tuple[str, str] | None, recipients: Sequence[tuple[str, str]]
) -> dict[str, bytes]:
    """The key members for a bundle: ``sender`` and ``recipients`` are (fingerprint,
    address) pairs of keys in the keyring at ``gnupghome``; a key the keyring lacks,
    or without a user ID for its address, is left out."""
    blobs = []
    if sender is not None:
        blobs.append(_one_uid(gnupghome, sender[0], sender[1], "export-minimal"))
    blobs += [_one_uid(gnupghome, f, a, "export-local-sigs") for f, a in recipients]
    wanted = {f.upper() for f, _ in ([sender] if sender else []) + list(recipients)}
    out: dict[str, bytes] = {}
    with _scratch() as home:
        got = _imported(home, b"".join(b for b in blobs if b))
        for fpr in sorted(got & wanted):
            data = _canonical(home, fpr)
            if data:
                out[f"keys/{fpr}.asc"] = data
    return out


@contextlib.contextmanager
def bundle_keyring(files: Mapping[str, bytes], sender: str) -> Iterator[Keyring | None]:
    """A temporary keyring of the bundle's keys, each checked to be in its canonical
    form (VerificationError naming the file), the key of the ``sender`` (From:) address
    its one trust anchor; None when the bundle carries no keys."""
    names = key_members(files)
    if not names:
        yield None
        return
    if len(names) > MAX_KEYS:
        raise fail(f"the bundle holds more than {MAX_KEYS} keys")
    from keys.gpg import Keyring

    with _scratch() as home:
        for name in names:
            m = KEY_MEMBER.fullmatch(name)
            assert m is not None
            if _imported(home, files[name]) != {m.group(1)}:
                raise fail(f"{name} is not the one OpenPGP key its name says")
        for name in names:
            if _canonical(home, name[5:-4]) != files[name]:
                raise fail(f"{name} is not in its canonical form")
        ring = Keyring(home)
        addr = parseaddr(sender)[1].lower()
        anchors = [
            k.fingerprint
            for k in ring.list_keys()
            if addr and addr in (e.lower() for e in k.emails)
        ]
        if len(anchors) == 1:
            _gpg(home, ["--import-ownertrust"], f"{anchors[0]}:6:\n".encode("ascii"))
            _gpg(home, ["--check-trustdb"])
        yield ring
