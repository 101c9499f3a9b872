"""keys.gpg against the real gpg binary (short GNUPGHOMEs, agent cache off)."""

from __future__ import annotations

import os
import stat
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from keys.errors import (
    ConflictError,
    Error,
    KeyMaterialError,
    MalformedError,
    NotFoundError,
    VerificationError,
)
from keys.gpg import KeyInfo, Keyring, SignatureInfo

KeyringFactory = Callable[[str, str], tuple[Keyring, str]]


def pair(keyring_factory: KeyringFactory) -> tuple[Keyring, str, Keyring, str]:
    """Alice and Bob, each holding the other's public key; Alice trusts Bob."""
    alice, fa = keyring_factory("alice@example.org", "Alice")
    bob, fb = keyring_factory("bob@example.org", "Bob")
    alice.import_keys(bob.export_public(fb).encode())
    bob.import_keys(alice.export_public(fa).encode())
    alice.trust(fb)
    bob.trust(fa)
    return alice, fa, bob, fb


def test_new_home_is_private_and_configured(gnupghome_factory: Callable[[], Path]) -> None:
    home = gnupghome_factory() / "profile" / "gnupg"
    Keyring(home)
    assert stat.S_IMODE(home.stat().st_mode) == 0o700
    agent = (home / "gpg-agent.conf").read_text()
    assert "default-cache-ttl 0" in agent and "max-cache-ttl 0" in agent
    assert "allow-loopback-pinentry" in agent
    assert "no-auto-key-retrieve" in (home / "gpg.conf").read_text()


