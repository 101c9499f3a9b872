"""The ``certmail`` CLI end to end: send, open, verify, outbox (subprocesses, real components)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from tests.fixtures.clamd import eicar_file
from tests.fixtures.cli import delivered, json_of, one_line_error, run, send_args


def test_send_json_then_open_and_verify(correspondents: Any, tmp_path: Path) -> None:
    c = correspondents
    att = tmp_path / "report.txt"
    att.write_bytes(b"quarterly numbers\n")
    args = send_args(c.bob.email, "Q3", "--attach", str(att), "--no-notarize")
    p = run(c.alice, *args, stdin=b"Hi Bob,\nsee attached.\n")
    out = json_of(p)
    assert {"sha256", "message_id", "recipients", "receipts"} <= set(out)
    assert out["recipients"] == [c.bob.email] and out["receipts"] == []
    assert "not scanned" in p.stderr
    eml = delivered(c, tmp_path, "in.eml")
    save = tmp_path / "save"
    o = json_of(run(c.bob, "open", str(eml), "--save-dir", str(save), "--json"))
    assert o["headers"]["Subject"] == "Q3" and o["signer"] == c.alice.email and o["trusted"]
    assert o["body"] == "Hi Bob,\nsee attached.\n" and o["manifest"] == "verified"
    assert (save / "report.txt").read_bytes() == b"quarterly numbers\n"
    # No overwrite without --force; nothing else is written.
    p = run(c.bob, "open", str(eml), "--save-dir", str(save))
    assert p.returncode == 7 and "exists" in one_line_error(p)
    p = run(c.bob, "open", str(eml), "--save-dir", str(save), "--force")
    assert p.returncode == 0 and p.stdout == "Hi Bob,\nsee attached.\n"
    # verify: the PGP signature is inside the encryption, no DKIM: nothing checkable.
    p = run(c.bob, "verify", str(eml), "--json")
    assert p.returncode == 0 and json.loads(p.stdout)["pgp"] == "encrypted"


def test_signed_only_verify_and_forgery(correspondents: Any, tmp_path: Path) -> None:
    c = correspondents
    body = tmp_path / "body.txt"
    body.write_text("I agree.\n")
    p = run(
        c.alice,
        *send_args(
            c.bob.email,
            "Yes",
            "--body-file",
            str(body),
            "--no-encrypt",
            "--no-notarize",
            as_json=False,
        ),
    )
    assert p.returncode == 0, p.stderr
    assert len(p.stdout.strip()) == 64
    eml = tmp_path / "m.eml"
    eml.write_bytes(c.sink.messages[0].data)
    p = run(c.bob, "verify", str(eml))
    assert p.returncode == 0 and "pgp: valid signature by alice@example.org" in p.stdout
    eml.write_bytes(c.sink.messages[0].data.replace(b"I agree.", b"I refuse"))
    p = run(c.bob, "verify", str(eml))
    assert p.returncode == 3 and "BAD signature" in one_line_error(p)
    p = run(c.bob, "open", str(eml))
    assert p.returncode == 3 and p.stdout == ""


def test_infected_exit_4_nothing_sent(
    correspondents: Any, clamd_socket: str, tmp_path: Path
) -> None:
    c = correspondents
    bad = eicar_file(tmp_path)
    p = run(
        c.alice,
        *send_args(c.bob.email, "x", "--attach", str(bad), "--no-notarize", as_json=False),
        stdin=b"x",
        CERTMAIL_CLAMD=clamd_socket,
    )
    assert p.returncode == 4
    assert "Eicar" in one_line_error(p)
    assert c.sink.messages == [] and c.sink.handler.rcpt_seen == []


def test_outbox_cli(correspondents: Any) -> None:
    c = correspondents
    c.sink.stop()
    p = run(c.alice, *send_args(c.bob.email, "later", "--no-notarize"), stdin=b"x")
    assert p.returncode == 5 and "certmail outbox flush" in p.stderr
    sha = json.loads(p.stdout)["sha256"]
    p = run(c.alice, "outbox", "list", "--json")
    assert [m["sha256"] for m in json.loads(p.stdout)["messages"]] == [sha]
    p = run(c.alice, "outbox", "flush")
    assert p.returncode == 5
    c.sink.start()
    p = run(c.alice, "outbox", "flush", "--json")
    assert p.returncode == 0 and json.loads(p.stdout)["messages"][0]["status"] == "sent"
    p = run(c.alice, "outbox", "flush")
    assert p.returncode == 0 and len(c.sink.messages) == 1


def test_usage_errors(correspondents: Any, tmp_path: Path) -> None:
    c = correspondents
    p = run(c.alice, "send", "--subject", "x", stdin=b"x")
    assert p.returncode == 2
    p = run(c.alice, "send", "--to", c.bob.email, "--subject", "x", "--via", "relay", stdin=b"x")
    assert p.returncode == 1 and "relay" in one_line_error(p)
    p = run(
        c.alice,
        *send_args(
            c.bob.email,
            "x",
            "--attach",
            str(tmp_path / "missing.pdf"),
            "--no-notarize",
            as_json=False,
        ),
        stdin=b"x",
    )
    assert p.returncode in (2, 6)
    p = run(c.alice, "send", "--to", c.bob.email, "--subject", "x", stdin=b"x")
    assert p.returncode == 1 and "CERTMAIL_NOTARY_URL" in p.stderr  # notarize by default
    assert c.sink.messages == []
    empty = tmp_path / "empty.eml"
    empty.write_bytes(b"")
    p = run(c.bob, "open", str(empty))
    assert p.returncode == 3 and "empty" in one_line_error(p)
    assert os.listdir(tmp_path) == ["empty.eml"]
