"""S/MIME (RFC 8551) end to end, with ``openssl cms`` as the independent peer both ways.

A test CA is made at test time (tests/fixtures/smime.py). Alice and Bob import
their PKCS #12 files and each other's certificates through the CLI; mail made
by ``openssl cms -sign`` / ``-encrypt`` opens with ``certmail open``, and mail
made by ``certmail send --smime`` verifies and decrypts with ``openssl cms``.
Hostile input (a forged signature, an expired certificate, one for another
address, a wrong key, a foreign CA) is each one error line, exit 3.
"""

from __future__ import annotations

import datetime
import json
import stat
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.cli import delivered, json_of, one_line_error, run, send_args
from tests.fixtures.smime import PASSPHRASE, Smime, SmimePki, openssl, smime_homes
from tests.fixtures.smime_mail import open_as_bob, outer_fields, signed_by, smime_message


@pytest.fixture
def smime(correspondents: Any, tmp_path: Path) -> Smime:
    return smime_homes(correspondents, tmp_path)


def _encrypted_to(s: Smime, inner: bytes, cert: Path, *cipher: str) -> Path:
    """``inner`` (an S/MIME entity, outer fields removed) encrypted by ``openssl cms -encrypt``."""
    src = s.dir / "to-encrypt.mime"
    src.write_bytes(inner)
    out = openssl("cms", "-encrypt", "-in", str(src), *cipher, str(cert))
    path = s.dir / "encrypted.eml"
    path.write_bytes(outer_fields(s.alice.email, s.bob.email, "[...]") + out)
    return path


# ---------------------------------------------------------------- keys


def test_keys_import_and_list(smime: Smime) -> None:
    s = smime
    key = s.c.bob.home / "smime" / "key.pem"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert stat.S_IMODE(key.parent.stat().st_mode) == 0o700
    assert b"ENCRYPTED PRIVATE KEY" in key.read_bytes()  # kept under the p12's passphrase
    listed = json_of(run(s.c.bob, "keys", "smime", "list", "--json"))["certificates"]
    assert [(c["emails"], c["own"]) for c in listed] == [
        ([s.bob.email], True),
        ([s.alice.email], False),
    ]
    p = run(s.c.bob, "keys", "smime", "list")
    assert p.returncode == 0 and s.alice.email in p.stdout and p.stdout.startswith("own")


def test_keys_import_refusals(smime: Smime, tmp_path: Path) -> None:
    s = smime
    wrong = tmp_path / "wrong"
    wrong.write_text("not it\n")
    carol = s.pki.person("carol@example.com")
    p = run(s.c.bob, "keys", "smime", "import", str(carol.p12), CERTMAIL_PASSPHRASE_FILE=str(wrong))
    assert p.returncode == 1 and "wrong passphrase" in one_line_error(p)
    junk = tmp_path / "junk.p12"
    junk.write_bytes(b"\x30\x03\x02\x01\x03 not a pfx")
    p = run(s.c.bob, "keys", "smime", "import", str(junk), **s.env)
    assert p.returncode == 3 and "not a PKCS #12 file" in one_line_error(p)
    # A certificate from another CA is not imported (nothing trusted, nothing kept).
    other = SmimePki(tmp_path / "other", "Other Root").person("dave@example.com")
    p = run(s.c.bob, "keys", "smime", "import-cert", str(other.cert_pem), **s.env)
    assert p.returncode == 3 and "does not chain" in one_line_error(p)
    listed = json_of(run(s.c.bob, "keys", "smime", "list", "--json"))["certificates"]
    assert all("dave@example.com" not in c["emails"] for c in listed)
    # The passphrase from --passphrase-fd works as for OpenPGP.
    fd_file = tmp_path / "fd"
    fd_file.write_text(PASSPHRASE + "\n")
    import os
    import subprocess
    import sys

    r = os.open(fd_file, os.O_RDONLY)
    try:
        p2 = subprocess.run(
            [sys.executable, "-m", "certmail.cli.main", "--passphrase-fd", str(r),
             "keys", "smime", "import", str(carol.p12), "--json"],
            env=s.c.bob.env(), pass_fds=(r,), capture_output=True, text=True, timeout=60,
        )  # fmt: skip
    finally:
        os.close(r)
    assert p2.returncode == 0, p2.stderr
    assert json.loads(p2.stdout)["imported"]["emails"] == ["carol@example.com"]
    # A PKCS #12 file without a passphrase needs none (and its key is kept unencrypted, 0600).
    erin = s.pki.person("erin@example.com", passphrase="")
    p = run(s.c.bob, "keys", "smime", "import", str(erin.p12), "--json")
    assert p.returncode == 0, p.stderr
    key = s.c.bob.home / "smime" / "key.pem"
    assert b"BEGIN PRIVATE KEY" in key.read_bytes()
    assert stat.S_IMODE(key.stat().st_mode) == 0o600


