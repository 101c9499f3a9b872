"""certmail open with hostile input: names, sizes, malware, forgeries. Nothing escapes save_dir."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from certmail.api import Certmail, safe_name
from certmail.compose import ScanRecord
from certmail.seal import seal
from keys.errors import ConflictError, Error, InfectedError, MalformedError, VerificationError
from tests.fixtures.clamd import eicar_file
from tests.fixtures.cli import one_line_error, run
from tests.fixtures.gpg_messages import crlf, gpg, hand_made, inner_entity


def files_under(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


HOSTILE = [
    (b'filename="../../etc/passwd"', "passwd"),
    (b'filename="/etc/shadow"', "shadow"),
    (b'filename="..\\\\..\\\\win.ini"', "win.ini"),
    (b"filename*=iso-8859-1''%E9t%E9.txt", "\u00e9t\u00e9.txt"),
    (b'filename="\xe9t\xe9-raw.txt"', None),  # raw 8-bit, not UTF-8: some safe name
    (b'filename=".."', "attachment-6.bin"),
    (b'filename=".hidden"', "hidden"),
    (b'filename="nul\\x00.txt"', None),
]


def test_hostile_names_stay_inside(correspondents: Any, tmp_path: Path) -> None:
    c = correspondents
    atts = [(params, f"content {i}".encode()) for i, (params, _) in enumerate(HOSTILE)]
    atts.append((b'filename="empty.txt"', b""))
    eml = tmp_path / "m.eml"
    eml.write_bytes(hand_made(c.alice.keyring.gnupghome, inner_entity(atts)))
    root = tmp_path / "root"
    save = root / "save"
    with Certmail(c.bob.settings) as cm:
        o = cm.open(eml, save_dir=save)
    assert files_under(root) == {"save"} | {
        f"save/{Path(a.saved_as).name}" for a in o.attachments if a.saved_as
    }
    names = [Path(a.saved_as).name for a in o.attachments if a.saved_as]
    assert len(names) == len(HOSTILE) + 1
    for (_, want), got in zip(HOSTILE, names, strict=False):
        if want is not None:
            assert got == want
        assert "/" not in got and not got.startswith(".") and "\x00" not in got
    assert (save / "passwd").read_bytes() == b"content 0"
    assert (save / "empty.txt").read_bytes() == b""
    assert any("unsafe" in w for w in o.warnings)
    assert not Path("/etc/passwd").read_bytes().startswith(b"content")


def test_symlink_in_save_dir_not_followed(correspondents: Any, tmp_path: Path) -> None:
    c = correspondents
    eml = tmp_path / "m.eml"
    eml.write_bytes(
        hand_made(c.alice.keyring.gnupghome, inner_entity([(b'filename="target.txt"', b"evil")]))
    )
    save = tmp_path / "save"
    save.mkdir()
    victim = tmp_path / "victim.txt"
    victim.write_bytes(b"precious")
    (save / "target.txt").symlink_to(victim)
    with Certmail(c.bob.settings) as cm:
        with pytest.raises(ConflictError):
            cm.open(eml, save_dir=save)
        with pytest.raises(Error, match="cannot write"):  # O_NOFOLLOW refuses the link
            cm.open(eml, save_dir=save, force=True)
    assert victim.read_bytes() == b"precious"


def test_infected_attachment_not_saved(
    correspondents: Any, clamd_socket: str, tmp_path: Path
) -> None:
    c = correspondents
    f = eicar_file(tmp_path)
    # A sender without a scanner: the manifest says "not scanned".
    s = seal(
        c.alice.keyring, tmp_path / "w", _headers(c), b"hi\n", [(f, ScanRecord("not scanned"))]
    )
    c.settings(c.bob, clamd=clamd_socket)
    save = tmp_path / "save"
    with Certmail(c.bob.settings) as cm, pytest.raises(InfectedError, match="Eicar"):
        cm.open(s.path, save_dir=save)
    assert not save.exists() or os.listdir(save) == []


def test_wrong_recipient_and_garbage(correspondents: Any, tmp_path: Path) -> None:
    c = correspondents
    s = seal(c.alice.keyring, tmp_path / "w", _headers(c, to="alice@example.org"), b"x\n")
    with Certmail(c.bob.settings) as cm:
        with pytest.raises(VerificationError, match="not encrypted to any of your keys"):
            cm.open(s.path)
        bad = tmp_path / "bad.eml"
        bad.write_bytes(b"From: x\r\nContent-Type: multipart/mixed; boundary=zz\r\n\r\n--zz\r\n")
        with pytest.raises(MalformedError):
            cm.open(bad, allow_unsigned=True)
        empty = tmp_path / "empty.eml"
        empty.write_bytes(b"")
        with pytest.raises(MalformedError, match="empty"):
            cm.open(empty)


def test_unsigned_needs_allow(correspondents: Any, tmp_path: Path) -> None:
    c = correspondents
    eml = tmp_path / "m.eml"
    eml.write_bytes(hand_made(c.alice.keyring.gnupghome, inner_entity([]), sign=False))
    with Certmail(c.bob.settings) as cm:
        with pytest.raises(VerificationError, match="not signed"):
            cm.open(eml)
        o = cm.open(eml, allow_unsigned=True)
    assert not o.signed and any("NOT signed" in w for w in o.warnings)


@pytest.mark.parametrize(
    ("declared", "want"),
    [
        ("a.txt", "a.txt"),
        ("../../etc/passwd", "passwd"),
        ("C:\\x\\y.doc", "y.doc"),
        ("", "attachment-1.bin"),
        (None, "attachment-1.bin"),
        ("...", "attachment-1.bin"),
        ("a\nb.txt", "a_b.txt"),
        ("x" * 300 + ".pdf", "x" * 196 + ".pdf"),
    ],
)
def test_safe_name(declared: str | None, want: str) -> None:
    assert safe_name(declared, 0) == want


def _headers(c: Any, to: str = "bob@example.net") -> Any:
    from certmail.compose import Headers

    return Headers(
        "alice@example.org", (to,), "s", "<x@example.org>", "Mon, 01 Jan 2024 00:00:00 +0000"
    )


# ------------------------------------------------ the signer must be the From address

#: Froms that contain the signer's address alice@example.org without being it.
FORGED_FROMS = [
    b"jimalice@example.org",
    b"alice@example.org.attacker.test",
    b'"alice@example.org" <ceo@example.org>',
    b"ceo@example.org (alice@example.org)",
]
GENUINE_FROMS = [b"alice@example.org", b"Alice <ALICE@Example.ORG>"]


def signed_by_alice(alice_home: Path, frm: bytes, *, encrypt: bool) -> bytes:
    """A message with From ``frm`` (outer and protected), signed with Alice's real key."""
    inner = inner_entity([]).replace(b"From: alice@example.org", b"From: " + frm)
    assert b"From: " + frm in inner
    if encrypt:
        return hand_made(alice_home, inner).replace(b"From: alice@example.org", b"From: " + frm)
    sig = gpg(alice_home, "--armor", "--detach-sign", "-u", "alice@example.org", stdin=inner)
    return (
        b"From: " + frm + b"\r\nTo: bob@example.net\r\nSubject: by hand\r\n"
        b"MIME-Version: 1.0\r\n"
        b"Content-Type: multipart/signed; micalg=pgp-sha512;\r\n"
        b' protocol="application/pgp-signature"; boundary="sig"\r\n\r\n'
        b"--sig\r\n" + inner + b"\r\n--sig\r\n"
        b"Content-Type: application/pgp-signature\r\n\r\n" + crlf(sig) + b"\r\n--sig--\r\n"
    )


