"""certmail.seal / certmail.unseal: RFC 3156 with real gpg, and the ways a message can be bad."""

from __future__ import annotations

import base64
import re
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from certmail.compose import Headers, ScanRecord
from certmail.mime import canonicalize, parse_entity, split_multipart
from certmail.rfc3156 import OBSCURED_SUBJECT, dearmor, encrypted_payload, signed_parts
from certmail.seal import Sealed, seal
from certmail.unseal import check_manifest, unseal
from keys.errors import MalformedError, VerificationError
from keys.gpg import Keyring

ALICE = "alice@example.org"
BOB = "bob@example.net"


class People:
    def __init__(self, alice: Keyring, bob: Keyring, mallory: Keyring) -> None:
        self.alice, self.bob, self.mallory = alice, bob, mallory


@pytest.fixture
def people(keyring_factory: Callable[[str, str], tuple[Keyring, str]]) -> People:
    """Alice and Bob know and trust each other; Mallory knows both public keys."""
    alice, _ = keyring_factory(ALICE, "Alice")
    bob, _ = keyring_factory(BOB, "Bob")
    mallory, _ = keyring_factory("mallory@example.org", "Mallory")
    for me, other, addr in ((alice, bob, BOB), (bob, alice, ALICE)):
        me.import_keys(other.export_public(addr).encode())
        me.trust(addr)
    for addr, kr in ((ALICE, alice), (BOB, bob)):
        mallory.import_keys(kr.export_public(addr).encode())
        mallory.trust(addr)
    return People(alice, bob, mallory)


def headers(subject: str = "Secret: the deal", frm: str = ALICE) -> Headers:
    return Headers(frm, (BOB,), subject, "<m1@example.org>", "Mon, 01 Jan 2024 00:00:00 +0000")


def make(kr: Keyring, tmp: Path, files: list[Path] | None = None, **kw: Any) -> Sealed:
    return seal(
        kr,
        tmp,
        kw.pop("h", headers()),
        kw.pop("body", b"Hello Bob\n"),
        [(f, ScanRecord("clean", "ClamAV")) for f in files or []],
        **kw,
    )


def test_encrypted_roundtrip_protects_subject(people: People, tmp_path: Path) -> None:
    f = tmp_path / "deal.txt"
    f.write_bytes(b"terms\n")
    s = make(people.alice, tmp_path / "w", [f])
    raw = s.path.read_bytes()
    top = parse_entity(raw)
    assert top.content_type == "multipart/encrypted"
    assert top.headers["Subject"] == OBSCURED_SUBJECT
    assert b"Secret: the deal" not in raw and b"terms" not in raw
    assert top.headers["Autocrypt"].startswith("addr=alice@example.org;")
    u = unseal(people.bob, raw, tmp_path / "o")
    check_manifest(u)
    assert u.encrypted and u.header_protection == "cipher"
    assert u.signature is not None and u.signature.signer_email == ALICE and u.signature.trusted
    assert u.fields["Subject"] == "Secret: the deal"
    assert u.body == b"Hello Bob\r\n"
    assert [(p.filename, p.data) for p in u.parts] == [("deal.txt", b"terms\n")]
    # Encrypted to self too: Alice can read her own sent copy.
    assert unseal(people.alice, raw, tmp_path / "o2").fields["Subject"] == "Secret: the deal"


def test_signed_only_is_exact_bytes(people: People, tmp_path: Path) -> None:
    s = make(people.alice, tmp_path / "w", encrypt=False)
    raw = s.path.read_bytes()
    top = parse_entity(raw)
    assert top.headers["Subject"] == "Secret: the deal"
    sp = signed_parts(top)
    assert sp.signed == (tmp_path / "w" / "inner.mime").read_bytes()
    assert sp.micalg in ("pgp-sha256", "pgp-sha512")
    u = unseal(people.bob, raw, tmp_path / "o")
    check_manifest(u)
    assert u.header_protection == "clear" and not u.encrypted


def test_autocrypt_keydata_is_the_senders_key(
    people: People, tmp_path: Path, gnupghome_factory: Callable[[], Path]
) -> None:
    raw = make(people.alice, tmp_path / "w").path.read_bytes()
    value = str(parse_entity(raw).headers["Autocrypt"])
    keydata = base64.b64decode("".join(value.split("keydata=", 1)[1].split()))
    assert keydata == dearmor(people.alice.export_public(ALICE))
    fresh = Keyring(gnupghome_factory())
    fresh.import_keys(keydata)
    assert ALICE in fresh.key_for(ALICE).emails


def test_tampered_signed_part_fails(people: People, tmp_path: Path) -> None:
    raw = make(people.alice, tmp_path / "w", encrypt=False).path.read_bytes()
    forged = raw.replace(b"Hello Bob", b"Hello Eve")
    assert forged != raw
    with pytest.raises(VerificationError, match="BAD signature"):
        unseal(people.bob, forged, tmp_path / "o")


