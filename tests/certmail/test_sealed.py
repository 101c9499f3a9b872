"""Sealed delivery end to end (issue 12, docs/sealed.md): real gpg, real ``notary serve``.

Alice sends Bob a sealed message in direct mode (her SMTP server is the sink,
her notary the real ``certmail notary serve``). Before Bob's acknowledgement
is logged, nothing Bob holds (nor the notary, with all it stores) decrypts the
content; after it, ``open --ack`` reads it, and Alice sees ContentHandover.
"""

from __future__ import annotations

import base64
import json
import sqlite3
import time
import zipfile
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from certmail.sealed.box import CONTENT_NAME, KEY_NAME, KeyPart, open_content
from certmail.unseal import unseal
from keys.errors import VerificationError
from notary.evidence import parse_statement
from notary.receipt import Receipt
from notary.seals import FAULT_ENV
from tests.fixtures.cli import delivered, json_of, one_line_error, run, signed_ack, use_notary
from tests.fixtures.notary import NotaryProcess
from tests.fixtures.terminal import on_a_terminal

BODY = b"Please sign the contract by Friday.\n"


def _send(c: Any, tmp_path: Path, *extra: str, name: str = "sealed.eml") -> tuple[Any, Path]:
    att = tmp_path / "contract.txt"
    att.write_bytes(b"clause 1: the secret terms\n")
    p = run(
        c.alice,
        *("send", "--to", c.bob.email, "--subject", "Contract", "--sealed", "--json"),
        *("--attach", str(att), *extra),
        stdin=BODY,
    )
    return json_of(p), delivered(c, tmp_path, name)


@pytest.fixture
def sealed(correspondents: Any, notary_server: NotaryProcess, tmp_path: Path) -> Any:
    use_notary(correspondents, correspondents.alice, notary_server)
    sent, eml = _send(correspondents, tmp_path)
    return correspondents, sent, eml


def _events(c: Any, sha: str) -> list[dict[str, Any]]:
    p = run(c.alice, "receipts", sha, "--json")
    assert p.returncode == 0, p.stderr
    steps: list[dict[str, Any]] = json.loads(p.stdout)["recipients"][c.bob.email]
    return steps


def _names(c: Any, sha: str) -> list[str]:
    return [s["event"] for s in _events(c, sha)]


def _outer(c: Any, eml: Path, tmp_path: Path) -> tuple[bytes, KeyPart]:
    u = unseal(c.bob.keyring, eml.read_bytes(), tmp_path / "peek")
    parts = {p.filename: p.data for p in u.parts}
    assert b"secret terms" not in b"".join(parts.values()) and b"Friday" not in (u.body or b"")
    return parts[CONTENT_NAME], KeyPart.from_bytes(parts[KEY_NAME])


def _notary_share(notary: NotaryProcess, sha: str) -> bytes:
    """K_n, with everything the notary stores (its seal key and seals.db)."""
    key = (notary.directory / "seal.key").read_bytes()
    assert (notary.directory / "seal.key").stat().st_mode & 0o777 == 0o600
    with sqlite3.connect(notary.directory / "seals.db") as db:
        (wrapped,) = db.execute("SELECT wrapped FROM seals WHERE sha256=?", (sha,)).fetchone()
    return AESGCM(key).decrypt(wrapped[:12], wrapped[12:], sha.encode())