def test_generate_identity_ed25519_cv25519(gnupghome_factory: Callable[[], Path]) -> None:
    keyring = Keyring(gnupghome_factory())
    fpr = keyring.generate_identity("Carol@Example.org", "Carol Ünicode")
    assert len(fpr) == 40
    [key] = keyring.list_keys(secret=True)
    assert isinstance(key, KeyInfo)
    assert key.fingerprint == fpr
    assert key.emails == ("carol@example.org",)
    assert key.uids == ("Carol Ünicode <Carol@Example.org>",)
    assert key.algo == "ed25519"
    assert key.has_secret and key.validity == "ultimate" and key.expires is None
    colons = subprocess.run(
        ["gpg", "--homedir", str(keyring.gnupghome), "--with-colons", "--list-keys", fpr],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    sub = [ln.split(":") for ln in colons.splitlines() if ln.startswith("sub:")]
    assert [(s[11], s[16]) for s in sub] == [("e", "cv25519")]
    assert keyring.signing_key("carol@example.org") == fpr
    assert keyring.encryption_key("carol@example.org") == fpr


def test_generate_twice_conflicts(gnupghome_factory: Callable[[], Path]) -> None:
    keyring = Keyring(gnupghome_factory())
    keyring.generate_identity("dave@example.org", "Dave")
    with pytest.raises(ConflictError):
        keyring.generate_identity("dave@example.org", "Dave Again")


def test_generate_rejects_bad_address(gnupghome_factory: Callable[[], Path]) -> None:
    with pytest.raises(KeyMaterialError):
        Keyring(gnupghome_factory()).generate_identity("not an address", "X")


def test_passphrase_protected_identity(
    gnupghome_factory: Callable[[], Path], tmp_path: Path
) -> None:
    home = gnupghome_factory()
    keyring = Keyring(home, passphrase="correct horse")
    fpr = keyring.generate_identity("erin@example.org", "Erin")
    sig, _micalg = keyring.sign_detached(b"data\r\n", fpr)
    assert keyring.verify_detached(b"data\r\n", sig).fingerprint == fpr
    # Without the passphrase the key is unusable: no pinentry, no cache.
    with pytest.raises(KeyMaterialError):
        Keyring(home).sign_detached(b"data\r\n", fpr)
    with pytest.raises(KeyMaterialError):
        Keyring(home, passphrase="wrong").sign_detached(b"data\r\n", fpr)


def test_missing_key_hints_import(keyring_factory: KeyringFactory) -> None:
    alice, _ = keyring_factory("alice@example.org", "Alice")
    with pytest.raises(NotFoundError) as e:
        alice.encryption_key("nobody@example.org")
    assert e.value.hint == "certmail keys import FILE"
    assert e.value.exit_code == 6
    with pytest.raises(NotFoundError) as e2:
        alice.key_for("0123456789ABCDEF0123456789ABCDEF01234567")
    assert "import" in (e2.value.hint or "")
    with pytest.raises(NotFoundError) as e3:
        alice.signing_key("bob@example.org")
    assert e3.value.hint == "certmail init --email ADDR --name NAME"


def test_untrusted_key_hints_trust(keyring_factory: KeyringFactory, tmp_path: Path) -> None:
    alice, _fa = keyring_factory("alice@example.org", "Alice")
    bob, fb = keyring_factory("bob@example.org", "Bob")
    assert alice.import_keys(bob.export_public("bob@example.org").encode()) == [fb]
    assert alice.key_for("bob@example.org").validity == "unknown"
    with pytest.raises(Error) as e:
        alice.encryption_key("bob@example.org")
    assert e.value.hint == "certmail keys trust bob@example.org"
    src = tmp_path / "m.txt"
    src.write_bytes(b"hello")
    with pytest.raises(Error) as e2:
        alice.encrypt_file(src, tmp_path / "m.asc", [fb])
    assert "keys trust" in (e2.value.hint or "")
    assert not (tmp_path / "m.asc").exists()
    assert alice.trust("bob@example.org") == fb
    assert alice.key_for(fb).validity == "full"
    assert alice.encryption_key("bob@example.org") == fb
    alice.encrypt_file(src, tmp_path / "m.asc", [fb])
    assert (tmp_path / "m.asc").read_bytes().startswith(b"-----BEGIN PGP MESSAGE-----")


def test_import_garbage_is_malformed(keyring_factory: KeyringFactory) -> None:
    alice, _ = keyring_factory("alice@example.org", "Alice")
    with pytest.raises(MalformedError):
        alice.import_keys(b"-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nnope\n")
    with pytest.raises(MalformedError):
        alice.import_keys(b"")


def test_export_public_has_no_secret(keyring_factory: KeyringFactory) -> None:
    alice, fa = keyring_factory("alice@example.org", "Alice")
    armored = alice.export_public("alice@example.org")
    assert armored.startswith("-----BEGIN PGP PUBLIC KEY BLOCK-----")
    assert "PRIVATE" not in armored
    assert alice.export_public(fa) == armored


def test_detached_signature_round_trip(keyring_factory: KeyringFactory, tmp_path: Path) -> None:
    alice, fa, bob, _ = pair(keyring_factory)
    data = b"Content-Type: text/plain\r\n\r\nhello\r\n"
    sig, micalg = alice.sign_detached(data, "alice@example.org")
    assert sig.startswith(b"-----BEGIN PGP SIGNATURE-----")
    assert micalg == "pgp-sha512"
    info = bob.verify_detached(data, sig)
    assert isinstance(info, SignatureInfo)
    assert info.fingerprint == fa and info.primary_fingerprint == fa
    assert info.signer_email == "alice@example.org"
    assert info.validity == "full" and info.trusted
    f = tmp_path / "data"
    f.write_bytes(data)
    sig2, micalg2 = alice.sign_detached_file(f, fa)
    assert micalg2 == micalg
    assert bob.verify_detached_file(f, sig2).fingerprint == fa
    assert bob.verify_detached(data, sig2).fingerprint == fa


def test_untrusted_signer_is_reported_not_trusted(keyring_factory: KeyringFactory) -> None:
    alice, fa = keyring_factory("alice@example.org", "Alice")
    bob, _ = keyring_factory("bob@example.org", "Bob")
    bob.import_keys(alice.export_public(fa).encode())
    sig, _ = alice.sign_detached(b"x", fa)
    info = bob.verify_detached(b"x", sig)
    assert info.fingerprint == fa
    assert not info.trusted and info.validity == "unknown"


def test_forged_signature_rejected(keyring_factory: KeyringFactory, tmp_path: Path) -> None:
    alice, fa, bob, _ = pair(keyring_factory)
    data = b"pay 10 EUR\r\n"
    sig, _ = alice.sign_detached(data, fa)
    with pytest.raises(VerificationError) as e:
        bob.verify_detached(b"pay 99 EUR\r\n", sig)
    assert "BAD signature" in e.value.message
    f = tmp_path / "d"
    f.write_bytes(b"pay 99 EUR\r\n")
    with pytest.raises(VerificationError):
        bob.verify_detached_file(f, sig)
    with pytest.raises(VerificationError):
        bob.verify_detached(data, b"-----BEGIN PGP SIGNATURE-----\n\ngarbage\n")
    with pytest.raises(VerificationError):
        bob.verify_detached(data, b"")


def test_signature_by_unknown_key_hints_import(keyring_factory: KeyringFactory) -> None:
    alice, fa = keyring_factory("alice@example.org", "Alice")
    bob, _ = keyring_factory("bob@example.org", "Bob")
    sig, _ = alice.sign_detached(b"x", fa)
    with pytest.raises(VerificationError) as e:
        bob.verify_detached(b"x", sig)
    assert e.value.hint == "certmail keys import FILE"


@pytest.mark.parametrize("armor", [True, False])
def test_sign_encrypt_decrypt_round_trip(
    keyring_factory: KeyringFactory, tmp_path: Path, armor: bool
) -> None:
    alice, fa, bob, fb = pair(keyring_factory)
    src = tmp_path / "plain.bin"
    src.write_bytes(os.urandom(300_000))
    enc = tmp_path / "cipher"
    alice.sign_encrypt_file(src, enc, [fb, fa], fa, armor=armor)
    assert enc.read_bytes().startswith(b"-----BEGIN PGP MESSAGE") == armor
    out = tmp_path / "out.bin"
    info = bob.decrypt_file(enc, out)
    assert out.read_bytes() == src.read_bytes()
    assert info is not None and info.fingerprint == fa and info.trusted
    # The sender can read her own copy.
    out2 = tmp_path / "out2.bin"
    assert alice.decrypt_file(enc, out2) is not None
    assert out2.read_bytes() == src.read_bytes()


def test_encrypt_only_decrypts_without_signature(
    keyring_factory: KeyringFactory, tmp_path: Path
) -> None:
    alice, _, bob, fb = pair(keyring_factory)
    src = tmp_path / "p"
    src.write_bytes(b"")  # a 0-byte file is a valid plaintext
    alice.encrypt_file(src, tmp_path / "c", [fb])
    assert bob.decrypt_file(tmp_path / "c", tmp_path / "o") is None
    assert (tmp_path / "o").read_bytes() == b""


def test_plain_gpg_decrypts_what_keyring_encrypts(
    keyring_factory: KeyringFactory, tmp_path: Path
) -> None:
    alice, fa, bob, fb = pair(keyring_factory)
    src = tmp_path / "p"
    src.write_bytes(b"interop\n")
    alice.sign_encrypt_file(src, tmp_path / "c.asc", [fb], fa)
    proc = subprocess.run(
        [
            "gpg",
            "--homedir",
            str(bob.gnupghome),
            "--batch",
            "--status-fd",
            "2",
            "--decrypt",
            str(tmp_path / "c.asc"),
        ],
        capture_output=True,
        check=True,
    )
    assert proc.stdout == b"interop\n"
    assert f"VALIDSIG {fa}".encode() in proc.stderr


def test_wrong_key_garbage_truncated(keyring_factory: KeyringFactory, tmp_path: Path) -> None:
    alice, fa, bob, fb = pair(keyring_factory)
    mallory, _ = keyring_factory("mallory@example.org", "Mallory")
    src = tmp_path / "p"
    src.write_bytes(os.urandom(100_000))
    enc = tmp_path / "c.gpg"
    alice.sign_encrypt_file(src, enc, [fb], fa, armor=False)
    data = enc.read_bytes()

    with pytest.raises(VerificationError) as e:
        mallory.decrypt_file(enc, tmp_path / "o1")
    assert "not encrypted to any of your keys" in e.value.message

    garbage = tmp_path / "garbage"
    garbage.write_bytes(b"this is not OpenPGP\n" * 50)
    with pytest.raises(MalformedError):
        bob.decrypt_file(garbage, tmp_path / "o2")

    truncated = tmp_path / "t.gpg"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(MalformedError):
        bob.decrypt_file(truncated, tmp_path / "o3")

    flipped = tmp_path / "f.gpg"
    flipped.write_bytes(data[:-30] + bytes([data[-30] ^ 1]) + data[-29:])
    with pytest.raises(VerificationError):
        bob.decrypt_file(flipped, tmp_path / "o4")

    # Nothing half-written is left behind.
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(("o", ".o"))]


