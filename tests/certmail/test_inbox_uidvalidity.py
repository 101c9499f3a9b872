"""IMAP ids carry the mailbox's UIDVALIDITY (issue 11; RFC 3501 §2.3.1.1), against a real
Dovecot (tests/fixtures/dovecot.py).

A mailbox deleted and created again starts its UIDs over under a new UIDVALIDITY: UID 1
then names another message. The id ``inbox list`` showed before is refused with a clear
error, never opened as that other message.
"""

from __future__ import annotations

import json
import shutil
import ssl
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from imapclient import IMAPClient

from tests.fixtures.cli import one_line_error, run
from tests.fixtures.dovecot import Dovecot, bob_dovecot

BOX = "Certified"


def _message(subject: str) -> bytes:
    return (
        f"From: alice@example.org\r\nTo: bob@example.net\r\nSubject: {subject}\r\n"
        f"Message-ID: <{subject.replace(' ', '-')}@example.org>\r\n"
        "Date: Tue, 01 Dec 2026 12:00:00 +0000\r\n\r\n"
        f"This is {subject}.\r\n"
    ).encode()


@pytest.fixture
def dovecot() -> Iterator[Dovecot]:
    """A Dovecot of its own: bob's Maildir, empty, in a fresh home."""
    home = Path(tempfile.mkdtemp(prefix="uidv", dir="/tmp"))
    home.chmod(0o755)
    try:
        with bob_dovecot(home) as d:
            yield d
    finally:
        shutil.rmtree(home, ignore_errors=True)


def _admin(d: Dovecot) -> IMAPClient:
    """Another mail client of Bob's, which manages his folders."""
    c = IMAPClient(
        "127.0.0.1",
        port=d.imaps_port,
        ssl=True,
        ssl_context=ssl.create_default_context(cafile=str(d.ca.ca)),
    )
    c.login(d.user, d.password)
    return c


def _recreate(d: Dovecot, subject: str, old_validity: int | None) -> int:
    """(Re)create the folder holding one message; its UIDVALIDITY, another than before."""
    with _admin(d) as c:
        if old_validity is not None:
            c.delete_folder(BOX)
        for _ in range(30):  # Dovecot takes the time as a new UIDVALIDITY: a second apart
            c.create_folder(BOX)
            validity = int(c.folder_status(BOX, [b"UIDVALIDITY"])[b"UIDVALIDITY"])
            if validity != old_validity:
                break
            c.delete_folder(BOX)
            time.sleep(0.2)
        else:
            raise AssertionError("Dovecot kept the UIDVALIDITY")
        c.append(BOX, _message(subject))
    return validity


def _env(d: Dovecot, tmp_path: Path) -> dict[str, str]:
    pw = tmp_path / "imap-password"
    pw.write_text(d.password + "\n")
    return {"CERTMAIL_IMAP_PASSWORD_FILE": str(pw), "CERTMAIL_IMAP_CA": str(d.ca.ca)}


def _ids(c: Any, url: str, env: dict[str, str]) -> dict[str, str]:
    p = run(c.bob, "inbox", "list", "--imap", url, "--json", **env)
    assert p.returncode == 0, p.stderr
    return {m["subject"]: m["id"] for m in json.loads(p.stdout)["messages"]}


def test_an_id_from_before_the_mailbox_was_recreated_is_refused(
    correspondents: Any, dovecot: Dovecot, tmp_path: Path
) -> None:
    c, env, url = correspondents, _env(dovecot, tmp_path), dovecot.url(mailbox=BOX)
    first = _recreate(dovecot, "the first", None)
    assert _ids(c, url, env) == {"the first": f"{first}.1"}
    opened = run(c.bob, "inbox", "open", f"{first}.1", "--imap", url, "--allow-unsigned",
                 "--no-ack", "--json", **env)  # fmt: skip
    assert opened.returncode == 0, opened.stderr
    assert "This is the first." in json.loads(opened.stdout)["body"]

    second = _recreate(dovecot, "the second", first)
    assert _ids(c, url, env) == {"the second": f"{second}.1"}  # the same UID, 1
    p = run(c.bob, "inbox", "open", f"{first}.1", "--imap", url, "--allow-unsigned", "--no-ack",
            "--json", **env)  # fmt: skip
    assert p.returncode == 6 and p.stdout == ""
    line = one_line_error(p)
    assert f"message id {first}.1 is out of date" in line and f"now {second}" in line
    assert "nothing was opened" in line and "certmail inbox list" in p.stderr
    assert "the second" not in p.stderr

    for bare in ("1", "0.1", f"{second}.01", f"{second}.x", f"{second}.{1 << 32}"):
        p = run(c.bob, "inbox", "open", bare, "--imap", url, "--no-ack", **env)
        assert p.returncode == 6, (bare, p.stderr)
        assert "is not an IMAP message id (UIDVALIDITY.UID)" in one_line_error(p)
    p = run(c.bob, "inbox", "open", f"{second}.1", "--imap", url, "--allow-unsigned",
            "--no-ack", "--json", **env)  # fmt: skip
    assert p.returncode == 0, p.stderr
    assert "This is the second." in json.loads(p.stdout)["body"]