def test_sealed_content_is_released_only_after_the_ack_is_logged(
    sealed: Any, notary_server: NotaryProcess, tmp_path: Path
) -> None:
    c, sent, eml = sealed
    blob, kp = _outer(c, eml, tmp_path)
    # Bob's key alone yields K_r only; the notary's share alone is no better.
    with pytest.raises(VerificationError):
        open_content(blob, kp.k_r, sent["message_id"])
    with pytest.raises(VerificationError):
        open_content(blob, _notary_share(notary_server, sent["sha256"]), sent["message_id"])
    assert kp.notary == notary_server.url and kp.size > len(BODY)

    # No terminal, no --ack: explained, exit 2, nothing logged.
    p = run(c.bob, "open", str(eml))
    assert p.returncode == 2 and "sealed" in one_line_error(p)
    assert "certmail: hint: certmail open FILE --ack" in p.stderr
    assert _names(c, sent["sha256"]) == ["SubmissionAcceptance"]

    saved = tmp_path / "saved"
    out = json_of(run(c.bob, "open", str(eml), "--ack", "--json", "--save-dir", str(saved)))
    assert out["body"] == BODY.decode() and out["manifest"] == "verified"
    assert (saved / "contract.txt").read_bytes() == b"clause 1: the secret terms\n"
    assert out["sealed"]["outcome"] == "opened"
    stmt = parse_statement(Receipt.from_json(out["sealed"]["receipt"]).entry)
    bob_fpr = c.bob.keyring.key_for(c.bob.email).fingerprint
    assert stmt["event"] == "ContentHandover" and stmt["mode"] == "sealed"
    assert stmt["fingerprint"] == bob_fpr
    steps = _events(c, sent["sha256"])
    assert [s["event"] for s in steps] == ["SubmissionAcceptance", "ContentHandover"]
    assert steps[-1]["key"] == "recipient's key"

    # Opening again: the same entry, never a second one.
    again = json_of(run(c.bob, "open", str(eml), "--ack", "--json"))
    assert again["sealed"]["receipt"]["entry"] == out["sealed"]["receipt"]["entry"]
    assert _names(c, sent["sha256"]) == ["SubmissionAcceptance", "ContentHandover"]

    # The bundle and its certificate show it.
    bundle = tmp_path / "p.zip"
    assert run(c.alice, "proof", "export", sent["sha256"], "-o", str(bundle)).returncode == 0
    vkey = tmp_path / "notary.vkey"
    vkey.write_text(notary_server.vkey + "\n")
    flags = ("--vkey", str(vkey), "--trust-bundle-root", "--allow-partial", "--json")
    v = run(c.alice, "proof", "verify", str(bundle), *flags)
    assert v.returncode == 0, v.stderr + v.stdout
    report = json.loads(v.stdout)
    (handover,) = [e for e in report["events"] if e["event"] == "ContentHandover"]
    assert "the content could not be read before the signature was logged" in handover["proves"]
    cert = tmp_path / "cert"
    with zipfile.ZipFile(bundle) as z:
        z.extract("certificate.html", cert)
    html = (cert / "certificate.html").read_text()
    assert "the content could not be read before the signature was logged" in html


def test_forged_acks_release_nothing_and_log_nothing(
    sealed: Any, notary_server: NotaryProcess, tmp_path: Path, keyring_factory: Any
) -> None:
    c, sent, _ = sealed
    url = f"{notary_server.url}/v1/seals/{sent['sha256']}/open"
    # Another key, with Bob's address on it: a good signature, not an allowed key.
    mallory, _ = keyring_factory(c.bob.email, "Not Bob")
    r = httpx.post(url, json=signed_ack(mallory, sent, c.bob.email, notary_server.url).to_json())
    assert r.status_code == 422 and r.json()["error"] == "bad_signature" and "share" not in r.json()
    # A good ack of another message, replayed for this one.
    other, _ = _send(c, tmp_path, name="other.eml")
    replay = signed_ack(c.bob.keyring, other, c.bob.email, notary_server.url).to_json()
    r = httpx.post(url, json=replay)
    assert r.status_code == 422 and "another message" in r.json()["message"]
    # A tampered text, an oversized body, garbage.
    good = signed_ack(c.bob.keyring, sent, c.bob.email, notary_server.url).to_json()
    bad = dict(good, signed=good["signed"].replace("Time: 2", "Time: 1"))
    assert httpx.post(url, json=bad).status_code == 422
    r = httpx.post(url, content=b"{" + b" " * (1 << 20))
    assert r.status_code == 413 and r.json()["error"] == "too_large"
    assert httpx.post(url, content=b"[1]").status_code == 400
    assert _names(c, sent["sha256"]) == ["SubmissionAcceptance"]
    assert _names(c, other["sha256"]) == ["SubmissionAcceptance"]
    # Registration needs a token.
    r = httpx.post(f"{notary_server.url}/v1/seals", json={})
    assert r.status_code == 401
    # Sealing without encryption would put K_r in clear beside the content: refused.
    before = len(c.sink.messages)
    p = run(c.alice, *("send", "--to", c.bob.email, "--subject", "x", "--sealed", "--no-encrypt"))
    assert p.returncode == 1 and "--sealed needs encryption" in one_line_error(p)
    assert len(c.sink.messages) == before


def test_refusal_is_logged_and_the_share_destroyed(sealed: Any, tmp_path: Path) -> None:
    c, sent, eml = sealed
    out = json_of(run(c.bob, "open", str(eml), "--refuse", "--json"))
    assert out["sealed"]["outcome"] == "refused" and "Friday" not in out["body"]
    assert _names(c, sent["sha256"]) == ["SubmissionAcceptance", "RejectionByRecipient"]
    shown = run(c.alice, "receipts", sent["sha256"])
    assert f"{c.bob.email}: refused by the recipient" in shown.stdout, shown.stdout
    p = run(c.bob, "open", str(eml), "--ack", "--json")
    assert p.returncode != 0 and "refused" in one_line_error(p)
    assert _names(c, sent["sha256"]) == ["SubmissionAcceptance", "RejectionByRecipient"]