def test_decrypt_signed_by_unknown_key(keyring_factory: KeyringFactory, tmp_path: Path) -> None:
    alice, fa = keyring_factory("alice@example.org", "Alice")
    bob, fb = keyring_factory("bob@example.org", "Bob")
    alice.import_keys(bob.export_public(fb).encode())
    alice.trust(fb)
    src = tmp_path / "p"
    src.write_bytes(b"hi")
    alice.sign_encrypt_file(src, tmp_path / "c", [fb], fa)
    with pytest.raises(VerificationError) as e:
        bob.decrypt_file(tmp_path / "c", tmp_path / "o")
    assert e.value.hint == "certmail keys import FILE"
    assert not (tmp_path / "o").exists()


def test_trust_without_own_identity(
    gnupghome_factory: Callable[[], Path], keyring_factory: KeyringFactory
) -> None:
    alice, fa = keyring_factory("alice@example.org", "Alice")
    empty = Keyring(gnupghome_factory())
    empty.import_keys(alice.export_public(fa).encode())
    with pytest.raises(NotFoundError) as e:
        empty.trust(fa)
    assert "certmail init" in (e.value.hint or "")


def test_key_lookup_by_fingerprint_forms(keyring_factory: KeyringFactory) -> None:
    alice, fa = keyring_factory("alice@example.org", "Alice")
    spaced = " ".join(fa[i : i + 4] for i in range(0, 40, 4)).lower()
    assert alice.key_for(spaced).fingerprint == fa
    assert alice.key_for("0x" + fa[-16:]).fingerprint == fa
    assert alice.key_for("<ALICE@example.org>").fingerprint == fa


