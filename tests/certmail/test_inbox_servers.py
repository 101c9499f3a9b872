"""Issue 11 items 1 and 2: the recipient's side with real mail servers.

Debian's Postfix (tests/fixtures/postfix.py) is Bob's MX, delivering each
message to a Maildir and to an mbox copy; Dovecot (tests/fixtures/dovecot.py)
serves the Maildir over IMAP with TLS from a test CA. Alice sends in direct
mode (``--via smtp`` through Postfix) and through the notary relay (its
smarthost is Postfix). Every way in (``inbox`` over IMAP, Maildir and mbox,
``open FILE``, ``open -``) shows the SHA-256 the notary logged, ``inbox open
--ack`` works from each, and the acknowledgement verifies in Alice's proof
bundle (``proof export`` + ``proof verify``).
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.cli import CERTMAIL, one_line_error, run, use_notary
from tests.fixtures.dovecot import Dovecot
from tests.fixtures.notary import NotaryProcess, free_port, init_notary_dir
from tests.fixtures.postfix import Postfix
from tests.fixtures.proof import proof_verify
from tests.notary.relay_helpers import configure

BOB = "bob@example.net"


def _imap_env(d: Dovecot, tmp_path: Path) -> dict[str, str]:
    pw = tmp_path / "imap-password"
    pw.write_text(d.password + "\n")
    return {"CERTMAIL_IMAP_PASSWORD_FILE": str(pw), "CERTMAIL_IMAP_CA": str(d.ca.ca)}


def _send(c: Any, subject: str, *via: str) -> dict[str, Any]:
    p = run(
        c.alice,
        "send",
        "--to",
        BOB,
        "--subject",
        subject,
        *via,
        "--json",
        stdin=f"Dear Bob,\nplease find {subject}.\nFrom here on, sign.\n".encode(),
    )
    assert p.returncode == 0, p.stderr
    out: dict[str, Any] = json.loads(p.stdout)
    return out


def _listing(c: Any, *where: str, **env: str) -> dict[str, Any]:
    p = run(c.bob, "inbox", "list", *where, "--json", **env)
    assert p.returncode == 0, p.stderr
    out: dict[str, Any] = json.loads(p.stdout)
    return out


def _by_subject(listing: dict[str, Any], subject: str) -> dict[str, Any]:
    (m,) = [m for m in listing["messages"] if m["subject"] == subject]
    return m


def _proof_has_handover(c: Any, notary: NotaryProcess, sha: str, tmp_path: Path) -> None:
    """Alice's bundle holds Bob's ContentHandover, and it verifies."""
    bundle = tmp_path / f"{sha[:8]}.certmail-proof.zip"
    p = run(c.alice, "proof", "export", sha, "-o", str(bundle))
    assert p.returncode == 0, p.stderr
    vkey = tmp_path / "trusted.vkey"
    vkey.write_text(notary.vkey + "\n")
    root = notary.directory / "tsa" / "root-ca.pem"
    p = proof_verify(
        c.alice,
        bundle,
        "--vkey",
        str(vkey),
        "--tsa-root",
        str(root),
        "--allow-partial",  # the sender's signature is inside the encryption
        "--json",
    )
    assert p.returncode == 0, p.stdout + p.stderr
    report = json.loads(p.stdout)
    assert report["valid"] and report["sha256"] == sha
    events = [e["event"] for e in report["events"]]
    assert events.count("ContentHandover") == 1, events
    (ack,) = [k for k in report["checks"] if k["item"].endswith(" acknowledgement")]
    assert ack["status"] == "ok" and f"signed by recipient {BOB}" in ack["detail"], ack
    assert report["unchecked"] == ["sender signature"]  # inside the encryption only


def test_direct_mode_postfix_maildir_mbox_and_dovecot_imap(
    correspondents: Any,
    notary_server: NotaryProcess,
    postfix_mx: Postfix,
    dovecot_imap: Dovecot,
    tmp_path: Path,
) -> None:
    c = correspondents
    use_notary(c, c.alice, notary_server)
    c.settings(c.alice, smtp_url=f"smtp://127.0.0.1:{postfix_mx.port}?starttls=never")
    first = _send(c, "the contract", "--via", "smtp")
    second = _send(c, "the annex", "--via", "smtp")
    files = postfix_mx.wait_maildir(BOB, 2)
    mbox = postfix_mx.wait_mbox(BOB, 2)
    # What the stores hold: LF line ends and the MTA's trace fields on top.
    stored = files[0].read_bytes()
    assert b"\r\n" not in stored and stored.startswith(b"Return-Path:")
    assert mbox.read_bytes().startswith(b"From ")

    env = _imap_env(dovecot_imap, tmp_path)
    maildir = _listing(c, "--maildir", str(postfix_mx.maildir(BOB)))
    boxed = _listing(c, "--mbox", str(mbox))
    imap = _listing(c, "--imap", dovecot_imap.url(), **env)
    starttls = _listing(c, "--imap", dovecot_imap.url(starttls=True), **env)
    for sent in (first, second):
        subject = "the contract" if sent is first else "the annex"
        for listing in (maildir, boxed, imap, starttls):
            m = _by_subject(listing, subject)
            assert m["sha256"] == sent["sha256"], (listing["source"], m)
            assert m["certified"] and m["notary"] == notary_server.url
            assert m["signature"] == "good" and m["signer"] == c.alice.email
            assert m["subject_protected"] and m["acknowledged"] == "no"
    # open FILE on the Maildir copy shows the notarized hash too (was: the file's).
    p = run(c.bob, "open", str(files[0]), "--json")
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["sha256"] in (first["sha256"], second["sha256"])

    # Acknowledged over IMAP (the first) and from the mbox copy (the second).
    uid = _by_subject(imap, "the contract")["id"]
    p = run(c.bob, "inbox", "open", uid, "--imap", dovecot_imap.url(), "--ack", "--json", **env)
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    assert out["sha256"] == first["sha256"] and out["ack"]["status"] == "sent"
    assert out["ack"]["sha256"] == first["sha256"]
    assert "please find the contract" in out["body"]
    n = _by_subject(boxed, "the annex")["id"]
    p = run(c.bob, "inbox", "open", n, "--mbox", str(mbox), "--ack", "--json")
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["ack"]["sha256"] == second["sha256"]

    # Acknowledging the same message again from another way in (the Maildir copy)
    # finds the same hash in the ledger: the receipt held, no second handover.
    key = _by_subject(maildir, "the contract")["id"]
    p = run(
        c.bob, "inbox", "open", key, "--maildir", str(postfix_mx.maildir(BOB)), "--ack", "--json"
    )
    assert p.returncode == 0, p.stderr
    again = json.loads(p.stdout)["ack"]
    assert again["sha256"] == first["sha256"] and again["receipt"] == out["ack"]["receipt"]

    # Nothing was moved, deleted or flagged on the server; the stores are as delivered.
    imap = _listing(c, "--imap", dovecot_imap.url(), "--unread", **env)
    assert {m["subject"] for m in imap["messages"]} == {"the contract", "the annex"}
    assert all(m["acknowledged"] == "yes" for m in imap["messages"])
    assert len(postfix_mx.maildir_files(BOB)) == 2
    for sent in (first, second):
        _proof_has_handover(c, notary_server, sent["sha256"], tmp_path)

    # --mark-read sets \\Seen, and only that.
    p = run(
        c.bob, "inbox", "open", uid, "--imap", dovecot_imap.url(), "--mark-read", "--no-ack", **env
    )
    assert p.returncode == 0, p.stderr
    unread = _listing(c, "--imap", dovecot_imap.url(), "--unread", **env)
    assert [m["subject"] for m in unread["messages"]] == ["the annex"]
    assert len(_listing(c, "--imap", dovecot_imap.url(), **env)["messages"]) == 2


@pytest.fixture
def relay_to_postfix(tmp_path: Path, correspondents: Any, postfix_mx: Postfix) -> Iterator[Any]:
    """Alice's notary relay, delivering to Bob's Postfix as its smarthost."""
    d = init_notary_dir(tmp_path / "relay-notary")
    configure(d, relay_retry_initial=0.2)
    proc = NotaryProcess(d)
    token = proc.token_for(correspondents.alice.email)
    proc.start(
        ["--smtp", f"127.0.0.1:{free_port()}", "--smarthost", f"127.0.0.1:{postfix_mx.port}"]
    )
    c = correspondents
    c.settings(c.alice, notary_url=proc.url, notary_token=token)
    yield proc
    proc.stop()


def test_relay_mode_postfix_maildir_open_stdin_and_ack(
    correspondents: Any,
    relay_to_postfix: NotaryProcess,
    postfix_mx: Postfix,
    dovecot_imap: Dovecot,
    tmp_path: Path,
) -> None:
    c = correspondents
    sent = _send(c, "the deed")
    assert sent["via"] == "relay"
    (delivered,) = postfix_mx.wait_maildir(BOB, 1)
    raw = delivered.read_bytes()
    # The relay's fields sit under Postfix's trace fields; LF line ends.
    assert b"\nCertmail-Evidence: sha256=" + sent["sha256"].encode() in raw
    assert b"\r\n" not in raw

    maildir = str(postfix_mx.maildir(BOB))
    listing = _listing(c, "--maildir", maildir)
    (m,) = listing["messages"]
    assert m["sha256"] == sent["sha256"] and m["notary"] == relay_to_postfix.url
    assert m["signature"] == "good"
    mbox = postfix_mx.wait_mbox(BOB, 1)
    assert _listing(c, "--mbox", str(mbox))["messages"][0]["sha256"] == sent["sha256"]
    env = _imap_env(dovecot_imap, tmp_path)
    (over_imap,) = _listing(c, "--imap", dovecot_imap.url(), **env)["messages"]
    assert over_imap["sha256"] == sent["sha256"] and over_imap["signature"] == "good"

    # A mail client's pipe: `certmail open -` shows the same hash.
    p = subprocess.run(
        [*CERTMAIL, "open", "-", "--json"],
        input=raw,
        capture_output=True,
        env=c.bob.env(),
        check=False,
        timeout=120,
    )
    assert p.returncode == 0, p.stderr.decode()
    assert json.loads(p.stdout)["sha256"] == sent["sha256"]

    p = run(c.bob, "inbox", "open", m["id"], "--maildir", maildir, "--ack", "--json")
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["ack"]["sha256"] == sent["sha256"]
    assert delivered.read_bytes() == raw  # the store is as it was
    _proof_has_handover(c, relay_to_postfix, sent["sha256"], tmp_path)

    # A copy changed after the notary saw it is refused with one line, nothing acknowledged.
    changed = tmp_path / "changed.eml"
    changed.write_bytes(raw.replace(b"Subject:", b"Subject: Re:", 1))
    p = run(c.bob, "open", str(changed), "--ack")
    assert p.returncode == 3
    assert "changed after the notary saw it" in one_line_error(p)


def test_a_large_message_over_imap_comes_in_pieces_and_hashes_the_same(
    correspondents: Any, postfix_mx: Postfix, dovecot_imap: Dovecot, tmp_path: Path
) -> None:
    """6 MB: more than one IMAP literal may carry (4 MiB), so only the chunked copy reads it."""
    import base64
    import hashlib
    import os
    import smtplib

    blob = base64.encodebytes(os.urandom(4_500_000)).replace(b"\n", b"\r\n")
    msg = (
        b"From: carol@example.org\r\nTo: bob@example.net\r\nSubject: big\r\n"
        b"Message-ID: <big@example.org>\r\nDate: Tue, 1 Dec 2026 10:00:00 +0000\r\n"
        b"Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n"
        + blob
    )
    assert len(msg) > 6_000_000 and len(msg) % (1 << 20) != 0
    with smtplib.SMTP("127.0.0.1", postfix_mx.port) as s:
        s.sendmail("carol@example.org", [BOB], msg)
    postfix_mx.wait_maildir(BOB, 1)
    env = _imap_env(dovecot_imap, tmp_path)
    (over_imap,) = _listing(correspondents, "--imap", dovecot_imap.url(), **env)["messages"]
    (on_disk,) = _listing(correspondents, "--maildir", str(postfix_mx.maildir(BOB)))["messages"]
    assert over_imap["sha256"] == on_disk["sha256"] == hashlib.sha256(msg).hexdigest()
    assert over_imap["size"] > 6_000_000 and not over_imap["certified"]
