"""Issue 10 item 9: acknowledgements, receipts and hints while the notary is down.

Real ``certmail notary serve`` processes, real gpg, the SMTP sink as Alice's
server: Bob opens with ``--ack`` while the notary is stopped (the body is shown,
the signed acknowledgement is kept in his outbox and posted by ``outbox
flush`` once the notary is back, exactly once); ``receipts`` shows the stored
timeline offline; commands that queue nothing do not mention the outbox; a
notary URL that answers SMTP is a configuration error.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.cli import one_line_error, run, send_contract, use_notary
from tests.fixtures.notary import NotaryProcess


def _send(c: Any, notary: NotaryProcess, tmp_path: Path) -> tuple[dict[str, Any], Path]:
    use_notary(c, c.alice, notary)
    return send_contract(c, tmp_path)


#: (correspondents, Alice's ``send --json``, Bob's copy), sent while the notary was up
Sent = tuple[Any, dict[str, Any], Path]


@pytest.fixture
def sent_then_down(correspondents: Any, notary_server: NotaryProcess, tmp_path: Path) -> Sent:
    """Alice sent Bob the contract through the notary, which is down now."""
    sent, eml = _send(correspondents, notary_server, tmp_path)
    notary_server.stop()
    return correspondents, sent, eml


def _events(c: Any, sha: str) -> list[str]:
    p = run(c.alice, "receipts", sha, "--json")
    assert p.returncode == 0, p.stderr
    return [s["event"] for s in json.loads(p.stdout)["recipients"][c.bob.email]]


def test_open_ack_with_the_notary_down_shows_the_body_and_queues_the_ack(
    sent_then_down: Sent, notary_server: NotaryProcess, tmp_path: Path
) -> None:
    c, sent, eml = sent_then_down

    p = run(c.bob, "open", str(eml), "--ack")
    assert p.returncode == 5, p.stderr
    assert "Please sign." in p.stdout  # the message is shown all the same
    assert "acknowledgement queued" in p.stderr
    assert "certmail outbox flush" in one_line_error(p) + p.stderr
    # Asked again while still down: the same signed acknowledgement stays queued (one).
    p = run(c.bob, "open", str(eml), "--ack", "--json")
    assert p.returncode == 5, p.stderr
    out = json.loads(p.stdout)
    assert out["body"].startswith("Please sign.") and out["ack"]["status"] == "queued"
    assert out["ack"]["receipt"] is None and out["ack"]["error"]

    p = run(c.bob, "outbox", "list", "--json")
    assert p.returncode == 0, p.stderr
    (queued,) = json.loads(p.stdout)["acks"]
    assert queued["sha256"] == sent["sha256"] and queued["status"] == "ack queued"
    assert queued["notary"] == notary_server.url
    p = run(c.bob, "outbox", "list")
    assert "ack queued" in p.stdout and sent["sha256"][:16] in p.stdout
    p = run(c.bob, "outbox", "flush", "--json")
    assert p.returncode == 5
    assert [m["status"] for m in json.loads(p.stdout)["messages"]] == ["ack queued"]

    notary_server.start()
    p = run(c.bob, "outbox", "flush", "--json")
    assert p.returncode == 0, p.stderr
    assert [m["status"] for m in json.loads(p.stdout)["messages"]] == ["ack sent"]
    assert json.loads(run(c.bob, "outbox", "list", "--json").stdout)["acks"] == []
    assert _events(c, sent["sha256"]) == ["SubmissionAcceptance", "ContentHandover"]

    # Opening with --ack again answers the receipt already held: no second handover.
    p = run(c.bob, "open", str(eml), "--ack", "--json")
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["ack"]["status"] == "sent"
    assert run(c.bob, "outbox", "flush", "--json").returncode == 0
    assert _events(c, sent["sha256"]) == ["SubmissionAcceptance", "ContentHandover"]


def test_receipts_offline_shows_the_stored_timeline(
    sent_then_down: Sent, notary_server: NotaryProcess, tmp_path: Path
) -> None:
    c, sent, _ = sent_then_down
    p = run(c.alice, "receipts", sent["sha256"])
    assert p.returncode == 5
    assert "stored view from your ledger" in p.stderr
    assert f"{c.bob.email}: notarized" in p.stdout
    assert "outbox" not in p.stderr  # nothing was queued
    p = run(c.alice, "receipts", sent["sha256"], "--json")
    out = json.loads(p.stdout)
    assert out["source"] == "ledger"
    assert [s["event"] for s in out["recipients"][c.bob.email]] == ["SubmissionAcceptance"]


def test_commands_that_queue_nothing_do_not_mention_the_outbox(
    sent_then_down: Sent, notary_server: NotaryProcess, tmp_path: Path
) -> None:
    c, sent, _ = sent_then_down
    letter = tmp_path / "letter.txt"
    letter.write_text("hello\n")
    p = run(c.alice, "notarize", str(letter))
    assert p.returncode == 5
    assert "nothing was notarized" in one_line_error(p)
    assert "outbox" not in p.stderr
    assert not (tmp_path / "letter.txt.receipt.json").exists()
    p = run(c.alice, "proof", "export", sent["sha256"], "-o", str(tmp_path / "p.zip"))
    assert p.returncode == 5
    assert "outbox" not in p.stderr and "Traceback" not in p.stderr


@pytest.fixture
def smtp_greeter() -> Iterator[int]:
    """A port that answers as an SMTP server does (a greeting, then 500 to anything)."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen()
    srv.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
            except TimeoutError:
                continue
            with conn:
                conn.settimeout(2)
                try:
                    conn.sendall(b"220 mx.test ESMTP\r\n")
                    if conn.recv(4096):
                        conn.sendall(b"500 5.5.2 Error: bad syntax\r\n")
                except OSError:
                    pass

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    yield int(srv.getsockname()[1])
    stop.set()
    t.join()
    srv.close()


def test_a_notary_url_that_speaks_smtp_is_a_configuration_error(
    correspondents: Any, smtp_greeter: int, tmp_path: Path
) -> None:
    c = correspondents
    c.settings(c.alice, notary_url=f"http://127.0.0.1:{smtp_greeter}", notary_token="t" * 32)
    letter = tmp_path / "letter.txt"
    letter.write_text("hello\n")
    p = run(c.alice, "notarize", str(letter))
    assert p.returncode == 1, p.stderr
    assert "does not answer HTTP" in one_line_error(p)
    assert "CERTMAIL_NOTARY_URL" in p.stderr and "retry" not in p.stderr
    p = run(c.alice, "send", "--via", "smtp", "--to", c.bob.email, "--subject", "x", stdin=b"x\n")
    assert "CERTMAIL_NOTARY_URL" in p.stderr, p.stderr
    # Relay mode (the default with a notary) asks it where its relay is first:
    # the same configuration error, and nothing is queued.
    before = json.loads(run(c.alice, "outbox", "list", "--json").stdout)["messages"]
    assert [m["status"] for m in before] == ["unnotarized"]  # the direct send above
    p = run(c.alice, "send", "--via", "relay", "--to", c.bob.email, "--subject", "x", stdin=b"x\n")
    assert p.returncode == 1, p.stderr
    assert "does not answer HTTP" in one_line_error(p)
    assert json.loads(run(c.alice, "outbox", "list", "--json").stdout)["messages"] == before
