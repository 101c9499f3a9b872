"""Interop with the plain gpg command line, both ways (RFC 3156).

1. A certmail message decrypts with ``gpg --decrypt``, and its inner
   multipart/signed verifies with ``gpg --verify sig data`` on the exact part bytes.
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
from certmail.rfc3156 import encrypted_payload, signed_parts
from tests.fixtures.gpg_messages import gpg, hand_made, inner_entity


def test_certmail_message_with_plain_gpg(correspondents: Any, tmp_path: Path) -> None:
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
    decrypted = gpg(bob_home, "--decrypt", stdin=armored)
    sp = signed_parts(parse_entity(decrypted))
    data, sig = tmp_path / "part.mime", tmp_path / "part.sig"
    data.write_bytes(sp.signed)
    sig.write_bytes(sp.signature)
    p = subprocess.run(
        [
            "gpg",
            "--homedir",
            str(bob_home),
            "--batch",
            "--status-fd",
            "1",
            "--verify",
            str(sig),
            str(data),
        ],
        capture_output=True,
        check=False,
    )
    assert p.returncode == 0, p.stderr.decode()
    assert b"[GNUPG:] GOODSIG" in p.stdout and b"alice@example.org" in p.stdout
    # One flipped byte in the part and plain gpg refuses too.
    data.write_bytes(sp.signed.replace(b"for gpg", b"for gPg"))
    p = subprocess.run(
        ["gpg", "--homedir", str(bob_home), "--batch", "--verify", str(sig), str(data)],
        capture_output=True,
        check=False,
    )
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