# ---------------------------------------------------------------- openssl -> certmail


@pytest.mark.parametrize("opaque", [False, True], ids=["multipart-signed", "signed-data"])
def test_openssl_signed_opens(smime: Smime, opaque: bool) -> None:
    s = smime
    path = signed_by(s, s.alice, *(["-nodetach"] if opaque else []))
    o = json_of(open_as_bob(s, path, "--json"))
    assert o["signed"] and o["trusted"] and o["signer"] == s.alice.email
    assert o["signer_fingerprint"] == s.alice.cert.fingerprint(_sha256()).hex()
    assert o["body"] == "Please sign.\n" and not o["encrypted"]
    p = open_as_bob(s, path)
    assert p.returncode == 0
    assert f"good S/MIME signature from {s.alice.email}" in p.stderr.replace("\n", " ")
    v = json_of(run(s.c.bob, "verify", str(path), "--json", **s.env))
    assert v["smime"] == "valid" and v["signer"] == s.alice.email and v["pgp"] == "unsigned"


@pytest.mark.parametrize("cipher", ["-aes256", "-des3", "-aes-256-gcm"])
def test_openssl_signed_and_encrypted_opens(smime: Smime, cipher: str) -> None:
    """EnvelopedData (AES by cryptography, 3DES by openssl) and AuthEnvelopedData (RFC 5083)."""
    s = smime
    signed = signed_by(s, s.alice).read_bytes()
    inner = signed[signed.index(b"MIME-Version:") :]
    path = _encrypted_to(s, inner, s.bob.cert_pem, cipher)
    o = json_of(open_as_bob(s, path, "--json"))
    assert o["encrypted"] and o["signed"] and o["signer"] == s.alice.email
    assert o["body"] == "Please sign.\n"
    v = json_of(run(s.c.bob, "verify", str(path), "--json", **s.env))
    assert v["smime"] == "encrypted" and "inside the encryption" in v["warnings"][0]


def test_encrypted_only_is_named_unsigned(smime: Smime) -> None:
    """Encrypted but not signed: said so (not 'stripped'), and readable with --allow-unsigned."""
    s = smime
    path = _encrypted_to(s, smime_message(s.alice.email, s.bob.email), s.bob.cert_pem, "-aes256")
    p = open_as_bob(s, path)
    assert p.returncode == 3 and "not signed" in one_line_error(p)
    o = json_of(open_as_bob(s, path, "--allow-unsigned", "--json"))
    assert o["encrypted"] and not o["signed"] and o["body"] == "Please sign.\n"


# ---------------------------------------------------------------- hostile


def test_forged_signature(smime: Smime) -> None:
    s = smime
    path = signed_by(s, s.alice)
    path.write_bytes(path.read_bytes().replace(b"Please sign.", b"Please pay!!"))
    p = open_as_bob(s, path)
    assert p.returncode == 3 and "does not verify" in one_line_error(p)
    assert "Please pay" not in p.stdout
    p = run(s.c.bob, "verify", str(path), **s.env)
    assert p.returncode == 3 and "does not verify" in one_line_error(p)