# --- signatures made by Sequoia (issue 10 item 13) ----------------------------------

SQ = Path(__file__).resolve().parents[1] / "vectors" / "sequoia-sq"


def test_a_sequoia_signature_with_a_binary_notation_verifies(
    gnupghome_factory: Callable[[], Path],
) -> None:
    """sq adds a binary notation to every signature; gpg prints it raw. It used to kill
    python-gnupg's reader (AttributeError: no 'stderr'); now the signature verifies."""
    keyring = Keyring(gnupghome_factory())
    [bob] = keyring.import_keys((SQ / "bob.cert").read_bytes())
    message, sig = (SQ / "message.eml").read_bytes(), (SQ / "message.eml.sig").read_bytes()
    for info in (
        keyring.verify_detached(message, sig),
        keyring.verify_detached_file(SQ / "message.eml", sig),
    ):
        assert info.primary_fingerprint == bob and info.signer_email == "bob@example.net"
        assert not info.trusted  # imported, not certified
    with pytest.raises(VerificationError, match="BAD signature"):
        keyring.verify_detached(message.replace(b"hello", b"Hello"), sig)


def test_a_sequoia_signed_and_encrypted_message_decrypts(
    gnupghome_factory: Callable[[], Path], tmp_path: Path
) -> None:
    keyring = Keyring(gnupghome_factory())
    keyring.import_keys((SQ / "alice-secret.pgp").read_bytes(), secret=True)
    [bob] = keyring.import_keys((SQ / "bob.cert").read_bytes())
    out = tmp_path / "plain.eml"
    info = keyring.decrypt_file(SQ / "message.eml.pgp", out)
    assert out.read_bytes() == (SQ / "message.eml").read_bytes()
    assert info is not None and info.primary_fingerprint == bob


def test_an_unreadable_gpg_answer_is_a_verification_error() -> None:
    """Whatever leaves python-gnupg's result without gpg's output is refused plainly."""
    from keys.gpg.status import signature_info

    class Unread:  # what python-gnupg returns when its reader thread died
        status = None
        valid = False
        fingerprint = None

    with pytest.raises(VerificationError, match="could not be read"):
        signature_info(Unread())


# ---------------------------------------------------------------- passphrases

