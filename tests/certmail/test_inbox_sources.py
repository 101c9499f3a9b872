"""Issue 11: the notarized-bytes rule and the mailbox readers, on bytes made here.

The rule (docs/formats.md, "The bytes the notary saw"): a copy stored with LF
line ends, under an mbox ``From `` line and with ``>From `` quoting, under
the relay's and the recipient's servers' fields, has the SHA-256 of the bytes
as submitted; a changed copy is refused. The Maildir and mbox readers give
back each message as delivered and never write (but for Maildir's ``S`` flag
on ``--mark-read``); ids never reach a path.
"""

from __future__ import annotations

import hashlib
import mailbox
from pathlib import Path

import pytest

from certmail.inbox import notarized as notarized_mod
from certmail.inbox.imapurl import parse_imap_url
from certmail.inbox.maildir import MaildirSource
from certmail.inbox.mbox import MboxSource
from certmail.inbox.notarized import from_mbox, notarized, notarized_bytes, notarized_file
from keys.errors import Error, NotFoundError, VerificationError

SUBMITTED = (
    b"DKIM-Signature: v=1; a=ed25519-sha256; d=example.org;\r\n b=abc\r\n"
    b"From: alice@example.org\r\nTo: bob@example.net\r\nSubject: deal\r\n"
    b"Message-ID: <1@example.org>\r\n\r\nFrom here on, sign.\r\n>From quoted already\r\nend\r\n"
)
SHA = hashlib.sha256(SUBMITTED).hexdigest()
RELAYED = (
    b"Return-Path: <alice@example.org>\r\nDelivered-To: bob@example.net\r\n"
    b"Received: from notary.test by mx.example.net;\r\n\tTue, 1 Dec 2026 10:00:00 +0000\r\n"
    b"Received: by notary.test (certmail notary relay) with ESMTPSA id 7\r\n"
    b"\tfor <bob@example.net>; Tue, 1 Dec 2026 09:59:59 +0000\r\n"
    + f"Certmail-Evidence: sha256={SHA}; notary=notary.test/log\r\n".encode()
    + b"DKIM-Signature: v=1; a=rsa-sha256; d=notary.test;\r\n b=relay\r\n"
    + SUBMITTED
)


def lf(b: bytes) -> bytes:
    return b.replace(b"\r\n", b"\n")


def test_relay_mode_copy_stored_with_lf_has_the_submitted_hash() -> None:
    for copy in (RELAYED, lf(RELAYED)):
        canonical, n = notarized_bytes(copy)
        assert n.sha256 == SHA and n.named and n.origin == "notary.test/log"
        assert canonical[n.start :] == SUBMITTED


def test_direct_mode_drops_only_the_trace_fields_on_top() -> None:
    traced = b"Return-Path: <a@x>\nX-Original-To: bob@example.net\nReceived: from x\n\tby y\n"
    n = notarized(traced + lf(SUBMITTED))
    assert n.sha256 == SHA and not n.named
    # The sender's own DKIM-Signature is part of what was notarized: kept.
    assert notarized(SUBMITTED).start == 0


def test_a_changed_copy_is_refused() -> None:
    with pytest.raises(VerificationError, match="changed after the notary saw it"):
        notarized(lf(RELAYED).replace(b"Subject: deal", b"Subject: deal!"))
    # A hash named above the relay's own fields cannot be matched by a prefix above it.
    with pytest.raises(VerificationError):
        notarized(RELAYED.replace(b"end\r\n", b"end\r\nmore\r\n"))


@pytest.mark.parametrize("stream_from", [0, 1 << 40])
def test_a_file_streamed_or_read_whole_gives_the_same_notarized_bytes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, stream_from: int
) -> None:
    """notarized_file (open's way, streamed for big canonical files) agrees with notarized."""
    monkeypatch.setattr(notarized_mod, "_STREAM_FROM", stream_from)
    monkeypatch.setattr(notarized_mod, "_CHUNK", 7)  # hashes across many chunk borders
    traced = b"Return-Path: <a@x>\r\nReceived: from x\r\n\tby y\r\n" + SUBMITTED
    for i, copy in enumerate((RELAYED, lf(RELAYED), traced, SUBMITTED)):
        f = tmp_path / f"{i}.eml"
        f.write_bytes(copy)
        assert notarized_file(f) == notarized(copy)
        assert notarized_file(f).sha256 == SHA
    # The whole file's hash, when the caller has it, is reused only for offset 0.
    f = tmp_path / "whole.eml"
    f.write_bytes(SUBMITTED)
    assert notarized_file(f, whole_sha256="0" * 64).sha256 == (
        "0" * 64 if stream_from == 0 else SHA
    )
    f.write_bytes(RELAYED.replace(b"end\r\n", b"end!\r\n"))
    with pytest.raises(VerificationError, match="changed after the notary saw it"):
        notarized_file(f, whole_sha256="0" * 64)