def test_expired_certificate(smime: Smime) -> None:
    s = smime
    then = datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=90)
    old = s.pki.person(s.alice.email, stem="alice-old", now=then, days=30)
    p = open_as_bob(s, signed_by(s, old))
    assert p.returncode == 3 and "expired" in one_line_error(p)
    assert p.stdout == ""


def test_certificate_for_another_address(smime: Smime) -> None:
    s = smime
    carol = s.pki.person("carol@example.com")
    p = open_as_bob(s, signed_by(s, carol, sender=s.alice.email))
    line = one_line_error(p)
    assert p.returncode == 3 and "carol@example.com" in line and s.alice.email in line
    # A near miss is a miss: the address is compared whole.
    near = s.pki.person("alice@example.org.evil.test", stem="near")
    p = open_as_bob(s, signed_by(s, near, sender=s.alice.email))
    assert p.returncode == 3 and "not for alice@example.org" in one_line_error(p)


def test_wrong_key_for_decryption(smime: Smime) -> None:
    s = smime
    carol = s.pki.person("carol@example.com")
    signed = signed_by(s, s.alice).read_bytes()
    inner = signed[signed.index(b"MIME-Version:") :]
    for cipher in ("-aes256", "-aes-256-gcm"):
        p = open_as_bob(s, _encrypted_to(s, inner, carol.cert_pem, cipher))
        assert p.returncode == 3 and "not encrypted to your key" in one_line_error(p), cipher


def test_not_chaining_to_the_ca(smime: Smime, tmp_path: Path) -> None:
    s = smime
    mallory = SmimePki(tmp_path / "rogue", "Rogue Root").person(s.alice.email, stem="rogue")
    path = signed_by(s, mallory)
    p = open_as_bob(s, path)
    assert p.returncode == 3 and "does not chain" in one_line_error(p)
    # --smime-ca names the bundle on the command line (over CERTMAIL_SMIME_CA).
    p = open_as_bob(
        s, path, "--smime-ca", str(mallory.cert_pem.parent / "rogue-root.pem"), "--json"
    )
    assert p.returncode == 0 and json.loads(p.stdout)["signer"] == s.alice.email
    # The system store (no CA named) does not know the test CA either.
    p = run(s.c.bob, "open", str(signed_by(s, s.alice)), "--no-ack")
    assert p.returncode == 3 and "does not chain" in one_line_error(p)


# ---------------------------------------------------------------- certmail -> openssl


def test_send_smime_opens_with_openssl_and_certmail(smime: Smime, tmp_path: Path) -> None:
    s = smime
    att = tmp_path / "terms.txt"
    att.write_bytes(b"the terms\n")
    args = send_args(s.bob.email, "Contract", "--smime", "--attach", str(att), "--no-notarize")
    sent = json_of(run(s.c.alice, *args, stdin=b"Please sign.\n", **s.env))
    assert sent["signed"] and sent["encrypted"]
    eml = delivered(s.c, tmp_path, "in.eml")
    raw = eml.read_bytes()
    assert b"application/pkcs7-mime; smime-type=enveloped-data" in raw
    assert b"Subject: [...]" in raw and b"Please sign" not in raw
    # openssl decrypts it with Bob's key, then verifies Alice's signature to the CA.
    plain = openssl(
        "cms", "-decrypt", "-in", str(eml), "-recip", str(s.bob.cert_pem),
        "-inkey", str(s.bob.key_pem),
    )  # fmt: skip
    assert b"application/pkcs7-signature" in plain
    signed = tmp_path / "signed.eml"
    signed.write_bytes(plain)
    content = openssl(
        "cms", "-verify", "-in", str(signed), "-CAfile", str(s.pki.ca), "-purpose", "smimesign"
    )
    assert b"Subject: Contract" in content and b"certmail-manifest.json" in content
    # Bob's certmail opens it: signer named, manifest verified, attachment intact.
    o = json_of(open_as_bob(s, eml, "--save-dir", str(tmp_path / "save"), "--json"))
    assert o["signer"] == s.alice.email and o["manifest"] == "verified" and o["encrypted"]
    assert o["headers"]["Subject"] == "Contract" and o["sha256"] == sent["sha256"]
    assert (tmp_path / "save" / "terms.txt").read_bytes() == b"the terms\n"


