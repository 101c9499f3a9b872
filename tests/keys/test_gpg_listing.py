"""The remembered key listing (keys.gpg.base): a change to the keyring by anyone,
another process included, is seen by the next lookup."""

from __future__ import annotations

import subprocess
from collections.abc import Callable

import pytest

from keys.errors import Error, NotFoundError
from keys.gpg import Keyring

KeyringFactory = Callable[[str, str], tuple[Keyring, str]]


def test_a_key_imported_and_trusted_elsewhere_is_seen(keyring_factory: KeyringFactory) -> None:
    alice, _ = keyring_factory("alice@example.org", "Alice")
    bob, fb = keyring_factory("bob@example.org", "Bob")
    with pytest.raises(NotFoundError):
        alice.encryption_key("bob@example.org")  # listed (and remembered): no key yet
    other = Keyring(alice.gnupghome)  # another process on the same home
    other.import_keys(bob.export_public(fb).encode())
    with pytest.raises(Error, match="not trusted"):
        alice.encryption_key("bob@example.org")
    other.trust(fb)
    assert alice.encryption_key("bob@example.org") == fb


def test_a_key_deleted_by_plain_gpg_is_gone_at_once(keyring_factory: KeyringFactory) -> None:
    alice, _ = keyring_factory("alice@example.org", "Alice")
    bob, fb = keyring_factory("bob@example.org", "Bob")
    alice.import_keys(bob.export_public(fb).encode())
    alice.trust(fb)
    assert alice.encryption_key("bob@example.org") == fb  # remembered as valid
    subprocess.run(  # plain gpg, not through keys.gpg: nothing tells alice's Keyring
        ["gpg", "--homedir", str(alice.gnupghome), "--batch", "--yes", "--delete-keys", fb],
        check=True,
        capture_output=True,
    )
    with pytest.raises(NotFoundError):
        alice.encryption_key("bob@example.org")
    with pytest.raises(NotFoundError):
        alice.key_for(fb)
