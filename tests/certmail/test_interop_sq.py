"""Messages signed by Sequoia ``sq`` (binary notations) open with the right verdict.

``sq`` puts a binary ``salt@notations.sequoia-pgp.org`` notation in every
signature; gpg reports it as raw bytes in ``NOTATION_DATA``. Issue 10 item 13:
``certmail open`` of such a message gave "unexpected AttributeError". Here the
sender is a key made by ``sq``, the message is signed (RFC 3156 §6.1 nested
and §6.2 combined) and encrypted to Bob by ``sq``, and Bob opens it with the
``certmail`` CLI.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.cli import run
from tests.fixtures.gpg_messages import crlf
from tests.fixtures.sequoia import SqKey, sq

CAROL = "carol@example.com"


def _inner(sender: str = CAROL) -> bytes:
    return (
        b'Content-Type: multipart/mixed; boundary="in"; hp="cipher"\r\n'
        b"From: " + sender.encode() + b"\r\nTo: bob@example.net\r\nSubject: from sq\r\n"
        b"Message-ID: <sq@example.com>\r\n\r\n"
        b"--in\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nHello from Sequoia\r\n"
        b"--in--\r\n"
    )


def _sq_message(signer: SqKey, bob_cert: Path, inner: bytes, *, combined: bool) -> bytes:
    """An RFC 3156 message signed and encrypted by ``sq``, assembled by hand."""
    if combined:
        ct = sq(
            "encrypt",
            "--recipient-cert",
            str(bob_cert),
            "--signer-key",
            str(signer.key_file),
            stdin=inner,
        )
    else:
        sig = signer.sign_detached(inner).encode()
        ct = sq("encrypt", "--recipient-cert", str(bob_cert), stdin=_signed(inner, sig))
    return _encrypted(ct)


def _signed(inner: bytes, sig: bytes) -> bytes:
    """RFC 3156 §5 multipart/signed of ``inner`` with the detached signature ``sig``."""
    return (
        b"Content-Type: multipart/signed; micalg=pgp-sha512;\r\n"
        b' protocol="application/pgp-signature"; boundary="sig"\r\n\r\n'
        b"--sig\r\n" + inner + b"\r\n--sig\r\n"
        b"Content-Type: application/pgp-signature\r\n\r\n" + crlf(sig) + b"\r\n--sig--\r\n"
    )


def _encrypted(ct: bytes) -> bytes:
    """RFC 3156 §4 multipart/encrypted around the OpenPGP message ``ct``, from Carol."""
    return (
        b"From: " + CAROL.encode() + b"\r\nTo: bob@example.net\r\nSubject: [...]\r\n"
        b"MIME-Version: 1.0\r\n"
        b'Content-Type: multipart/encrypted; protocol="application/pgp-encrypted";'
        b' boundary="enc"\r\n\r\n'
        b"--enc\r\nContent-Type: application/pgp-encrypted\r\n\r\nVersion: 1\r\n\r\n"
        b"--enc\r\nContent-Type: application/octet-stream\r\n\r\n" + crlf(ct) + b"\r\n--enc--\r\n"
    )


@pytest.fixture
def carol(correspondents: Any, tmp_path: Path) -> SqKey:
    """Carol's key made by sq; Bob has imported and trusted it."""
    key = SqKey.generate(tmp_path / "carol", f"Carol <{CAROL}>")
    bob = correspondents.bob.keyring
    bob.import_keys(key.cert.encode())
    bob.trust(CAROL)
    return key


def _bob_cert(c: Any, tmp_path: Path) -> Path:
    path = tmp_path / "bob.cert"
    path.write_text(c.bob.keyring.export_public(c.bob.email))
    return path


@pytest.mark.parametrize("combined", [False, True], ids=["rfc3156-6.1", "rfc3156-6.2"])
def test_sq_signed_message_opens_as_trusted(
    correspondents: Any, carol: SqKey, tmp_path: Path, combined: bool
) -> None:
    c = correspondents
    eml = tmp_path / "sq.eml"
    eml.write_bytes(_sq_message(carol, _bob_cert(c, tmp_path), _inner(), combined=combined))
    p = run(c.bob, "open", str(eml), "--json", "--no-ack", "--no-mdn")
    assert p.returncode == 0, p.stderr
    assert "Traceback" not in p.stderr and "AttributeError" not in p.stderr
    doc = json.loads(p.stdout)
    assert doc["signed"] is True and doc["trusted"] is True
    assert doc["signer"] == CAROL
    assert doc["signer_primary_fingerprint"] == carol.fingerprint and doc["trust"] != "unknown"
    assert doc["body"] == "Hello from Sequoia"


def test_sq_signature_by_an_untrusted_key_is_not_trusted(
    correspondents: Any, tmp_path: Path
) -> None:
    """Mallory's sq key names Carol; Bob never certified it: shown as not trusted, with the
    fingerprint to check (docs/send-open.md), not a crash and not "trusted"."""
    c = correspondents
    mallory = SqKey.generate(tmp_path / "mallory", f"Carol <{CAROL}>")
    c.bob.keyring.import_keys(mallory.cert.encode())
    eml = tmp_path / "forged.eml"
    eml.write_bytes(_sq_message(mallory, _bob_cert(c, tmp_path), _inner(), combined=False))
    p = run(c.bob, "open", str(eml), "--json", "--no-ack", "--no-mdn")
    assert "Traceback" not in p.stderr and "AttributeError" not in p.stderr
    assert p.returncode == 0, p.stderr
    doc = json.loads(p.stdout)
    assert doc["signed"] is True and doc["trusted"] is False and doc["trust"] == "unknown"
    assert doc["signer_primary_fingerprint"] == mallory.fingerprint
    assert any(mallory.fingerprint in w for w in doc["warnings"])


def test_sq_signature_over_other_bytes_is_a_bad_signature(
    correspondents: Any, carol: SqKey, tmp_path: Path
) -> None:
    """Carol's sq signature moved onto other text: refused as a bad signature."""
    c = correspondents
    sig = carol.sign_detached(_inner()).encode()
    changed = _inner().replace(b"Hello from Sequoia", b"Pay to account 666")
    ct = sq("encrypt", "--recipient-cert", str(_bob_cert(c, tmp_path)), stdin=_signed(changed, sig))
    eml = tmp_path / "moved.eml"
    eml.write_bytes(_encrypted(ct))
    p = run(c.bob, "open", str(eml), "--json", "--no-ack", "--no-mdn")
    assert "Traceback" not in p.stderr and "AttributeError" not in p.stderr
    assert p.returncode != 0, p.stdout
    assert p.stderr.startswith("certmail: error:") and "Pay to account" not in p.stdout
