"""The notary's acknowledgement check (Sequoia, in-process) against GnuPG (keys.gpg).

The notary checks acknowledgement signatures with pysequoia
(:func:`notary.ack.check_signature`); the client and the offline verifier use
GnuPG through :mod:`keys.gpg`. One set of signatures, good and bad, made by gpg
and by ``sq`` (Ed25519 and RSA, primary keys and signing subkeys, expired and
revoked keys, a signature made before its key expired, forgeries) gets the same
verdict, and for good ones the same primary and signing fingerprints, from both.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pysequoia
import pytest

from keys.errors import Error
from keys.gpg import Keyring
from notary.ack import check_signature
from tests.fixtures.gpg import gpg_batch
from tests.fixtures.sequoia import SqKey

VECTORS = Path(__file__).resolve().parents[1] / "vectors" / "sequoia-sq"
TEXT = "certmail acknowledgement of receipt\nsha256: " + "ab" * 32 + "\n"
DAY = 86400


@dataclass(frozen=True)
class Case:
    text: str
    signature: str
    cert: str
    recipient: str


def _fpr(home: Path, which: int = 0) -> str:
    """The ``which``-th fingerprint of the keyring's listing (0: the primary)."""
    out = gpg_batch(home, "--with-colons", "--with-subkey-fingerprints", "--list-keys").decode()
    return [ln.split(":")[9] for ln in out.splitlines() if ln.startswith("fpr:")][which]


def _sign(home: Path, signer: str, at: int | None = None) -> str:
    faked = ["--faked-system-time", f"{at}!"] if at else []
    args = [*faked, "--armor", "--detach-sign", "--local-user", f"{signer}!"]
    return gpg_batch(home, *args, stdin=TEXT.encode()).decode()


def _gpg_key(home: Path, email: str, algo: str, *, subkey: str | None, at: int | None) -> None:
    """A key for ``email``: the primary signs, or with ``subkey`` (its expiry) a
    certify-only primary and a signing subkey; made at ``at`` (faked time) if given."""
    faked = ["--faked-system-time", f"{at}!"] if at else []
    usage = "cert" if subkey else "sign,cert"
    expiry = "1d" if (at and not subkey) else "never"
    gpg_batch(home, *faked, "--quick-gen-key", f"Test <{email}>", algo, usage, expiry)
    if subkey:
        gpg_batch(home, *faked, "--quick-add-key", _fpr(home), algo, "sign", subkey)


def _export(home: Path) -> str:
    return gpg_batch(home, "--armor", "--export").decode()


def _flipped(armored: str) -> str:
    """The signature with one byte of its signature value changed."""
    raw = bytearray(bytes(pysequoia.Sig.from_bytes(armored.encode())))
    raw[-5] ^= 0x01
    return pysequoia.armor(bytes(raw), pysequoia.ArmorKind.Signature)


