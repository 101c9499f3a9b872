"""A campaign message is RFC 3156 §6.2 (signed and encrypted in one OpenPGP message):
``certmail open`` reads it (the sender's signature verified, the acknowledgement
logged), and so do plain ``gpg --decrypt``, which checks the signature, and a real
NeoMutt (its own gpg commands and gpgme).

Real components: gpg, ``certmail notary serve`` with its relay, an aiosmtpd
server standing in for the recipient's mail server, NeoMutt on a pseudo-terminal.
"""

from __future__ import annotations

import email
import hashlib
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from certmail.ledger import Ledger
from tests.fixtures.campaign import write_csv
from tests.fixtures.cli import json_of, run
from tests.fixtures.neomutt import drive_neomutt, neomutt_rc, write_mbox
from tests.fixtures.relay import Relay, as_sender, start_relay


@pytest.fixture
def relay(tmp_path: Path, correspondents: Any) -> Iterator[Relay]:
    r = start_relay(tmp_path / "notary", correspondents, relay_retry_initial=0.2)
    yield r
    r.stop()


def _delivered(c: Any, relay: Relay, tmp_path: Path) -> bytes:
    """Alice's one-recipient campaign to Bob, through the relay: the bytes Bob's server got."""
    csv_path = write_csv(tmp_path / "r.csv", [{"email": c.bob.email, "flat": "7"}])
    body = tmp_path / "body.txt"
    body.write_text("Dear tenant,\nflat {{ flat }}: the rent changes.\n")
    made = as_sender(
        c, relay, "campaign", "create", "rent", "--recipients", str(csv_path),
        "--subject", "Rent notice, flat {{ flat }}", "--body-file", str(body),
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    sent = as_sender(c, relay, "campaign", "send", "rent")
    assert sent.returncode == 0, sent.stderr
    (m,) = c.sink.messages
    data: bytes = m.data
    return data


def test_a_campaign_message_opens_in_certmail_and_in_plain_gpg(
    correspondents: Any, relay: Relay, tmp_path: Path
) -> None:
    c = correspondents
    data = _delivered(c, relay, tmp_path)
    rep = json.loads(as_sender(c, relay, "campaign", "report", "rent", "--format", "json").stdout)
    sha = rep["recipients"][0]["sha256"]
    h = c.alice.home
    with Ledger(h / "ledger.db", h / "outbox", h / "sent") as ledger:
        sealed = ledger.message_path(sha).read_bytes()
    assert data.endswith(sealed) and hashlib.sha256(sealed).hexdigest() == sha
    eml = tmp_path / "in.eml"
    eml.write_bytes(data)

    # Plain gpg, Bob's keyring: one decryption, and the signature inside is Alice's, good.
    top = email.message_from_bytes(data)
    assert top.get_content_type() == "multipart/encrypted"
    armored = top.get_payload()[1].get_payload(decode=False).encode()
    p = subprocess.run(
        ["gpg", "--homedir", str(c.bob.keyring.gnupghome), "--batch", "--status-fd", "2",
         "--decrypt"],
        input=armored, capture_output=True, check=False,
    )  # fmt: skip
    assert p.returncode == 0, p.stderr.decode()
    status = p.stderr.decode()
    alice_fpr = c.alice.keyring.key_for(c.alice.email).fingerprint
    (valid,) = [ln for ln in status.splitlines() if ln.startswith("[GNUPG:] VALIDSIG ")]
    assert valid.split()[-1] == alice_fpr and "[GNUPG:] GOODSIG " in status
    # §6.2: the plaintext is the message itself, not a multipart/signed around it.
    inner = email.message_from_bytes(p.stdout)
    assert inner.get_content_type() == "multipart/mixed"
    assert b"flat 7: the rent changes." in p.stdout

    # certmail open: signed by Alice (trusted), the body, the manifest; then the
    # acknowledgement of exactly these bytes is logged by the notary.
    o = json_of(run(c.bob, "open", str(eml), "--json"))
    assert o["signer"] == c.alice.email and o["trusted"] and o["manifest"] == "verified"
    assert o["body"] == "Dear tenant,\nflat 7: the rent changes.\n"
    assert o["headers"]["Subject"] == "Rent notice, flat 7"
    acked = run(c.bob, "open", str(eml), "--ack", "--json")
    assert acked.returncode == 0, acked.stderr
    ack = json.loads(acked.stdout)["ack"]
    assert ack["sha256"] == sha


@pytest.mark.parametrize("gpgme", [True, False], ids=["gpgme", "classic-gpg"])
def test_neomutt_reads_a_campaign_message_and_its_signature(
    correspondents: Any, tmp_path: Path, gpgme: bool
) -> None:
    """The campaign's own sealing (:class:`certmail.signer.Sealer`, ``combined``), read
    by NeoMutt with Bob's keyring: decrypted, Alice's signature good, the body shown."""
    from certmail.compose import Headers
    from certmail.pipeline import GpgOptions
    from certmail.signer import Sealer

    c = correspondents
    sealer = Sealer(lambda: c.alice.keyring, tmp_path / "dkim", gpg=GpgOptions(combined=True))
    sealed = sealer.seal(
        tmp_path / "w",
        Headers(c.alice.email, (c.bob.email,), "Rent notice", "<r1@example.org>",
                "Mon, 01 Jan 2024 00:00:00 +0000"),
        b"Dear tenant,\nflat 7: the rent changes.\n",
        [],
        notary_url=None, sign=True, encrypt=True, request_mdn=False, progress=None,
    )  # fmt: skip
    mbox = write_mbox(tmp_path / "mbox", sealed.path.read_bytes())
    lines = ["set crypt_verify_sig=yes", f"set folder={tmp_path}"]
    rc = neomutt_rc(tmp_path / "neomuttrc", lines, gpgme=gpgme)
    screen = tmp_path / "screen.txt"
    args = ("--read", str(rc), str(mbox), str(screen))
    p = drive_neomutt(tmp_path, c.bob.keyring.gnupghome, *args)
    text = " ".join(screen.read_bytes().decode("utf-8", "replace").split())
    assert p.returncode == 0, text[-2000:]
    assert "Good signature from" in text and c.alice.email in text, text[-2000:]
    assert "BAD signature" not in text
    assert "flat 7: the rent changes." in text