# Status lines of GnuPG 2.2 for a protected key (recorded with --status-fd 2).
NO_PINENTRY_DECRYPT = """\
[GNUPG:] ENC_TO ECF15895F82EB0C4 18 0
[GNUPG:] NO_SECKEY 4485A7B8306309FF
gpg: public key decryption failed: No pinentry
[GNUPG:] ERROR pkdecrypt_failed 67108949
[GNUPG:] BEGIN_DECRYPTION
[GNUPG:] DECRYPTION_FAILED
gpg: decryption failed: No secret key
"""
BAD_PASSPHRASE_SIGN = """\
[GNUPG:] BEGIN_SIGNING H10
gpg: signing failed: Bad passphrase
[GNUPG:] FAILURE sign 67108875
"""
NO_PASSPHRASE_SIGN = "[GNUPG:] FAILURE sign 67109041\n"
NOT_FOR_YOU = """\
[GNUPG:] ENC_TO 4485A7B8306309FF 18 0
[GNUPG:] NO_SECKEY 4485A7B8306309FF
[GNUPG:] BEGIN_DECRYPTION
[GNUPG:] DECRYPTION_FAILED
"""


def test_passphrase_failures_from_status_lines() -> None:
    from keys.gpg import BadPassphraseError, PassphraseRequiredError
    from keys.gpg.passphrase import check_secret_key_used, passphrase_failure

    assert passphrase_failure(NO_PINENTRY_DECRYPT) is PassphraseRequiredError
    assert passphrase_failure(NO_PASSPHRASE_SIGN) is PassphraseRequiredError
    assert passphrase_failure("[GNUPG:] MISSING_PASSPHRASE\n") is PassphraseRequiredError
    assert passphrase_failure(BAD_PASSPHRASE_SIGN) is BadPassphraseError
    assert passphrase_failure("[GNUPG:] BAD_PASSPHRASE 0123456789ABCDEF\n") is BadPassphraseError
    assert passphrase_failure(NOT_FOR_YOU) is None
    # A locked key is never "not encrypted to any of your keys", even with a
    # NO_SECKEY line for another recipient's key beside it.
    with pytest.raises(PassphraseRequiredError) as locked:
        check_secret_key_used(NO_PINENTRY_DECRYPT)
    assert locked.value.exit_code == 1
    with pytest.raises(BadPassphraseError):
        check_secret_key_used(NO_PINENTRY_DECRYPT.replace("67108949", "67108875"))
    with pytest.raises(VerificationError, match="not encrypted to any of your keys") as e:
        check_secret_key_used(NOT_FOR_YOU)
    assert e.value.exit_code == 3
    # The key was there but gpg-agent failed with it (here GPG_ERR_EOF: an agent that
    # went away): said as such, with gpg's code, never "not encrypted to you".
    with pytest.raises(KeyMaterialError, match=r"gpg-agent could not decrypt .*16383") as agent:
        check_secret_key_used(NO_PINENTRY_DECRYPT.replace("67108949", "16383"))
    assert not isinstance(agent.value, VerificationError) and agent.value.exit_code == 1


def _protected(gnupghome_factory: Callable[[], Path]) -> tuple[Path, str]:
    home = gnupghome_factory()
    fpr = Keyring(home, passphrase="correct horse").generate_identity("pat@example.org", "Pat")
    return home, fpr


def test_ask_is_called_until_the_passphrase_is_right(gnupghome_factory: Callable[[], Path],
                                                      tmp_path: Path) -> None:  # fmt: skip
    from keys.gpg import BadPassphraseError, PassphraseRequest, PassphraseRequiredError

    home, fpr = _protected(gnupghome_factory)
    plain, sealed, out = tmp_path / "p", tmp_path / "c", tmp_path / "o"
    plain.write_bytes(b"secret text\n")
    Keyring(home).encrypt_file(plain, sealed, [fpr])
    asked: list[PassphraseRequest] = []

    def ask(answers: list[str]) -> Callable[[PassphraseRequest], str]:
        def answer(r: PassphraseRequest) -> str:
            asked.append(r)
            return answers[r.attempt - 1]

        return answer

    ring = Keyring(home, ask=ask(["no", "", "correct horse"]))
    assert ring.decrypt_file(sealed, out) is None and out.read_bytes() == b"secret text\n"
    # First try without a passphrase (the agent's cache), then each answer; an empty
    # one counts as none given, not as wrong.
    assert [(r.attempt, r.wrong) for r in asked] == [(1, False), (2, True), (3, False)]
    assert "Pat <pat@example.org>" in asked[0].key
    assert ring.passphrase == "correct horse"
    ring.sign_detached(b"kept for the next operation", fpr)
    assert len(asked) == 3

    asked.clear()
    with pytest.raises(BadPassphraseError, match=r"wrong passphrase for Pat .*\(3 tries\)"):
        Keyring(home, ask=ask(["a", "b", "c", "correct horse"])).sign_detached(b"x", fpr)
    assert len(asked) == 3
    with pytest.raises(PassphraseRequiredError, match="needs its passphrase"):
        Keyring(home).decrypt_file(sealed, out)
    with pytest.raises(BadPassphraseError, match="wrong passphrase"):
        Keyring(home, passphrase="nope").micalg(fpr)


