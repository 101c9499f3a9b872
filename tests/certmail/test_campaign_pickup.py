"""``campaign create --pickup-if-no-key`` (issue 15, issue 12 item 2): a recipient without
a key gets a pickup link instead of being refused; the others get encrypted mail.

Real components: gpg (a key for two of three recipients), ``certmail notary serve``
(it keeps the pickup's K_n and ciphertext), and an aiosmtpd server standing in for the
recipients' mail server, in direct mode (``--via smtp``).
"""

from __future__ import annotations

import base64
import json
import re
import shutil
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from certmail.sealed.pickup import open_pickup, passphrase_keys
from certmail.sealed.pickup_sending import (
    check_passphrase,
    passphrase_check,
    read_passphrase_file,
)
from keys.errors import Error, VerificationError
from tests.fixtures.campaign import Recipients, kill_agent, make_recipients, write_csv
from tests.fixtures.cli import one_line_error
from tests.fixtures.relay import Relay, as_sender, start_relay

NOKEY = "nokey@example.net"
LINK = re.compile(r"(https?://\S+/p/([A-Za-z0-9_-]{32}))#([A-Za-z0-9_-]{43})")


@pytest.fixture
def relay(tmp_path: Path, correspondents: Any) -> Iterator[Relay]:
    r = start_relay(tmp_path / "notary", correspondents)
    yield r
    r.stop()


@pytest.fixture
def two(correspondents: Any) -> Iterator[Recipients]:
    rs = make_recipients(2, Path(correspondents.alice.keyring.gnupghome))
    yield rs
    kill_agent(rs.home)
    shutil.rmtree(rs.home, ignore_errors=True)


def test_a_recipient_without_a_key_gets_a_pickup_link_the_others_encrypted_mail(
    correspondents: Any, relay: Relay, two: Recipients, tmp_path: Path
) -> None:
    c = correspondents
    emails = [*two.emails, NOKEY]
    csv_path = write_csv(
        tmp_path / "r.csv", [{"email": e, "name": f"Tenant {i}"} for i, e in enumerate(emails)]
    )
    body = tmp_path / "body.txt"
    body.write_text("Dear {{ name }},\nthe rent changes in March.\n", encoding="utf-8")
    smtp = {"CERTMAIL_SMTP_URL": c.sink.url}
    args = ["--recipients", str(csv_path), "--subject", "Notice", "--body-file", str(body)]

    refused = as_sender(c, relay, "campaign", "create", "rent", *args, "--via", "smtp", **smtp)
    assert refused.returncode == 2
    assert "row 4: no usable key for nokey@example.net" in refused.stderr
    assert "--pickup-if-no-key" in refused.stderr

    made = as_sender(
        c,
        relay,
        "campaign",
        "create",
        "rent",
        *args,
        "--via",
        "smtp",
        "--pickup-if-no-key",
        "--json",
        **smtp,
    )
    assert made.returncode == 0, made.stderr
    assert json.loads(made.stdout)["pickup"] == [NOKEY]

    sent = as_sender(c, relay, "campaign", "send", "rent", "--json", **smtp)
    assert sent.returncode == 0, sent.stderr
    events = [json.loads(x) for x in sent.stdout.splitlines()[:-1]]
    assert {e["email"]: e["state"] for e in events} == dict.fromkeys(emails, "accepted")

    by_rcpt = {m.rcpt_tos[0]: m.data.decode("utf-8", "replace") for m in c.sink.messages}
    assert sorted(by_rcpt) == sorted(emails)  # exactly one message each
    for e in two.emails:  # encrypted to their key, no link
        assert "multipart/encrypted" in by_rcpt[e]
        assert not LINK.search(by_rcpt[e].replace("=\r\n", ""))
    pickup_mail = by_rcpt[NOKEY].replace("=\r\n", "")
    assert "multipart/encrypted" not in pickup_mail
    assert "the rent changes" not in pickup_mail  # the email holds no content
    link = LINK.search(pickup_mail)
    assert link is not None
    page = httpx.get(f"{relay.url}/v1/pickup/{link.group(2)}", timeout=10)
    assert page.status_code == 200, page.text  # the notary holds it for the link

    report = as_sender(c, relay, "campaign", "report", "rent", "--format", "json", **smtp)
    assert report.returncode == 0, report.stderr
    rows = json.loads(report.stdout)
    rows = rows["recipients"] if isinstance(rows, dict) else rows
    assert {r["email"]: r["delivery"] for r in rows} == {
        two.emails[0]: "encrypted",
        two.emails[1]: "encrypted",
        NOKEY: "pickup",
    }


def _xor(*keys: bytes) -> bytes:
    out = bytes(32)
    for k in keys:
        out = bytes(a ^ b for a, b in zip(out, k, strict=True))
    return out