@pytest.mark.parametrize("frm", FORGED_FROMS, ids=lambda f: f.decode())
def test_forged_from_refused_by_open_and_verify(
    correspondents: Any, tmp_path: Path, frm: bytes
) -> None:
    """Signed by alice@example.org, From only containing that text: refused, exit 3."""
    c = correspondents
    home = c.alice.keyring.gnupghome
    for encrypt in (True, False):
        eml = tmp_path / f"forged-{encrypt}.eml"
        eml.write_bytes(signed_by_alice(home, frm, encrypt=encrypt))
        p = run(c.bob, "open", str(eml), "--save-dir", str(tmp_path / "save"))
        assert p.returncode == 3 and p.stdout == "", p.stderr
        assert "signed by alice@example.org, but" in one_line_error(p)
        with Certmail(c.bob.settings) as cm, pytest.raises(VerificationError, match="signed by"):
            cm.open(eml, save_dir=tmp_path / "save")
    assert not (tmp_path / "save").exists()
    p = run(c.bob, "verify", str(eml))  # the signed-only one: verify checks its signature
    assert p.returncode == 3 and p.stdout == "", p.stderr
    assert "signed by alice@example.org, but" in one_line_error(p)


@pytest.mark.parametrize("frm", GENUINE_FROMS, ids=lambda f: f.decode())
def test_genuine_from_accepted_by_open_and_verify(
    correspondents: Any, tmp_path: Path, frm: bytes
) -> None:
    c = correspondents
    home = c.alice.keyring.gnupghome
    for encrypt in (True, False):
        eml = tmp_path / f"genuine-{encrypt}.eml"
        eml.write_bytes(signed_by_alice(home, frm, encrypt=encrypt))
        p = run(c.bob, "open", str(eml), "--json")
        assert p.returncode == 0, p.stderr
        o = json.loads(p.stdout)
        assert o["signer"] == "alice@example.org" and o["trusted"]
        assert o["body"] == "Hello from gpg"
    p = run(c.bob, "verify", str(eml))
    assert p.returncode == 0 and "pgp: valid signature by alice@example.org" in p.stdout
