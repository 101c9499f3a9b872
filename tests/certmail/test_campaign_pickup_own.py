"""A pickup passphrase per recipient (issue 15): the CSV's ``pickup_passphrase`` column,
used instead of the campaign's ``--pickup-passphrase-file`` for that row's pickup
message; an empty cell means the campaign's. Bad cells refused at ``create`` with their
row and a hint; the ledger never holds a passphrase, and what it keeps to encrypt under
one (salt, P, the verifier's hash) is gone once the message is stored.

Real components: gpg (a key for one recipient), ``certmail notary serve`` (it keeps each
pickup's K_n, ciphertext and verifier hash), an aiosmtpd server, direct mode.
"""

from __future__ import annotations

import base64
import json
import re
import shutil
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from certmail.sealed.pickup import open_pickup, passphrase_keys
from tests.fixtures.campaign import Recipients, kill_agent, make_recipients, write_csv
from tests.fixtures.cli import one_line_error
from tests.fixtures.relay import Relay, as_sender, start_relay

CAROL, DAVE = "carol@example.net", "dave@example.net"
OWN, DEFAULT, UNUSED = "carol's own passphrase", "the campaign default", "never used at all"
LINK = re.compile(r"(https?://\S+/p/([A-Za-z0-9_-]{32}))#([A-Za-z0-9_-]{43})")


@pytest.fixture
def relay(tmp_path: Path, correspondents: Any) -> Iterator[Relay]:
    r = start_relay(tmp_path / "notary", correspondents)
    yield r
    r.stop()


@pytest.fixture
def one(correspondents: Any) -> Iterator[Recipients]:
    rs = make_recipients(1, Path(correspondents.alice.keyring.gnupghome))
    yield rs
    kill_agent(rs.home)
    shutil.rmtree(rs.home, ignore_errors=True)


def _xor(*keys: bytes) -> bytes:
    out = bytes(32)
    for k in keys:
        out = bytes(a ^ b for a, b in zip(out, k, strict=True))
    return out


def _b64(b: bytes) -> str:
    return base64.b64encode(b).decode("ascii")


def _files(home: Path) -> bytes:
    """The ledger's file, WAL and index, read by another process: opening and closing them
    here would drop the POSIX locks this process's SQLite connections hold on them."""
    files = [str(f) for f in sorted(home.glob("ledger.db*"))]
    return subprocess.run(["cat", *files], capture_output=True, check=True).stdout


def _open(relay: Relay, mail: str, mid: str, right: str, wrong: str, salt_b64: str = "") -> str:
    """The pickup in ``mail`` (under the salt ``salt_b64``, when given): refused with
    ``wrong``'s verifier, released with ``right``'s; its text, which opens with ``right``'s P."""
    link = LINK.search(mail.replace("=\r\n", ""))
    assert link is not None
    api = f"{relay.url}/v1/pickup/{link.group(2)}"
    with httpx.Client(timeout=10) as h:
        salt = h.get(api).json()["passphrase"]["salt"]
        assert salt == (salt_b64 or salt)
        p_key, verifier = passphrase_keys(right.encode(), base64.b64decode(salt))
        _, bad = passphrase_keys(wrong.encode(), base64.b64decode(salt))
        addr = CAROL if right == OWN else DAVE
        assert (
            h.post(f"{api}/ack", json={"address": addr, "verifier": _b64(bad)}).status_code == 403
        )
        yes = h.post(f"{api}/ack", json={"address": addr, "verifier": _b64(verifier)})
        assert yes.status_code == 200, yes.text
        share = base64.b64decode(yes.json()["share"])
        blob = h.get(f"{api}/content").content
    k_link = base64.urlsafe_b64decode(link.group(3) + "=")
    text, _ = open_pickup(blob, _xor(k_link, share, p_key), mid)
    return text