def test_signature_by_another_key_fails(people: People, tmp_path: Path) -> None:
    raw = make(people.alice, tmp_path / "w", encrypt=False).path.read_bytes()
    sp = signed_parts(parse_entity(raw))
    sig, _ = people.mallory.sign_detached(sp.signed, "mallory@example.org")
    old = raw[
        raw.index(b"-----BEGIN PGP SIGNATURE") : raw.index(b"-----END PGP SIGNATURE-----") + 27
    ]
    forged = raw.replace(old, canonicalize(sig).strip())
    # Bob does not know Mallory's key at all.
    with pytest.raises(VerificationError, match="unknown key"):
        unseal(people.bob, forged, tmp_path / "o")


def test_signer_must_be_the_sender(people: People, tmp_path: Path) -> None:
    # Mallory signs with her own key a message claiming to be from Alice.
    mallory_home = people.mallory
    people.bob.import_keys(mallory_home.export_public("mallory@example.org").encode())
    people.bob.trust("mallory@example.org")
    mallory_home.import_keys(people.alice.export_public(ALICE).encode())
    h = headers(frm="mallory@example.org")
    s = make(mallory_home, tmp_path / "w", h=h, encrypt=False)
    raw = s.path.read_bytes()
    spoof = raw.replace(b"From: mallory@example.org", b"From: alice@example.org")
    with pytest.raises(VerificationError):
        unseal(people.bob, spoof, tmp_path / "o")


def test_stripped_signature_is_refused(people: People, tmp_path: Path) -> None:
    raw = make(people.alice, tmp_path / "w", sign=False).path.read_bytes()
    with pytest.raises(VerificationError, match="not signed"):
        unseal(people.bob, raw, tmp_path / "o")
    u = unseal(people.bob, raw, tmp_path / "o2", allow_unsigned=True)
    assert u.signature is None and u.body == b"Hello Bob\r\n"


def test_signed_only_with_signature_part_removed(people: People, tmp_path: Path) -> None:
    raw = make(people.alice, tmp_path / "w", encrypt=False).path.read_bytes()
    top = parse_entity(raw)
    first = split_multipart(top)[0]
    stripped = top.header_block.split(b"Content-Type: multipart/signed")[0] + first
    with pytest.raises(VerificationError, match="not signed"):
        unseal(people.bob, stripped, tmp_path / "o")


def test_wrong_key(people: People, tmp_path: Path, keyring_factory: Any) -> None:
    raw = make(people.alice, tmp_path / "w").path.read_bytes()
    with pytest.raises(VerificationError, match="not encrypted to any of your keys"):
        unseal(people.mallory, raw, tmp_path / "o")