def test_send_smime_signed_only_verifies_with_openssl(smime: Smime, tmp_path: Path) -> None:
    s = smime
    args = send_args(s.bob.email, "Note", "--smime", "--no-encrypt", "--no-notarize")
    json_of(run(s.c.alice, *args, stdin=b"Signed, not sealed.\n", **s.env))
    eml = delivered(s.c, tmp_path, "in.eml")
    content = openssl(
        "cms", "-verify", "-in", str(eml), "-CAfile", str(s.pki.ca), "-purpose", "smimesign"
    )
    assert b"Signed, not sealed." in content
    v = json_of(run(s.c.bob, "verify", str(eml), "--json", **s.env))
    assert v["smime"] == "valid" and v["signer"] == s.alice.email


def test_send_smime_refusals(smime: Smime, tmp_path: Path) -> None:
    s = smime
    # No certificate for the recipient: nothing sent, the hint names import-cert.
    args = send_args("carol@example.com", "X", "--smime", "--no-notarize")
    p = run(s.c.alice, *args, stdin=b"x\n", **s.env)
    assert p.returncode == 6 and "no S/MIME certificate for carol@example.com" in one_line_error(p)
    assert "import-cert" in p.stderr and s.c.sink.messages == []


def _sha256() -> Any:
    from cryptography.hazmat.primitives import hashes

    return hashes.SHA256()


def test_inbox_lists_and_opens_smime(smime: Smime, tmp_path: Path) -> None:
    """`inbox list` names the S/MIME signer and the protected subject; `inbox open` opens it."""
    s = smime
    args = send_args(s.bob.email, "Contract", "--smime", "--no-notarize")
    json_of(run(s.c.alice, *args, stdin=b"Please sign.\n", **s.env))
    maildir = tmp_path / "Maildir"
    for d in ("cur", "new", "tmp"):
        (maildir / d).mkdir(parents=True)
    (maildir / "new" / "1700000000.M1P1.test").write_bytes(s.c.sink.messages[-1].data)
    listed = json_of(run(s.c.bob, "inbox", "list", "--maildir", str(maildir), "--json", **s.env))
    (m,) = listed["messages"]
    assert m["signature"] == "good" and m["signer"] == s.alice.email
    assert m["subject"] == "Contract" and m["subject_protected"]
    o = json_of(
        run(s.c.bob, "inbox", "open", m["id"], "--maildir", str(maildir), "--no-ack", "--json",
            **s.env)
    )  # fmt: skip
    assert o["signer"] == s.alice.email and o["encrypted"] and o["body"] == "Please sign.\n"
    # --smime-ca on `inbox open` too: a bundle without the test CA refuses the signer.
    other = SmimePki(tmp_path / "other", "Other Root")
    p = run(s.c.bob, "inbox", "open", m["id"], "--maildir", str(maildir), "--no-ack",
            "--smime-ca", str(other.ca), **s.env)  # fmt: skip
    assert p.returncode == 3 and "does not chain" in one_line_error(p)


def test_garbage_smime_is_one_error(smime: Smime, tmp_path: Path) -> None:
    s = smime
    bad = tmp_path / "bad.eml"
    for body in (b"bm90IERFUg==\r\n", b"MAMCAQM=\r\n"):  # not DER; DER that is no CMS object
        bad.write_bytes(
            outer_fields(s.alice.email, s.bob.email)
            + b"MIME-Version: 1.0\r\nContent-Type: application/pkcs7-mime; name=smime.p7m\r\n"
            b"Content-Transfer-Encoding: base64\r\n\r\n" + body
        )
        p = open_as_bob(s, bad)
        assert p.returncode == 3 and "Traceback" not in p.stderr
        assert "S/MIME part" in one_line_error(p)


