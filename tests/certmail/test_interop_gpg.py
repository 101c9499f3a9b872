"""Interop with the plain gpg command line, both ways (RFC 3156).

1. A certmail message (RFC 3156 §6.2) decrypts with ``gpg --decrypt``, which
   checks the sender's signature as it decrypts; a flipped byte is refused.
2. A message signed and encrypted with the gpg CLI and assembled by hand opens
   with certmail (both the §6.1 nested form and the §6.2 combined form).
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from certmail.api import Certmail
from certmail.mime import parse_entity
from certmail.rfc3156 import dearmor, encrypted_payload
from keys.gpg.status import check_signed_by, status_values
from tests.fixtures.gpg_messages import hand_made, inner_entity


def test_certmail_message_with_plain_gpg(correspondents: Any, tmp_path: Path) -> None:
    """``certmail send`` writes RFC 3156 §6.2: plain ``gpg --decrypt`` gives the inner
    entity and checks Alice's signature as it decrypts; one flipped byte of the
    ciphertext and it refuses."""
    c = correspondents
    att = tmp_path / "data.bin"
    att.write_bytes(bytes(range(256)) * 40)
    with Certmail(c.alice.settings) as cm:
        cm.send(
            to=[c.bob.email], subject="interop", body="for gpg\n", attachments=[att], notarize=False
        )
    raw = c.sink.messages[0].data
    armored = encrypted_payload(parse_entity(raw))
    bob_home = c.bob.keyring.gnupghome
    cmd = ["gpg", "--homedir", str(bob_home), "--batch", "--status-fd", "2", "--decrypt"]
    p = subprocess.run(cmd, input=armored, capture_output=True, check=False)
    assert p.returncode == 0, p.stderr.decode()
    assert b"[GNUPG:] GOODSIG" in p.stderr and b"alice@example.org" in p.stderr
    alice_fpr = c.alice.keyring.signing_key(c.alice.email)
    check_signed_by(p.stderr.decode(), alice_fpr)
    (validsig,) = status_values(p.stderr.decode(), "VALIDSIG")
    assert validsig.split()[7] == "8"  # SHA-256 (pipeline.SIGN_DIGESTS)
    inner = parse_entity(p.stdout)
    assert inner.content_type == "multipart/mixed"
    assert b'hp="cipher"' in p.stdout[: inner.header_end] and b"Subject: interop" in p.stdout
    # One flipped byte of the ciphertext and plain gpg refuses too.
    binary = bytearray(dearmor(armored))
    binary[len(binary) // 2] ^= 1
    p = subprocess.run([*cmd[:-2], "--decrypt"], input=bytes(binary), capture_output=True)
    assert p.returncode != 0


@pytest.mark.parametrize("combined", [False, True], ids=["rfc3156-6.1", "rfc3156-6.2"])
def test_plain_gpg_message_opens_with_certmail(
    correspondents: Any, tmp_path: Path, combined: bool
) -> None:
    c = correspondents
    inner = inner_entity([(b'filename="notes.txt"', b"some notes\n")])
    eml = tmp_path / "hand.eml"
    eml.write_bytes(hand_made(c.alice.keyring.gnupghome, inner, combined=combined))
    with Certmail(c.bob.settings) as cm:
        o = cm.open(eml, save_dir=tmp_path / "out")
    assert o.signed and o.signer == "alice@example.org" and o.trusted
    assert o.headers["Subject"] == "by hand" and o.header_protection == "cipher"
    assert o.body == "Hello from gpg" and o.manifest == "absent"  # CRLF belongs to the boundary
    assert (tmp_path / "out" / "notes.txt").read_bytes() == b"some notes\n"