def test_truncated_ciphertext(people: People, tmp_path: Path) -> None:
    raw = make(people.alice, tmp_path / "w").path.read_bytes()
    cut = raw[: len(raw) // 2]
    with pytest.raises(MalformedError):
        unseal(people.bob, cut, tmp_path / "o")
    # Truncated inside the armor but with the MIME closing intact.
    armored = encrypted_payload(parse_entity(raw))
    lines = armored.split(b"\r\n")
    shorter = b"\r\n".join(lines[:4] + lines[-4:])
    with pytest.raises(MalformedError):
        unseal(people.bob, raw.replace(armored, shorter), tmp_path / "o2")


def test_flipped_ciphertext_byte(people: People, tmp_path: Path) -> None:
    raw = make(people.alice, tmp_path / "w").path.read_bytes()
    armored = encrypted_payload(parse_entity(raw))
    lines = armored.split(b"\r\n")
    i = len(lines) // 2
    line = bytearray(lines[i])
    line[10] = ord("A") if line[10] != ord("A") else ord("B")
    lines[i] = bytes(line)
    with pytest.raises((MalformedError, VerificationError)):
        unseal(people.bob, raw.replace(armored, b"\r\n".join(lines)), tmp_path / "o")


@pytest.mark.parametrize(
    "raw",
    [
        b"not a message at all",
        b"Content-Type: multipart/encrypted; boundary=x\r\n\r\n--x\r\nfoo\r\n",
        b'Content-Type: multipart/signed; protocol="application/pgp-signature"; boundary=b\r\n\r\n'
        b"--b\r\nContent-Type: text/plain\r\n\r\nx\r\n--b--\r\n",
        b'Content-Type: multipart/encrypted; protocol="application/pgp-encrypted"; boundary=b\r\n'
        b"\r\n--b\r\nContent-Type: application/pgp-encrypted\r\n\r\nVersion: 1\r\n--b\r\n"
        b"Content-Type: application/octet-stream\r\n\r\nnot armor\r\n--b--\r\n",
        b"\x00\x01\x02",
        b"   \r\n",
    ],
)
def test_malformed_mime(people: People, tmp_path: Path, raw: bytes) -> None:
    with pytest.raises(MalformedError):
        unseal(people.bob, raw, tmp_path / "o")


def test_manifest_must_match(people: People, tmp_path: Path) -> None:
    """A sender whose manifest lies about an attachment is caught."""
    f = tmp_path / "a.txt"
    f.write_bytes(b"original")
    w = tmp_path / "w"
    s = make(people.alice, w, [f], encrypt=False)
    u = unseal(people.bob, s.path.read_bytes(), tmp_path / "o")
    u.parts[0] = type(u.parts[0])(u.parts[0].content_type, "a.txt", b"changed", True)
    with pytest.raises(VerificationError, match="does not match the manifest"):
        check_manifest(u)


def test_lf_line_endings_still_verify(people: People, tmp_path: Path) -> None:
    """Messages saved by MUAs with bare LF are canonicalised before verification."""
    raw = make(people.alice, tmp_path / "w", encrypt=False).path.read_bytes()
    u = unseal(people.bob, raw.replace(b"\r\n", b"\n"), tmp_path / "o")
    assert u.signature is not None


def test_outer_headers_carry_no_secrets(people: People, tmp_path: Path) -> None:
    raw = make(people.alice, tmp_path / "w").path.read_bytes()
    head = raw.split(b"\r\n\r\n", 1)[0].decode()
    assert re.search(r"^Subject: \[\.\.\.\]\r$", head, re.M)
    proc = subprocess.run(
        ["gpg", "--list-packets"],
        input=encrypted_payload(parse_entity(raw)),
        capture_output=True,
        check=False,
    )
    assert b"pubkey enc packet" in proc.stdout
    assert proc.stdout.count(b":pubkey enc packet:") == 2  # Bob and Alice herself


@pytest.mark.parametrize("self_armor", [True, False], ids=["certmail-armors", "gpg-armors"])
def test_multi_megabyte_message_decrypts_with_plain_gpg(
    people: People, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, self_armor: bool
) -> None:
    """The streaming pipeline (GNU base64 attachment encoding, armor checked through
    base64 -d) yields a message plain ``gpg --decrypt`` reads without a warning,
    whether certmail writes the armor (binary from gpg, libgcrypt's CRC-24) or gpg."""
    import os

    import certmail.pipeline

    if not self_armor:
        monkeypatch.setattr(certmail.pipeline, "fast_crc24", lambda: False)
    att = tmp_path / "big.bin"
    att.write_bytes(os.urandom(3 * 1024 * 1024 + 17))  # several pipe/read chunks
    s = make(people.alice, tmp_path / "w", [att])
    raw = s.path.read_bytes()
    armored = encrypted_payload(parse_entity(raw))
    assert re.search(rb"\r\n=[A-Za-z0-9+/]{4}\r\n-----END PGP MESSAGE-----", armored)
    p = subprocess.run(
        ["gpg", "--homedir", str(people.bob.gnupghome), "--batch", "--status-fd", "2", "--decrypt"],
        input=armored,
        capture_output=True,
        check=False,
    )
    assert p.returncode == 0, p.stderr
    assert b"DECRYPTION_OKAY" in p.stderr and b"invalid radix64" not in p.stderr
    u = unseal(people.bob, raw, tmp_path / "open")
    check_manifest(u)
    assert [x.data for x in u.parts] == [att.read_bytes()]
    # The CRC-24 line is checked by gpg, so a wrong one would have been caught.
    m = re.search(rb"\r\n=([A-Za-z0-9+/]{4})\r\n-----END", armored)
    assert m is not None
    crc = base64.b64decode(m.group(1))
    bad = base64.b64encode(bytes([crc[0] ^ 1]) + crc[1:])
    broken = armored[: m.start(1)] + bad + armored[m.end(1) :]
    p = subprocess.run(
        ["gpg", "--homedir", str(people.bob.gnupghome), "--batch", "--decrypt"],
        input=broken,
        capture_output=True,
        check=False,
    )
    assert p.returncode != 0 and b"CRC error" in p.stderr


def test_manifest_from_compared_exactly(people: People, tmp_path: Path) -> None:
    """The manifest's from is the From address itself, not text inside it."""
    s = make(people.alice, tmp_path / "w", encrypt=False)
    u = unseal(people.bob, s.path.read_bytes(), tmp_path / "o")
    assert u.sender == ALICE
    check_manifest(u)
    assert u.manifest is not None
    for claimed in ("lice@example.org", "alice@example.or", "", None):
        u.manifest["from"] = claimed
        with pytest.raises(VerificationError, match="From address does not match"):
            check_manifest(u)
    u.manifest["from"] = ALICE.upper()
    check_manifest(u)


def test_any_user_id_address_of_the_signing_key(people: People, tmp_path: Path) -> None:
    """A From that is another user ID of the signing key (not the one gpg reports) is the
    signer too (an address on no user ID of it is not: test_signer_must_be_the_sender)."""
    m = people.mallory
    fpr = m.key_for("mallory@example.org").fingerprint
    subprocess.run(
        [
            "gpg",
            "--homedir",
            str(m.gnupghome),
            "--batch",
            "--quick-add-uid",
            fpr,
            "Mallory <mallory@other.example>",
        ],
        check=True,
        capture_output=True,
    )
    people.bob.import_keys(m.export_public(fpr).encode())
    for frm in ("mallory@example.org", "mallory@other.example"):
        s = make(m, tmp_path / frm, h=headers(frm=frm), encrypt=False)
        u = unseal(people.bob, s.path.read_bytes(), tmp_path / f"o-{frm}")
        check_manifest(u)
        assert u.sender == frm and u.signature is not None
        assert u.signature.primary_fingerprint == fpr
