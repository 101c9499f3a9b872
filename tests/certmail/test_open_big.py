"""certmail open of big messages: read as streams, parts decoded into files, progress told.

Issue 16 item 1. The sizes here are small (a few MB): the thresholds that send a
message down the streaming path are lowered for the test, so that the same
code runs that a 200 MB message meets. Speed and memory are measured by
benchmarks/bench_open.py, not here.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import pytest

import certmail.unseal as unseal_module
from certmail.api import Certmail
from certmail.compose import Headers, ScanRecord, new_message_id, now_date
from certmail.pipeline import GpgOptions
from certmail.seal import seal
from certmail.unseal import MAX_PARTS, Part, unseal_file
from keys.errors import MalformedError, VerificationError
from tests.fixtures.gpg_messages import (
    crlf,
    gpg,
    inner_entity,
    open_refused,
    same_named_parts,
)

pytestmark = pytest.mark.timeout(180)

ALICE, BOB = "alice@example.org", "bob@example.net"


@pytest.fixture
def streaming(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every message counts as big: read as it is, never mended or held whole first."""
    monkeypatch.setattr(unseal_module, "CHECK_CANONICAL", 1024)


def sealed_message(c: Any, tmp_path: Path, data: bytes, *, combined: bool = True) -> Path:
    """A message as ``certmail send`` seals it (RFC 3156 §6.2), or with ``combined=False``
    the §6.1 form (multipart/signed inside the encryption) other senders write."""
    att = tmp_path / "big.bin"
    att.write_bytes(data)
    h = Headers(ALICE, (BOB,), "big", new_message_id("example.org"), now_date())
    s = seal(
        c.alice.keyring,
        tmp_path / "seal",
        h,
        b"see attached\n",
        [(att, ScanRecord("x"))],
        gpg=GpgOptions(combined=combined),
    )
    return s.path


@pytest.mark.usefixtures("streaming")
@pytest.mark.parametrize("combined", [True, False], ids=["rfc3156-6.2", "rfc3156-6.1"])
def test_big_attachment_streams_to_a_file_and_saves(
    correspondents: Any, tmp_path: Path, combined: bool
) -> None:
    c = correspondents
    data = os.urandom(3 << 20)  # over unseal.INLINE: decoded into a file
    msg = sealed_message(c, tmp_path, data, combined=combined)
    seen: list[tuple[str, int, int]] = []
    with Certmail(c.bob.settings) as cm:
        o = cm.open(msg, save_dir=tmp_path / "save", progress=lambda *a: seen.append(a))
    assert o.sha256 == hashlib.sha256(msg.read_bytes()).hexdigest()
    assert o.manifest == "verified" and o.body == "see attached\n"
    (a,) = o.attachments
    assert a.size == len(data) and a.sha256 == hashlib.sha256(data).hexdigest()
    assert (tmp_path / "save" / "big.bin").read_bytes() == data
    stages = [s for s, _, _ in seen]
    # §6.2: the signature is checked as the message is decrypted, no pass of its own
    assert {"decrypt", "decode"} | (set() if combined else {"verify"}) <= set(stages)
    done = [d for s, d, t in seen if s == "decode"]
    assert done == sorted(done) and done[-1] == max(t for s, _, t in seen if s == "decode")


@pytest.mark.usefixtures("streaming")
def test_big_part_is_a_file_in_the_workdir(correspondents: Any, tmp_path: Path) -> None:
    c = correspondents
    data = os.urandom(2 << 20)
    msg = sealed_message(c, tmp_path, data)
    u = unseal_file(c.bob.keyring, msg, tmp_path / "work")
    (part,) = u.parts
    assert isinstance(part, Part) and isinstance(part.content, Path)
    assert part.content.parent == tmp_path / "work" and part.length == len(data)
    with part.open() as f:
        assert f.read() == data


@pytest.mark.usefixtures("streaming")
def test_big_message_with_bare_lf_line_ends_is_mended(correspondents: Any, tmp_path: Path) -> None:
    """A big message saved with LF line ends (as some MUAs do) opens from a CRLF copy."""
    c = correspondents
    data = os.urandom(2 << 20)
    msg = sealed_message(c, tmp_path, data)
    lf = tmp_path / "lf.eml"
    lf.write_bytes(msg.read_bytes().replace(b"\r\n", b"\n"))
    with Certmail(c.bob.settings) as cm:
        o = cm.open(lf, save_dir=tmp_path / "save")
    # The notarized bytes are the canonical (CRLF) form (docs/formats.md §7),
    # not the file as stored.
    assert o.sha256 == hashlib.sha256(msg.read_bytes()).hexdigest()
    assert (tmp_path / "save" / "big.bin").read_bytes() == data