def test_expiry_logs_the_handover_failure_and_a_late_ack_is_refused(
    correspondents: Any, notary_server: NotaryProcess, tmp_path: Path
) -> None:
    c = correspondents
    use_notary(c, c.alice, notary_server)
    sent, _ = _send(c, tmp_path, "--seal-expires", "6")
    ack = signed_ack(c.bob.keyring, sent, c.bob.email, notary_server.url).to_json()
    deadline = time.monotonic() + 30
    while "ContentHandoverFailure" not in _names(c, sent["sha256"]):
        assert time.monotonic() < deadline, "the sweep never logged the handover failure"
        time.sleep(0.5)
    r = httpx.post(f"{notary_server.url}/v1/seals/{sent['sha256']}/open", json=ack)
    assert r.status_code == 410 and r.json()["error"] == "gone" and "share" not in r.json()
    assert _names(c, sent["sha256"]) == ["SubmissionAcceptance", "ContentHandoverFailure"]
    with sqlite3.connect(notary_server.directory / "seals.db") as db:
        row = db.execute("SELECT wrapped, state FROM seals WHERE sha256=?", (sent["sha256"],))
        assert row.fetchone() == (None, "expired")


def test_sigkill_between_logging_and_answering_loses_nothing(
    sealed: Any, notary_server: NotaryProcess, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    c, sent, eml = sealed
    body = signed_ack(c.bob.keyring, sent, c.bob.email, notary_server.url).to_json()
    notary_server.stop()
    monkeypatch.setenv(FAULT_ENV, "after-log")
    notary_server.start()
    url = f"{notary_server.url}/v1/seals/{sent['sha256']}/open"
    with pytest.raises(httpx.HTTPError):  # killed after the entry is durable, before the answer
        httpx.post(url, json=body, timeout=30)
    assert notary_server.proc is not None and notary_server.proc.wait(10) is not None
    monkeypatch.delenv(FAULT_ENV)
    notary_server.start()
    url = f"{notary_server.url}/v1/seals/{sent['sha256']}/open"
    first = httpx.post(url, json=body)
    assert first.status_code == 200, first.text
    assert len(base64.b64decode(first.json()["share"])) == 32
    # A fresh acknowledgement (the CLI signs a new one) gets the same entry.
    out = json_of(run(c.bob, "open", str(eml), "--ack", "--json"))
    assert out["body"] == BODY.decode()
    assert out["sealed"]["receipt"]["entry"] == first.json()["receipt"]["entry"]
    assert _names(c, sent["sha256"]) == ["SubmissionAcceptance", "ContentHandover"]


def test_on_a_terminal_the_sender_subject_and_size_come_before_the_question(
    sealed: Any, tmp_path: Path
) -> None:
    c, sent, eml = sealed
    code, seen = on_a_terminal(c.bob, ["open", str(eml)], b"n")
    before = seen.split(b"[y/N]")[0]
    assert b"alice@example.org" in before and b"Subject: Contract" in before
    assert b"Size:" in before and b"Friday" not in seen
    assert code == 1 and b"not acknowledged" in seen
    assert _names(c, sent["sha256"]) == ["SubmissionAcceptance"]
    code, seen = on_a_terminal(c.bob, ["open", str(eml)], b"y")
    assert code == 0 and b"Friday" in seen.split(b"[y/N]")[1], seen
    assert _names(c, sent["sha256"]) == ["SubmissionAcceptance", "ContentHandover"]


def test_sealed_through_the_relay(correspondents: Any, tmp_path: Path) -> None:
    """Registered delivery (relay mode, the default): sealed, relayed, acknowledged, opened."""
    from tests.fixtures.relay import as_sender, start_relay

    c = correspondents
    relay = start_relay(tmp_path / "relay-notary", c, relay_retry_initial=0.2)
    try:
        p = as_sender(
            c, relay, *("send", "--to", c.bob.email, "--subject", "Contract"),
            *("--sealed", "--json"), stdin=BODY,
        )  # fmt: skip
        sent = json_of(p)
        assert sent["via"] == "relay"
        deadline = time.monotonic() + 60
        while not c.sink.messages:
            assert time.monotonic() < deadline, "the relay never delivered"
            time.sleep(0.1)
        eml = tmp_path / "relayed.eml"
        eml.write_bytes(c.sink.messages[-1].data)  # with the relay's prepended fields
        assert b"Friday" not in eml.read_bytes()
        out = json_of(run(c.bob, "open", str(eml), "--ack", "--json"))
        assert out["body"] == BODY.decode() and out["sha256"] == sent["sha256"]
        stmt = parse_statement(Receipt.from_json(out["sealed"]["receipt"]).entry)
        assert stmt["event"] == "ContentHandover" and stmt["mode"] == "sealed"
    finally:
        relay.stop()