def _cases(make_home: Callable[[], Path], tmp_path: Path) -> dict[str, tuple[Case, bool]]:
    """name -> (case, whether it is a good signature)."""
    now = int(time.time())
    cases: dict[str, tuple[Case, bool]] = {}
    # Good keys: Ed25519 and RSA primaries, an Ed25519 signing subkey.
    for name, algo, sub in (
        ("gpg ed25519", "ed25519", None),
        ("gpg rsa2048", "rsa2048", None),
        ("gpg ed25519 subkey", "ed25519", "never"),
    ):
        home, email = make_home(), f"{algo}@example.net"
        _gpg_key(home, email, algo, subkey=sub, at=None)
        sig, cert = _sign(home, _fpr(home, 1 if sub else 0)), _export(home)
        cases[name] = (Case(TEXT, sig, cert, email), True)
        cases[f"{name}: other text"] = (Case(TEXT + "x", sig, cert, email), False)
        cases[f"{name}: flipped byte"] = (Case(TEXT, _flipped(sig), cert, email), False)
    # Sequoia's own signatures (a signing subkey, binary salt notations).
    bob = SqKey.generate(tmp_path / "sq-bob", "Bob <bob@example.net>")
    mallory = SqKey.generate(tmp_path / "sq-mallory", "Mallory <mallory@example.org>")
    good = bob.sign_detached(TEXT.encode())
    cases["sq"] = (Case(TEXT, good, bob.cert, "bob@example.net"), True)
    cases["sq: flipped byte"] = (Case(TEXT, _flipped(good), bob.cert, "bob@example.net"), False)
    forged = mallory.sign_detached(TEXT.encode())
    cases["sq: another key's signature"] = (
        Case(TEXT, forged, bob.cert, "bob@example.net"),
        False,
    )
    vector = (VECTORS / "message.eml").read_bytes().decode()
    cases["sq vector"] = (
        Case(
            vector,
            (VECTORS / "message.eml.sig").read_text(),
            (VECTORS / "bob.cert").read_text(),
            "bob@example.net",
        ),
        True,
    )
    # A primary expired since (two days old, valid one day, signed while valid).
    home = make_home()
    _gpg_key(home, "exp@example.net", "ed25519", subkey=None, at=now - 2 * DAY)
    sig = _sign(home, _fpr(home), at=now - 2 * DAY + 3600)
    cases["expired primary"] = (Case(TEXT, sig, _export(home), "exp@example.net"), False)
    # A signing subkey expired since, signed while valid.
    home = make_home()
    _gpg_key(home, "subexp@example.net", "ed25519", subkey="1d", at=now - 2 * DAY)
    sig = _sign(home, _fpr(home, 1), at=now - 2 * DAY + 3600)
    cases["expired subkey"] = (Case(TEXT, sig, _export(home), "subexp@example.net"), False)
    # A revoked primary (its revocation certificate imported).
    home = make_home()
    _gpg_key(home, "rev@example.net", "ed25519", subkey=None, at=None)
    sig, fpr = _sign(home, _fpr(home)), _fpr(home)
    rev = (home / "openpgp-revocs.d" / f"{fpr}.rev").read_text().replace(":-----", "-----")
    gpg_batch(home, "--import", stdin=rev.encode())
    cases["revoked primary"] = (Case(TEXT, sig, _export(home), "rev@example.net"), False)
    # A revoked signing subkey (no reason given).
    home = make_home()
    _gpg_key(home, "subrev@example.net", "ed25519", subkey="never", at=None)
    sig = _sign(home, _fpr(home, 1))
    gpg_batch(
        home,
        "--command-fd",
        "0",
        "--edit-key",
        _fpr(home),
        stdin=b"key 1\nrevkey\ny\n0\n\ny\nsave\n",
    )
    cases["revoked subkey"] = (Case(TEXT, sig, _export(home), "subrev@example.net"), False)
    return cases


def _by_gpg(home: Path, case: Case) -> tuple[str, ...]:
    """keys.gpg's verdict: the key imported alone into a fresh GNUPGHOME, then verified."""
    ring = Keyring(home)
    try:
        imported = {f.upper() for f in ring.import_keys(case.cert.encode())}
        info = ring.verify_detached(case.text.encode(), case.signature.encode())
    except Error:
        return ("refused",)
    primary = info.primary_fingerprint.upper()
    if primary not in imported or case.recipient not in ring.key_for(primary).emails:
        return ("refused",)
    return ("good", primary, info.fingerprint.upper())


def _by_notary(case: Case) -> tuple[str, ...]:
    try:
        signer = check_signature(case.text, case.signature, case.cert, case.recipient)
    except Error:
        return ("refused",)
    return ("good", signer.fingerprint, signer.signing_fingerprint)


@pytest.mark.timeout(300)
def test_gpg_and_the_notary_give_the_same_verdicts(
    gnupghome_factory: Callable[[], Path], tmp_path: Path
) -> None:
    cases = _cases(gnupghome_factory, tmp_path)
    gpg = {name: _by_gpg(gnupghome_factory(), case) for name, (case, _) in cases.items()}
    notary = {name: _by_notary(case) for name, (case, _) in cases.items()}
    assert notary == gpg
    # And the verdicts are the right ones (both could not be wrong the same way).
    assert {n for n, v in notary.items() if v[0] == "good"} == {
        n for n, (_, g) in cases.items() if g
    }
    # A signing subkey is told apart from its primary.
    assert notary["gpg ed25519 subkey"][1] != notary["gpg ed25519 subkey"][2]