def test_mbox_form_is_undone() -> None:
    stored = (
        b"From alice@example.org Tue Dec  1 10:00:00 2026\n"
        + lf(RELAYED)
        .replace(b"\nFrom here", b"\n>From here")
        .replace(b"\n>From quoted", b"\n>>From quoted")
        + b"\n"
    )
    assert from_mbox(stored) == lf(RELAYED)
    assert notarized(stored).sha256 == SHA


# mboxo writers (Python's mailbox, Postfix) quote "From " lines but not ">From "
# ones, so a body line that was ">From " cannot be told apart: not in this message.
PLAIN = RELAYED.replace(b">From quoted already\r\n", b"")


def _mbox(tmp_path: Path, n: int) -> Path:
    """An mbox written by Python's mailbox module (mboxo quoting of From lines)."""
    path = tmp_path / "box.mbox"
    box = mailbox.mbox(path)
    for i in range(n):
        box.add(lf(PLAIN).replace(b"Subject: deal", f"Subject: deal {i}".encode()))
    box.flush()
    box.close()
    return path


def test_mbox_source_lists_and_copies_as_delivered(tmp_path: Path) -> None:
    src = MboxSource(_mbox(tmp_path, 3))
    items = src.items()
    assert [i.id for i in items] == ["1", "2", "3"] and all(i.unread for i in items)
    out = src.copy("2", tmp_path / "two.eml")
    assert out.read_bytes() == lf(PLAIN).replace(b"Subject: deal", b"Subject: deal 1")
    assert (out.stat().st_mode & 0o777) == 0o600
    for bad in ("0", "4", "../1", "x"):
        with pytest.raises(NotFoundError):
            src.copy(bad, tmp_path / f"bad{bad.replace('/', '_')}.eml")
    before = src.path.read_bytes()
    with pytest.raises(Error, match="never rewrites an mbox"):
        src.mark_read("1")
    assert src.path.read_bytes() == before


def test_maildir_source_unread_copy_and_mark_read(tmp_path: Path) -> None:
    md = mailbox.Maildir(tmp_path / "Maildir")
    key_new = md.add(lf(RELAYED))
    msg = mailbox.MaildirMessage(lf(SUBMITTED))
    msg.set_subdir("cur")
    msg.set_flags("S")
    key_seen = md.add(msg)
    src = MaildirSource(tmp_path / "Maildir")
    assert {i.id: i.unread for i in src.items()} == {key_new: True, key_seen: False}
    assert [i.id for i in src.items(unread=True)] == [key_new]
    assert src.copy(key_new, tmp_path / "m.eml").read_bytes() == lf(RELAYED)
    with pytest.raises(NotFoundError):
        src.copy("../../etc/passwd", tmp_path / "x.eml")
    src.mark_read(key_new)
    assert src.items(unread=True) == []
    assert src.copy(key_new, tmp_path / "again.eml").read_bytes() == lf(RELAYED)
    with pytest.raises(NotFoundError, match="not a Maildir"):
        MaildirSource(tmp_path)


def test_imap_urls() -> None:
    u = parse_imap_url("imaps://bob%40example.net@mail.example.net/Certified%20Mail")
    assert (u.tls, u.host, u.port, u.user, u.mailbox) == (
        "implicit",
        "mail.example.net",
        993,
        "bob@example.net",
        "Certified Mail",
    )
    u = parse_imap_url("imap://bob@127.0.0.1:1143?ca=/tmp/ca.pem")
    assert (u.tls, u.port, u.mailbox, str(u.ca)) == ("starttls", 1143, "INBOX", "/tmp/ca.pem")
    assert parse_imap_url("imaps://bob@h/", ca="/x.pem").ca == Path("/x.pem")
    for bad, said in (
        ("imaps://bob:secret@h/", "never takes one on the command line"),
        ("http://bob@h/", "not an IMAP URL"),
        ("imaps://h/", "needs a user"),
        ("imaps://bob@h/?cafile=x", "unknown IMAP URL parameter"),
        ("imaps://bob@h:99999/", "not an IMAP URL"),
    ):
        with pytest.raises(Error, match=said):
            parse_imap_url(bad)


def test_open_stdin_refuses_what_is_not_mail_and_leaves_nothing(tmp_path: Path) -> None:
    import glob

    from tests.fixtures.cli import clean_env, cli, one_line_error

    env = clean_env(tmp_path / "home", TMPDIR=str(tmp_path))
    for stdin, said in (("", "nothing came on standard input"), ("hello\n", "not a mail")):
        p = cli("open", "-", env=env, stdin=stdin)
        assert p.returncode == 3, p.stderr
        assert said in one_line_error(p)
    assert glob.glob(str(tmp_path / "certmail-stdin-*")) == []  # the spooled copy is gone
