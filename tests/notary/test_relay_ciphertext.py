"""Scan bypass with false evidence (issue 10, item 6b): a label is not ciphertext.

The relay skips the virus scan, and records ``encrypted: true``, only for
bytes that really are OpenPGP (RFC 9580) or CMS EnvelopedData (RFC 5652)
ciphertext; everything else, and whatever lies outside the ciphertext, is
scanned by the private clamd fixture (EICAR).
"""

from __future__ import annotations

import base64
import datetime
import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from notary.relay.ciphertext import armored_openpgp_message, is_cms_enveloped, is_openpgp_message
from notary.relay.content import inspect
from tests.fixtures.clamd import EICAR
from tests.notary.relay_helpers import ALICE, BOB, RelayNotary, configure, gpg, message


@pytest.fixture(scope="module")
def armored() -> bytes:
    """A real OpenPGP message (SKESK + SEIPD) whose plaintext is EICAR, CRLF armor."""
    return gpg("--symmetric", "--armor", data=EICAR).replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def _pgp_mime(mid: str, armor: bytes, *, preamble: str = "OpenPGP/MIME (RFC 3156)") -> bytes:
    body = (
        f"{preamble}\r\n--b\r\nContent-Type: application/pgp-encrypted\r\n\r\nVersion: 1\r\n"
        "--b\r\nContent-Type: application/octet-stream\r\n\r\n"
        + armor.decode().strip()
        + "\r\n--b--\r\n"
    )
    return message(
        mid,
        body=body,
        extra=(
            "MIME-Version: 1.0\r\nContent-Type: multipart/encrypted; "
            'protocol="application/pgp-encrypted"; boundary="b"\r\n'
        ),
    )


def _cms_enveloped(data: bytes) -> bytes:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.hazmat.primitives.serialization import Encoding, pkcs7
    from cryptography.x509.oid import NameOID

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "bob")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    return pkcs7.PKCS7EnvelopeBuilder().set_data(data).add_recipient(cert).encrypt(Encoding.DER, [])


# --- the recognisers ---------------------------------------------------------------------


def test_real_openpgp_ciphertext_is_recognised(armored: bytes) -> None:
    assert armored_openpgp_message(armored) is not None
    binary = gpg("--symmetric", data=b"hello")
    assert is_openpgp_message(binary)


def test_what_is_not_openpgp_ciphertext_is_not(armored: bytes) -> None:
    signed = gpg("--symmetric", "--armor", data=b"x")  # then tampered below
    fake = (
        b"-----BEGIN PGP MESSAGE-----\r\n\r\n"
        + base64.b64encode(EICAR)
        + b"\r\n-----END PGP MESSAGE-----\r\n"
    )
    assert armored_openpgp_message(fake) is None  # armor decodes, but EICAR is no packet
    assert armored_openpgp_message(EICAR) is None
    assert armored_openpgp_message(armored + EICAR) is None  # something after the armor
    assert armored_openpgp_message(signed.replace(b"-----END", b"-----END PGP SIGNATURE")) is None
    binary = gpg("--symmetric", data=b"hello")
    assert not is_openpgp_message(binary[:-1])  # truncated
    assert not is_openpgp_message(binary + b"\xc0")  # trailing garbage
    # A literal-data packet (tag 11) alone is plaintext, not ciphertext.
    assert not is_openpgp_message(bytes([0xC0 | 11, 6]) + b"b\0abcd")
    # A session-key packet with nothing encrypted after it is not a message.
    assert not is_openpgp_message(bytes([0xC3, 4, 4, 9, 3, 0]))


def test_cms_enveloped_data_is_recognised() -> None:
    assert is_cms_enveloped(_cms_enveloped(EICAR))
    assert not is_cms_enveloped(_cms_enveloped(EICAR) + b"\0")
    assert not is_cms_enveloped(EICAR)
    from asn1crypto import cms

    plain = cms.ContentInfo({"content_type": "data", "content": EICAR}).dump()
    assert not is_cms_enveloped(plain)


def test_inspect_needs_ciphertext_not_a_label(armored: bytes) -> None:
    assert inspect(_pgp_mime("real", armored)).encrypted
    label_only = _pgp_mime("label", base64.encodebytes(EICAR).replace(b"\n", b"\r\n"))
    assert not inspect(label_only).encrypted
    three = _pgp_mime("three", armored).replace(
        b"\r\n--b--", b"\r\n--b\r\nContent-Type: text/plain\r\n\r\nhi\r\n--b--"
    )
    assert not inspect(three).encrypted
    smime = message(
        "smime",
        body=base64.encodebytes(_cms_enveloped(EICAR)).decode().replace("\n", "\r\n"),
        extra=(
            "MIME-Version: 1.0\r\nContent-Transfer-Encoding: base64\r\n"
            "Content-Type: application/pkcs7-mime; smime-type=enveloped-data"
            "\r\n"
        ),
    )
    assert inspect(smime).encrypted
    fake_smime = message(
        "fsmime",
        body=base64.encodebytes(EICAR).decode().replace("\n", "\r\n"),
        extra=(
            "MIME-Version: 1.0\r\nContent-Transfer-Encoding: base64\r\n"
            "Content-Type: application/pkcs7-mime; smime-type=enveloped-data"
            "\r\n"
        ),
    )
    assert not inspect(fake_smime).encrypted


# --- through the relay, with clamd --------------------------------------------------------


@pytest.fixture
def scanning_relay(notary_dir: Path, smtp_sink: Any, clamd_socket: str) -> Iterator[RelayNotary]:
    configure(notary_dir, relay_retry_initial=0.2, clamd=clamd_socket)
    r = RelayNotary(notary_dir, smtp_sink.port)
    r.start()
    yield r
    r.proc.stop()


def _data(r: RelayNotary, data: bytes) -> tuple[int, bytes]:
    s = r.connect()
    try:
        s.login(ALICE, r.token)
        s.mail(ALICE)
        s.rcpt(BOB)
        return s.data(data)
    finally:
        s.close()


def test_eicar_under_an_encrypted_label_is_scanned(
    scanning_relay: RelayNotary, smtp_sink: Any, armored: bytes
) -> None:
    r = scanning_relay
    label_only = _pgp_mime(
        "label", b"-----BEGIN PGP MESSAGE-----\r\n\r\n" + EICAR + b"\r\n-----END PGP MESSAGE-----"
    )
    code, text = _data(r, label_only)
    assert code == 554 and b"virus" in text, (code, text)
    (ev,) = r.events(hashlib.sha256(label_only).hexdigest())
    assert ev["event"] == "VirusDetected"
    # Real ciphertext, but EICAR beside it in the preamble: the preamble is scanned.
    beside = _pgp_mime("beside", armored, preamble=EICAR.decode())
    code, text = _data(r, beside)
    assert code == 554 and b"virus" in text, (code, text)
    assert smtp_sink.messages == []
