"""A real NeoMutt saves the attachment of a message ``certmail send`` seals (RFC 3156
§6.2, the attachment base64 inside the encryption) byte for byte, with either crypto
backend: bytes with CR, LF, CRLF and NUL among them, the ones a
``Content-Transfer-Encoding: binary`` part would lose (NeoMutt drops every CR of a
decrypted entity with gpgme, turns CRLF into LF and stops lines at a NUL with its
classic gpg commands: docs/send-open.md, "Binary attachments inside the encryption").

Real components: gpg, NeoMutt on a pseudo-terminal (tests/fixtures/neomutt_pty.py).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.neomutt import drive_neomutt, neomutt_rc, write_mbox

#: Every byte value, and the line ends and NULs a mail reader could mend or cut at.
DATA = bytes(range(256)) * 64 + b"crlf\r\nbare cr\rbare lf\nnul\x00\r\n\r\n\x00end\r"


@pytest.mark.parametrize("gpgme", [True, False], ids=["gpgme", "classic-gpg"])
def test_neomutt_saves_a_sent_attachment_byte_exact(
    correspondents: Any, tmp_path: Path, gpgme: bool
) -> None:
    from certmail.compose import NOT_SCANNED, Headers, ScanRecord
    from certmail.signer import Sealer

    c = correspondents
    attachment = tmp_path / "data.bin"
    attachment.write_bytes(DATA)
    sealed = Sealer(lambda: c.alice.keyring, tmp_path / "dkim").seal(
        tmp_path / "w",
        Headers(c.alice.email, (c.bob.email,), "The file", "<f1@example.org>",
                "Mon, 01 Jan 2024 00:00:00 +0000"),
        b"The file is attached.\n",
        [(attachment, ScanRecord(NOT_SCANNED))],
        notary_url=None, sign=True, encrypt=True, request_mdn=False, progress=None,
    )  # fmt: skip
    mbox = write_mbox(tmp_path / "mbox", sealed.path.read_bytes())
    rc = neomutt_rc(tmp_path / "neomuttrc", [f"set folder={tmp_path}"], gpgme=gpgme)
    out = tmp_path / "saved.bin"
    p = drive_neomutt(tmp_path, c.bob.keyring.gnupghome, "--save", str(rc), str(mbox),
                      "data.bin", str(out))  # fmt: skip
    assert p.returncode == 0, p.stderr.decode()[-2000:]
    assert hashlib.sha256(out.read_bytes()).hexdigest() == hashlib.sha256(DATA).hexdigest()