def test_a_campaigns_pickup_passphrase_is_asked_at_create_and_send_and_never_stored(
    correspondents: Any, relay: Relay, tmp_path: Path
) -> None:
    """``--pickup-passphrase-file`` as ``send``'s: bad files refused with a hint before
    anything is created or sent; ``campaign send`` needs the same passphrase again (the
    ledger keeps only its salt and verifier hash); the pickup opens only with it."""
    c = correspondents
    csv_path = write_csv(tmp_path / "r.csv", [{"email": NOKEY, "name": "Carol"}])
    body = tmp_path / "body.txt"
    body.write_text("Dear {{ name }},\nthe rent changes in March.\n", encoding="utf-8")
    smtp = {"CERTMAIL_SMTP_URL": c.sink.url}
    args = ["--recipients", str(csv_path), "--subject", "Notice", "--body-file", str(body)]
    args += ["--via", "smtp", "--pickup-if-no-key"]
    secret = "correct horse battery staple"
    good, wrong = tmp_path / "pp.txt", tmp_path / "wrong.txt"
    good.write_text(secret + "\n")
    wrong.write_text("incorrect horse battery\n")
    empty = tmp_path / "empty.txt"
    empty.write_bytes(b"")
    bad = {
        tmp_path / "missing.txt": "cannot read the pickup passphrase from",
        empty: "holds no pickup passphrase",
    }
    for path, words in bad.items():
        p = as_sender(c, relay, "campaign", "create", "rent", *args,
                      "--pickup-passphrase-file", str(path), **smtp)  # fmt: skip
        assert p.returncode == 1 and words in one_line_error(p), p.stderr
        assert "certmail: hint: --pickup-passphrase-file FILE" in p.stderr
    ledger = Path(c.alice.home) / "ledger.db"
    with sqlite3.connect(ledger) as db:  # nothing recorded: no campaign table even
        assert db.execute("SELECT name FROM sqlite_master WHERE name='campaigns'").fetchall() == []

    made = as_sender(c, relay, "campaign", "create", "rent", *args,
                     "--pickup-passphrase-file", str(good), "--json", **smtp)  # fmt: skip
    assert made.returncode == 0, made.stderr
    out = json.loads(made.stdout)
    assert out["pickup"] == [NOKEY] and out["pickup_passphrase"] is True
    for f in ledger.parent.glob("ledger.db*"):  # the database, its WAL: no passphrase
        assert secret.encode() not in f.read_bytes(), f

    for extra, words in (
        ((), "need the passphrase it was created with"),
        (("--pickup-passphrase-file", str(wrong)), "not the pickup passphrase"),
        (("--pickup-passphrase-file", str(empty)), "holds no pickup passphrase"),
    ):
        p = as_sender(c, relay, "campaign", "send", "rent", *extra, **smtp)
        assert p.returncode == 1 and words in one_line_error(p), p.stderr
        assert "certmail: hint:" in p.stderr
    assert c.sink.messages == []  # nothing sent

    sent = as_sender(c, relay, "campaign", "send", "rent", "--json",
                     "--pickup-passphrase-file", str(good), **smtp)  # fmt: skip
    assert sent.returncode == 0, sent.stderr
    [msg] = c.sink.messages
    mail = msg.data.decode("utf-8", "replace").replace("=\r\n", "")
    assert "the passphrase the sender gives you separately" in mail
    assert "the rent changes" not in mail and secret not in mail
    link = LINK.search(mail)
    assert link is not None
    token = link.group(2)
    k_link = base64.urlsafe_b64decode(link.group(3) + "=")
    api = f"{relay.url}/v1/pickup/{token}"
    with httpx.Client(timeout=10) as h:
        info = h.get(api).json()
        salt = base64.b64decode(info["passphrase"]["salt"])
        p_key, verifier = passphrase_keys(secret.encode(), salt)
        _, wrong_verifier = passphrase_keys(b"incorrect horse battery", salt)
        no = h.post(f"{api}/ack", json={"address": NOKEY, "verifier": _b64(wrong_verifier)})
        assert no.status_code == 403
        yes = h.post(f"{api}/ack", json={"address": NOKEY, "verifier": _b64(verifier)})
        assert yes.status_code == 200, yes.text
        share = base64.b64decode(yes.json()["share"])
        blob = h.get(f"{api}/content").content
    mid = json.loads(sent.stdout.splitlines()[0])["message_id"]
    with pytest.raises(VerificationError):  # the link and the share without the passphrase
        open_pickup(blob, _xor(k_link, share), mid)
    text, _ = open_pickup(blob, _xor(k_link, share, p_key), mid)
    assert text.startswith("Dear Carol,\nthe rent changes in March.")


def _b64(b: bytes) -> str:
    return base64.b64encode(b).decode("ascii")


def test_passphrase_file_checks_and_the_kept_verifier(tmp_path: Path) -> None:
    """The one reader of ``--pickup-passphrase-file`` (send and campaigns): its first line;
    a short one refused with the hint; the campaign's check recognises only it."""
    f = tmp_path / "pp.txt"
    f.write_bytes(b"  correct horse battery  \nignored\n")
    assert read_passphrase_file(f) == b"correct horse battery"
    f.write_text("abc\n")
    with pytest.raises(Error, match="shorter than 8 characters") as e:
        read_passphrase_file(f)
    assert e.value.hint and "first line is the passphrase" in e.value.hint
    check = passphrase_check(b"correct horse battery")
    assert set(check) == {"salt", "verifier_sha256"} and "horse" not in json.dumps(check)
    assert check_passphrase(b"correct horse battery", check)
    assert not check_passphrase(b"correct horse batterz", check)