def test_passphrase_fd_never_collides_with_stdin(gnupghome_factory: Callable[[], Path],
                                                  tmp_path: Path) -> None:  # fmt: skip
    """With fd 0 closed, os.pipe() returns 0 for the passphrase pipe; gpg's stdin (a
    new pipe, dup2'd to 0 in the child) must not replace it."""
    import sys

    home, fpr = _protected(gnupghome_factory)
    result = tmp_path / "micalg"
    code = (
        "import os, sys\n"
        "from pathlib import Path\n"
        "os.close(0)\n"
        "from keys.gpg import Keyring\n"
        f"m = Keyring(Path({str(home)!r}), passphrase='correct horse').micalg({fpr!r})\n"
        f"Path({str(result)!r}).write_text(m)\n"
    )
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False,
                       cwd=Path(__file__).parents[2])  # fmt: skip
    assert p.returncode == 0, p.stderr
    assert result.read_text() == "pgp-sha512"


V6_CERT = Path(__file__).resolve().parent.parent / "vectors" / "rfc9580" / "v6-certificate.asc"


def _export(keyring: Keyring, fpr: str, *args: str) -> bytes:
    """``gpg --export ARGS FPR`` of the keyring's home (stock gpg, no passphrase)."""
    return subprocess.run(
        [
            "gpg",
            "--homedir",
            str(keyring.gnupghome),
            "--batch",
            "--pinentry-mode",
            "loopback",
            "--passphrase",
            "",
            *args,
            fpr,
        ],
        capture_output=True,
        check=True,
        timeout=60,
    ).stdout


def test_key_file_facts_from_packet_headers(keyring_factory: KeyringFactory) -> None:
    """keys.gpg.packets.scan_keys: secret or public, and the key packet versions, for
    armored and binary input (issue 10 item 12); garbage is unreadable, not a key."""
    from keys.gpg.packets import scan_keys

    alice, fa = keyring_factory("alice@example.org", "Alice")
    public = alice.export_public(fa).encode()
    assert scan_keys(public) == scan_keys(_export(alice, fa, "--export"))
    facts = scan_keys(public)
    assert not facts.secret and facts.versions == {4} and facts.readable
    v6 = scan_keys(V6_CERT.read_bytes())
    assert not v6.secret and v6.versions == {6} and v6.readable
    assert scan_keys(_export(alice, fa, "--export-secret-keys")).secret
    assert not scan_keys(b"not a key").readable and not scan_keys(b"").versions


def test_import_keys_refuses_secret_keys_and_names_v6(keyring_factory: KeyringFactory) -> None:
    from keys.gpg.importing import SecretKeyRefused

    alice, fa = keyring_factory("alice@example.org", "Alice")
    bob, _ = keyring_factory("bob@example.org", "Bob")
    secret = _export(alice, fa, "--armor", "--export-secret-keys")
    with pytest.raises(SecretKeyRefused, match="holds a secret key"):
        bob.import_keys(secret)
    assert fa not in {k.fingerprint for k in bob.list_keys()}  # nothing imported
    assert bob.import_keys(secret, secret=True) == [fa]
    with pytest.raises(MalformedError, match=r"v6 key .* not supported by the installed GnuPG"):
        bob.import_keys(V6_CERT.read_bytes())
