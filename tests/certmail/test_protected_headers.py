"""Protected header fields as other clients write them (issue 11 item 3).

Made at test time: a message sent by the real NeoMutt (``crypt_protected_headers_write``,
gpgme and classic gpg backends) and messages whose payload is each client's
layout (tests/vectors/protected-headers/, see PROVENANCE.md) signed and
encrypted by Sequoia ``sq``. Each must open with the protected Subject, the
body without its legacy display, and the signature good.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from certmail.mime import Entity, parse_entity
from certmail.protected import merged_fields, strip_legacy_display, without_legacy_display
from certmail.unseal import unseal
from keys.gpg import Keyring
from tests.fixtures.cli import clean_env, cli, json_of
from tests.fixtures.neomutt import drive_neomutt, neomutt_rc
from tests.fixtures.sequoia import sq

pytestmark = pytest.mark.timeout(120)

VECTORS = Path(__file__).parents[1] / "vectors" / "protected-headers"
ALICE, BOB = "alice@example.org", "bob@example.net"


def export(keyring: Keyring, *args: str) -> bytes:
    return subprocess.run(
        ["gpg", "--homedir", str(keyring.gnupghome), "--batch", *args],
        capture_output=True,
        check=True,
    ).stdout


@pytest.fixture
def people(
    keyring_factory: Callable[[str, str], tuple[Keyring, str]],
) -> tuple[Keyring, str, Keyring, str]:
    """Alice (who knows and trusts Bob's key) and Bob (who holds Alice's key)."""
    alice, afpr = keyring_factory(ALICE, "Alice")
    bob, bfpr = keyring_factory(BOB, "Bob")
    alice.import_keys(export(bob, "--export", bfpr))
    alice.trust(bfpr)
    bob.import_keys(export(alice, "--export", afpr))
    return alice, afpr, bob, bfpr


def alice_rc(tmp: Path, fpr: str, *, gpgme: bool) -> Path:
    """Alice's NeoMutt: sign, encrypt and protect the header fields; sendmail writes out.eml."""
    sendmail = tmp / "sendmail.sh"
    sendmail.write_text(f"#!/bin/sh\ncat > {tmp / 'out.eml'}\n")
    sendmail.chmod(0o700)
    lines = [
        'set from="Alice <alice@example.org>"',
        "set use_from=yes",
        f'set sendmail="{sendmail}"',
        "set crypt_autosign=yes",
        "set crypt_autoencrypt=yes",
        "set crypt_protected_headers_write=yes",
        f'set pgp_default_key="{fpr}"',
        f'set pgp_sign_as="{fpr}"',
        f"set folder={tmp}",
        'set record=""',
        f"set postponed={tmp / 'postponed'}",
    ]
    return neomutt_rc(tmp / "neomuttrc", lines, gpgme=gpgme)


@pytest.mark.parametrize("gpgme", [True, False], ids=["gpgme", "classic-gpg"])
def test_a_message_from_real_neomutt_opens_with_its_protected_subject(
    tmp_path: Path, people: tuple[Keyring, str, Keyring, str], gpgme: bool
) -> None:
    alice, afpr, bob, _ = people
    draft = tmp_path / "draft"
    draft.write_text(
        "From: Alice <alice@example.org>\nTo: bob@example.net\n"
        "Subject: the protected subject\n\nHello Bob, from NeoMutt.\n"
    )
    rc = alice_rc(tmp_path, afpr, gpgme=gpgme)
    p = drive_neomutt(tmp_path, alice.gnupghome, str(rc), str(draft), str(tmp_path / "out.eml"))
    assert p.returncode == 0, p.stderr
    raw = (tmp_path / "out.eml").read_bytes()
    assert b"\nSubject: ...\n" in raw  # NeoMutt hid the subject outside
    u = unseal(bob, raw, tmp_path / "work")
    assert u.fields["Subject"] == "the protected subject"
    assert u.outer_fields["Subject"] == "..."
    assert u.header_protection == "v1"
    assert u.sender == ALICE
    assert u.signature is not None and u.signature.primary_fingerprint == afpr
    assert u.body is not None and u.body.startswith(b"Hello Bob, from NeoMutt.")
    # The same through the CLI, from a Maildir and as a file.
    home = tmp_path / "bobhome"
    home.mkdir(mode=0o700)
    (home / "gnupg").symlink_to(bob.gnupghome)
    maildir = tmp_path / "Maildir"
    for d in ("cur", "new", "tmp"):
        (maildir / d).mkdir(parents=True)
    (maildir / "new" / "1700000000.M1P1.mx").write_bytes(raw)
    listed = json_of(cli("inbox", "list", "--maildir", str(maildir), "--json", env=clean_env(home)))
    [m] = listed["messages"]
    assert (m["subject"], m["subject_protected"]) == ("the protected subject", True)
    opened = json_of(
        cli("open", str(tmp_path / "out.eml"), "--no-ack", "--json", env=clean_env(home))
    )
    assert opened["headers"]["Subject"] == "the protected subject"


