"""The encryption's recipient check lists only the recipients' keys (keys.gpg.base,
issue 15), and still refuses a key revoked or expired since it was last checked."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from keys.errors import Error, NotFoundError
from keys.gpg import Keyring
from keys.gpg.colons import Listed
from keys.gpg.importing import UnusableKeyError
from tests.fixtures.gpg import gpg_batch

KeyringFactory = Callable[[str, str], tuple[Keyring, str]]
_OLD = ("--faked-system-time", "20200101T000000", "--passphrase", "")


def _own_key(home: Path, email: str, *, old: bool = False) -> str:
    """A new key of ``email`` in ``home``; ``old``: made in 2020, valid for a day."""
    faked = _OLD if old else ("--passphrase", "")
    expiry = "1d" if old else "never"
    gpg_batch(home, *faked, "--quick-gen-key", f"T <{email}>", "ed25519", "sign,cert", expiry)
    fpr = gpg_batch(home, "--with-colons", "--list-keys").decode().split("fpr:::::::::")[1][:40]
    gpg_batch(home, *faked, "--quick-add-key", fpr, "cv25519", "encr", expiry)
    return fpr


def _encrypt(keyring: Keyring, tmp_path: Path, recipient: str) -> None:
    src = tmp_path / "m.txt"
    src.write_bytes(b"notice\n")
    keyring.encrypt_file(src, tmp_path / "m.gpg", [recipient])


def test_a_key_revoked_after_a_check_is_refused_by_the_next(
    keyring_factory: KeyringFactory, gnupghome_factory: Callable[[], Path], tmp_path: Path
) -> None:
    alice, _ = keyring_factory("alice@example.org", "Alice")
    bob_home = gnupghome_factory()
    fb = _own_key(bob_home, "bob@example.org")
    alice.import_keys(gpg_batch(bob_home, "--armor", "--export", fb))
    alice.trust(fb)
    _encrypt(alice, tmp_path, fb)  # checked and remembered as valid
    _encrypt(alice, tmp_path, "bob@example.org")
    rev = (bob_home / "openpgp-revocs.d" / f"{fb}.rev").read_text()
    gpg_batch(bob_home, "--import", stdin=rev.replace(":-----BEGIN", "-----BEGIN").encode())
    Keyring(alice.gnupghome).import_keys(gpg_batch(bob_home, "--armor", "--export", fb))
    with pytest.raises(Error, match=f"the key {fb} is not trusted"):
        _encrypt(alice, tmp_path, fb)
    with pytest.raises(UnusableKeyError, match=f"the key {fb} for bob@example.org is revoked"):
        _encrypt(alice, tmp_path, "bob@example.org")


def test_an_expired_key_is_refused_by_fingerprint_and_by_address(
    keyring_factory: KeyringFactory, gnupghome_factory: Callable[[], Path], tmp_path: Path
) -> None:
    alice, _ = keyring_factory("alice@example.org", "Alice")
    carol_home = gnupghome_factory()
    fc = _own_key(carol_home, "carol@example.org", old=True)
    alice.import_keys(gpg_batch(carol_home, "--armor", "--export", fc))
    with pytest.raises(Error, match=f"the key {fc} is not trusted"):
        _encrypt(alice, tmp_path, fc)
    with pytest.raises(UnusableKeyError, match=f"the key {fc} for carol@example.org is expired"):
        _encrypt(alice, tmp_path, "carol@example.org")


def test_an_unknown_recipient_is_named(keyring_factory: KeyringFactory, tmp_path: Path) -> None:
    alice, fa = keyring_factory("alice@example.org", "Alice")
    unknown = "0" * 40
    with pytest.raises(NotFoundError, match=f"no OpenPGP key {unknown}"):
        _encrypt(alice, tmp_path, unknown)
    with pytest.raises(NotFoundError, match=r"no OpenPGP key for dave@example\.org"):
        _encrypt(alice, tmp_path, "dave@example.org")
    _encrypt(alice, tmp_path, fa)  # the own key: fully valid (ultimate)


def test_only_the_recipients_keys_are_listed(
    keyring_factory: KeyringFactory, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    alice, fa = keyring_factory("alice@example.org", "Alice")
    bob, fb = keyring_factory("bob@example.org", "Bob")
    alice.import_keys(bob.export_public(fb).encode())
    alice.trust(fb)
    whole: list[bool] = []
    list_now = alice._list_now

    def spy(*, secret: bool) -> list[Listed]:
        whole.append(secret)
        return list_now(secret=secret)

    monkeypatch.setattr(alice, "_list_now", spy)
    _encrypt(alice, tmp_path, fb)
    assert alice.encryption_key("bob@example.org", only=True) == fb
    assert alice.key_for(fa, only=True).has_secret
    assert False not in whole  # the secret keys (own) may be listed, never all public keys