def signed_message(alice_home: Path, inner: bytes) -> bytes:
    """A multipart/signed (RFC 3156 §5) message, not encrypted, made with the gpg CLI."""
    sig = gpg(alice_home, "--armor", "--detach-sign", "-u", ALICE, stdin=inner)
    return (
        b"From: alice@example.org\r\nTo: bob@example.net\r\nSubject: signed\r\n"
        b"MIME-Version: 1.0\r\n"
        b"Content-Type: multipart/signed; micalg=pgp-sha512;\r\n"
        b' protocol="application/pgp-signature"; boundary="sig"\r\n\r\n'
        b"--sig\r\n" + inner + b"\r\n--sig\r\n"
        b"Content-Type: application/pgp-signature\r\n\r\n" + crlf(sig) + b"\r\n--sig--\r\n"
    )


@pytest.mark.usefixtures("streaming")
def test_tampered_big_attachment_is_refused(correspondents: Any, tmp_path: Path) -> None:
    """The signature is checked beside the decoding; a changed byte still fails the open."""
    c = correspondents
    data = os.urandom(2 << 20)
    inner = inner_entity([(b'filename="big.bin"', data)])
    raw = signed_message(c.alice.keyring.gnupghome, inner)
    good = tmp_path / "good.eml"
    good.write_bytes(raw)
    with Certmail(c.bob.settings) as cm:
        o = cm.open(good, save_dir=tmp_path / "ok")
    assert o.signed and (tmp_path / "ok" / "big.bin").read_bytes() == data
    i = raw.index(b"Content-Transfer-Encoding: base64") + 100_000
    flipped = b"B" if raw[i : i + 1] != b"B" else b"C"
    bad = tmp_path / "bad.eml"
    bad.write_bytes(raw[:i] + flipped + raw[i + 1 :])
    open_refused(c.bob.settings, bad, tmp_path / "save", VerificationError)


def test_twenty_thousand_parts_refused(correspondents: Any, tmp_path: Path) -> None:
    """Issue 10 item 5: the bound holds at 20,000 parts (the split stops at the cap)."""
    c = correspondents
    eml = same_named_parts(c.alice.keyring.gnupghome, tmp_path / "m.eml", 20_000)
    open_refused(c.bob.settings, eml, tmp_path / "save", MalformedError, "too many parts")
    assert MAX_PARTS < 20_000


@pytest.mark.usefixtures("streaming")
def test_tampered_big_signed_part_inside_encryption_is_refused(
    correspondents: Any, tmp_path: Path
) -> None:
    """gpg checks the signed part in the decrypted file itself (the file cut after it):
    a part changed after signing, then encrypted, still fails the open."""
    c = correspondents
    home = c.alice.keyring.gnupghome
    data = os.urandom(2 << 20)  # the signed part is over unseal.INLINE
    inner = inner_entity([(b'filename="big.bin"', data)])
    sig = gpg(home, "--armor", "--detach-sign", "-u", ALICE, stdin=inner)
    i = inner.index(b"Content-Transfer-Encoding: base64") + 100_000
    flipped = inner[:i] + (b"B" if inner[i : i + 1] != b"B" else b"C") + inner[i + 1 :]

    def encrypted(signed: bytes) -> Path:
        payload = (
            b"Content-Type: multipart/signed; micalg=pgp-sha512;\r\n"
            b' protocol="application/pgp-signature"; boundary="sig"\r\n\r\n'
            b"--sig\r\n" + signed + b"\r\n--sig\r\n"
            b"Content-Type: application/pgp-signature\r\n\r\n" + crlf(sig) + b"\r\n--sig--\r\n"
        )
        ct = gpg(home, "--armor", "--encrypt", "-r", BOB, stdin=payload)
        eml = tmp_path / f"m{len(list(tmp_path.iterdir()))}.eml"
        eml.write_bytes(
            b"From: alice@example.org\r\nTo: bob@example.net\r\nSubject: [...]\r\n"
            b"MIME-Version: 1.0\r\n"
            b'Content-Type: multipart/encrypted; protocol="application/pgp-encrypted";'
            b' boundary="enc"\r\n\r\n'
            b"--enc\r\nContent-Type: application/pgp-encrypted\r\n\r\nVersion: 1\r\n\r\n"
            b"--enc\r\nContent-Type: application/octet-stream\r\n\r\n"
            + crlf(ct)
            + b"\r\n--enc--\r\n"
        )
        return eml

    with Certmail(c.bob.settings) as cm:
        o = cm.open(encrypted(inner), save_dir=tmp_path / "ok")
    assert o.signed and o.encrypted
    saved = tmp_path / "ok" / "big.bin"
    assert saved.read_bytes() == data
    # Linked from the work directory (now gone), with the mode a saved file gets.
    assert saved.stat().st_nlink == 1 and saved.stat().st_mode & 0o077 == 0
    open_refused(c.bob.settings, encrypted(flipped), tmp_path / "save", VerificationError)