def pgp_mime(armored: bytes, outer_subject: str) -> bytes:
    return (
        b"From: Alice <alice@example.org>\r\nTo: Bob <bob@example.net>\r\n"
        b"Subject: " + outer_subject.encode() + b"\r\n"
        b"Date: Tue, 01 Dec 2026 10:00:00 +0000\r\nMessage-ID: <outer@example.org>\r\n"
        b"MIME-Version: 1.0\r\n"
        b'Content-Type: multipart/encrypted; protocol="application/pgp-encrypted";'
        b' boundary="enc"\r\n\r\n'
        b"--enc\r\nContent-Type: application/pgp-encrypted\r\n\r\nVersion: 1\r\n\r\n"
        b'--enc\r\nContent-Type: application/octet-stream; name="encrypted.asc"\r\n\r\n'
        + armored.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
        + b"\r\n--enc--\r\n"
    )


CASES = [
    # file, subject, body starts with, other parts
    ("enigmail.mime", "Enigmail secret subject", b"Hello Bob, from Enigmail.", 0),
    ("thunderbird.mime", "Thunderbird secret subject", b"Hello Bob, from Thunderbird.", 1),
    ("k9-fairemail.mime", "K-9 secret subject", b"Hello Bob, from K-9 Mail.", 0),
    ("rfc9788-legacy-text.mime", "Dinner plans", b"Let's meet at Rama's", 0),
    ("rfc9788-legacy-html.mime", "Dinner plans", b"Let's meet at 8pm.", 1),
]


@pytest.mark.parametrize(("name", "subject", "body", "others"), CASES)
def test_client_layouts_signed_and_encrypted_by_sq(
    tmp_path: Path,
    people: tuple[Keyring, str, Keyring, str],
    name: str,
    subject: str,
    body: bytes,
    others: int,
) -> None:
    alice, afpr, bob, bfpr = people
    key = tmp_path / "alice.key"
    key.write_bytes(export(alice, "--export-secret-keys", afpr))
    cert = tmp_path / "bob.cert"
    cert.write_bytes(export(bob, "--export", bfpr))
    payload = (VECTORS / name).read_bytes()
    armored = sq("encrypt", "--recipient-cert", str(cert), "--signer-key", str(key), stdin=payload)
    u = unseal(bob, pgp_mime(armored, "..."), tmp_path / "work")
    assert u.fields["Subject"] == subject
    assert u.outer_fields["Subject"] == "..."
    assert u.signature is not None and u.signature.primary_fingerprint == afpr
    assert u.body is not None and u.body.startswith(body), u.body
    assert b"Subject:" not in u.body  # the legacy display is not shown
    assert len(u.parts) == others
    for p in u.parts:
        assert b"header-protection-legacy-display" not in p.data
        assert p.content_type != "text/rfc822-headers"


def entity(text: str) -> Entity:
    return parse_entity(text.replace("\n", "\r\n").encode())


def test_fields_the_payload_lacks_come_from_outside() -> None:
    inner = entity('Content-Type: text/plain; protected-headers="v1"\nSubject: inside\n\nx\n')
    outer = entity("From: a@example.org\nSubject: ...\nTo: b@example.net\n\nx\n")
    merged = merged_fields(inner, outer.headers)
    assert (merged["Subject"], merged["From"], merged["To"]) == (
        "inside",
        "a@example.org",
        "b@example.net",
    )


def test_a_body_that_only_looks_like_a_legacy_display_is_kept() -> None:
    # No hp-legacy-display marker: the text is the body, shown whole.
    e = entity("Content-Type: text/plain\n\nSubject: a line the sender wrote\n\nmore\n")
    assert strip_legacy_display(e, e.body) == e.body
    # A first child that is not only header lines is not a legacy display part.
    parent = entity('Content-Type: multipart/mixed; boundary=b; protected-headers="v1"\n\nx')
    child = entity(
        'Content-Type: text/plain; protected-headers="v1"\nContent-Disposition: inline\n\n'
        "Dear Bob,\n"
    )
    assert without_legacy_display(parent, [child]) == [child]