def test_each_recipients_own_pickup_passphrase(
    correspondents: Any, relay: Relay, one: Recipients, tmp_path: Path
) -> None:
    c = correspondents
    home = Path(c.alice.home)
    keyed = one.emails[0]
    body = tmp_path / "body.txt"
    body.write_text("Dear {{ name }},\nthe rent changes in March.\n", encoding="utf-8")
    default = tmp_path / "pp.txt"
    default.write_text(DEFAULT + "\n")
    smtp = {"CERTMAIL_SMTP_URL": c.sink.url}

    def create(rows: list[dict[str, str]], *extra: str, text: Path = body) -> Any:
        csv_path = write_csv(tmp_path / "r.csv", rows)
        return as_sender(
            c, relay, "campaign", "create", "rent", "--recipients", str(csv_path),
            "--subject", "Notice", "--body-file", str(text), "--via", "smtp", *extra, **smtp,
        )  # fmt: skip

    def row(email: str, name: str, cell: str) -> dict[str, str]:
        return {"email": email, "name": name, "pickup_passphrase": cell}

    pickup = ("--pickup-if-no-key", "--pickup-passphrase-file", str(default))
    # bad cells: every one named with its row and the hint, nothing recorded
    bad = create(
        [row(keyed, "K", ""), row(CAROL, "Carol", "short"), row(DAVE, "Dave", "two\nlines here")],
        *pickup,
    )
    assert bad.returncode == 2, bad.stderr
    assert "row 3: the pickup_passphrase of carol@example.net is shorter than 8" in bad.stderr
    assert re.search(
        r"row [45]: the pickup_passphrase of dave@example.net has a line break", bad.stderr
    )
    assert "one line of 8 characters or more" in bad.stderr
    assert "short" not in bad.stderr.replace("shorter", "")  # the cell itself is not shown
    rows = [row(keyed, "K", UNUSED), row(CAROL, "Carol", OWN), row(DAVE, "Dave", "")]
    no_pickup = create(rows)
    assert no_pickup.returncode == 1
    assert "has a pickup_passphrase column" in one_line_error(no_pickup)
    assert "certmail: hint: add --pickup-if-no-key" in no_pickup.stderr
    leak = tmp_path / "leak.txt"
    leak.write_text("Dear {{ name }}, yours: {{ pickup_passphrase }}\n")
    leaked = create(rows, *pickup, text=leak)
    assert leaked.returncode == 1
    assert "would be sent in the email it protects" in one_line_error(leaked)
    db = sqlite3.connect(home / "ledger.db")  # nothing recorded
    assert db.execute("SELECT count(*) FROM campaign_recipients").fetchone() == (0,)
    db.close()

    made = create(rows, *pickup, "--json")
    assert made.returncode == 0, made.stderr
    out = json.loads(made.stdout)
    assert out["pickup"] == [CAROL, DAVE] and out["pickup_passphrases"] == 1
    assert any("1 recipient(s) with a pickup_passphrase have a key" in w for w in out["warnings"])
    assert not [w for w in out["warnings"] if "could read" in w]  # every pickup has one
    db = sqlite3.connect(home / "ledger.db")
    kept = dict(db.execute("SELECT email, pickup_key FROM campaign_recipients").fetchall())
    fields = [json.loads(f) for (f,) in db.execute("SELECT fields FROM campaign_recipients")]
    db.close()
    assert kept[keyed] is None and kept[DAVE] is None and kept[CAROL] is not None
    derived = json.loads(kept[CAROL])
    assert set(derived) == {"salt", "p", "v"}
    assert all("pickup_passphrase" not in f for f in fields)
    files = _files(home)
    assert not [s for s in (OWN, DEFAULT, UNUSED) if s.encode() in files]  # no passphrase

    # the notary away: the pickups cannot be registered, nothing stored: the key is kept
    relay.stop()
    away = as_sender(c, relay, "campaign", "send", "rent", "--json",
                     "--pickup-passphrase-file", str(default), **smtp)  # fmt: skip
    assert away.returncode == 5, away.stderr
    relay.start()
    db = sqlite3.connect(home / "ledger.db")
    q = "SELECT state, sha256, pickup_key FROM campaign_recipients WHERE email=?"
    assert db.execute(q, (CAROL,)).fetchone() == ("queued", None, kept[CAROL])
    db.close()
    sent = as_sender(c, relay, "campaign", "send", "rent", "--json",
                     "--pickup-passphrase-file", str(default), **smtp)  # fmt: skip
    assert sent.returncode == 0, sent.stderr
    events = {e["email"]: e for e in map(json.loads, sent.stdout.splitlines()[:-1])}
    assert {e: v["state"] for e, v in events.items()} == dict.fromkeys(
        [keyed, CAROL, DAVE], "accepted"
    )
    mails = {m.rcpt_tos[0]: m.data.decode("utf-8", "replace") for m in c.sink.messages}
    assert sorted(m.rcpt_tos[0] for m in c.sink.messages) == sorted([keyed, CAROL, DAVE])
    assert "multipart/encrypted" in mails[keyed]
    # the ledger keeps nothing of Carol's passphrase now: the column and the file bytes
    db = sqlite3.connect(home / "ledger.db")
    assert db.execute(
        "SELECT count(*) FROM campaign_recipients WHERE pickup_key IS NOT NULL"
    ).fetchone() == (0,)
    db.close()
    files = _files(home)
    assert derived["p"].encode() not in files and derived["salt"].encode() not in files
    assert not [s for s in (OWN, DEFAULT, UNUSED) if s.encode() in files]
    # Carol's pickup asks for her own passphrase, under the salt create chose; Dave's the default
    text = _open(relay, mails[CAROL], events[CAROL]["message_id"], OWN, DEFAULT, derived["salt"])
    assert text.startswith("Dear Carol,\nthe rent changes in March.")
    text = _open(relay, mails[DAVE], events[DAVE]["message_id"], DEFAULT, OWN)
    assert text.startswith("Dear Dave,\nthe rent changes in March.")