def test_certificate_not_for_signing_email(smime: Smime) -> None:
    """Key usage without digitalSignature, or an extended key usage without emailProtection."""
    from cryptography import x509
    from cryptography.x509.oid import ExtendedKeyUsageOID

    s = smime
    enc_only = x509.KeyUsage(False, False, True, False, False, False, False, False, False)
    p = open_as_bob(s, signed_by(s, s.pki.person(s.alice.email, stem="encr", usage=enc_only)))
    assert p.returncode == 3 and "not for S/MIME signing" in one_line_error(p)
    tls = x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH])
    p = open_as_bob(s, signed_by(s, s.pki.person(s.alice.email, stem="tls", eku=tls)))
    assert p.returncode == 3 and "not for S/MIME signing" in one_line_error(p)


def test_signature_without_certificates_uses_the_keyring(smime: Smime) -> None:
    """`-nocerts`: the signer's certificate comes from `import-cert`, still chained to the CA."""
    s = smime
    o = json_of(open_as_bob(s, signed_by(s, s.alice, "-nocerts"), "--json"))
    assert o["signer"] == s.alice.email and o["trusted"]


def test_ec_keys_both_ways(smime: Smime, tmp_path: Path) -> None:
    """An EC (P-256) recipient: certmail encrypts with ECDH (openssl), openssl decrypts, and
    Bob's certmail with his EC key opens what openssl encrypted to it."""
    s = smime
    bob_ec = s.pki.person(s.bob.email, stem="bob-ec", days=60, ec_key=True)
    json_of(run(s.c.bob, "keys", "smime", "import", str(bob_ec.p12), "--json", **s.env))
    json_of(run(s.c.alice, "keys", "smime", "import-cert", str(bob_ec.cert_pem), "--json", **s.env))
    args = send_args(s.bob.email, "EC", "--smime", "--no-notarize")
    json_of(run(s.c.alice, *args, stdin=b"Elliptic.\n", **s.env))
    eml = delivered(s.c, tmp_path, "ec.eml")
    plain = openssl(
        "cms", "-decrypt", "-in", str(eml), "-recip", str(bob_ec.cert_pem),
        "-inkey", str(bob_ec.key_pem),
    )  # fmt: skip
    assert b"application/pkcs7-signature" in plain
    o = json_of(open_as_bob(s, eml, "--json"))
    assert o["signer"] == s.alice.email and o["body"] == "Elliptic.\n"
    # And an EC signer: openssl signs with Bob's EC key; Alice's certmail verifies.
    src = tmp_path / "c.mime"
    src.write_bytes(smime_message(s.bob.email, s.alice.email))
    out = openssl("cms", "-sign", "-in", str(src), "-signer", str(bob_ec.cert_pem),
                  "-inkey", str(bob_ec.key_pem))  # fmt: skip
    signed = tmp_path / "ec-signed.eml"
    signed.write_bytes(outer_fields(s.bob.email, s.alice.email) + out)
    o = json_of(run(s.c.alice, "open", str(signed), "--no-ack", "--json", **s.env))
    assert o["signer"] == s.bob.email


def test_python_api_opens_smime_with_a_passphrase(smime: Smime) -> None:
    """`Certmail(settings, passphrase=...)` unlocks the S/MIME key as it does the OpenPGP one."""
    import dataclasses

    from certmail.api import Certmail
    from keys.errors import Error

    s = smime
    signed = signed_by(s, s.alice).read_bytes()
    path = _encrypted_to(s, signed[signed.index(b"MIME-Version:") :], s.bob.cert_pem, "-aes256")
    settings = dataclasses.replace(s.c.bob.settings, smime_ca=str(s.pki.ca))
    with Certmail(settings, passphrase=PASSPHRASE) as cm:
        r = cm.open(path)
    assert r.signer == s.alice.email and r.encrypted and r.trust == "x509"
    with Certmail(settings, passphrase="wrong") as cm:
        with pytest.raises(Error, match="wrong passphrase"):
            cm.open(path)
