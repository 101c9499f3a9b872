"""``certmail send --smime`` with the notary: notarized direct, and through the relay.

The same manifest, scan, notarization and relay as OpenPGP: the relay sees
CMS EnvelopedData as ciphertext (``content: {"encrypted": true}``), Bob's
``open --ack`` of the delivered copy shows the notarized SHA-256 and
acknowledges it, and Alice's receipts show the hand-over.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from notary.receipt import Receipt
from tests.fixtures.cli import json_of, run, send_args, use_notary
from tests.fixtures.relay import Relay, as_sender, start_relay
from tests.fixtures.smime import smime_homes


@pytest.fixture
def relay(tmp_path: Path, correspondents: Any) -> Iterator[Relay]:
    r = start_relay(tmp_path / "notary", correspondents, relay_retry_initial=0.2)
    yield r
    r.stop()


def _wait(pred: Any, what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout  # a generous bound, not a timing assertion
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def test_smime_direct_is_notarized(correspondents: Any, notary_server: Any, tmp_path: Path) -> None:
    c = correspondents
    s = smime_homes(c, tmp_path)
    use_notary(c, c.alice, notary_server)
    args = send_args(c.bob.email, "Contract", "--smime", "--via", "smtp")
    out = json_of(run(c.alice, *args, stdin=b"Please sign.\n", **s.env))
    (rc,) = out["receipts"]
    from notary.note import Verifier

    stmt = Receipt.from_json(rc).verify(Verifier.from_vkey(notary_server.vkey))
    assert stmt["message"]["sha256"] == out["sha256"]
    eml = tmp_path / "in.eml"
    eml.write_bytes(c.sink.messages[-1].data)
    o = json_of(run(c.bob, "open", str(eml), "--no-ack", "--json", **s.env))
    assert o["sha256"] == out["sha256"] and o["notary"] == notary_server.url
    assert o["signer"] == c.alice.email and o["manifest"] == "verified"


def test_smime_through_the_relay_opens_and_is_acknowledged(
    correspondents: Any, relay: Relay, tmp_path: Path
) -> None:
    c = correspondents
    s = smime_homes(c, tmp_path)
    out = json_of(
        as_sender(
            c, relay, *send_args(c.bob.email, "Contract", "--smime"), stdin=b"Dear Bob.\n", **s.env
        )
    )
    assert out["via"] == "relay" and out["status"] == "sent"
    (acc,) = out["receipts"]
    stmt = Receipt.from_json(acc).verify(relay.verifier())
    assert stmt["event"] == "SubmissionAcceptance" and stmt["content"] == {"encrypted": True}
    _wait(lambda: len(c.sink.messages) == 1, "delivery to Bob's server")
    eml = tmp_path / "in.eml"
    eml.write_bytes(c.sink.messages[0].data)
    p = run(c.bob, "open", str(eml), "--ack", "--json", **s.env)
    assert p.returncode == 0, p.stderr
    o = json.loads(p.stdout)
    assert o["sha256"] == out["sha256"] and o["notary"] == relay.url
    assert o["signer"] == c.alice.email and o["body"] == "Dear Bob.\n"
    assert o["ack"]["status"] == "sent" and o["ack"]["sha256"] == out["sha256"]

    def handed_over() -> bool:
        r = as_sender(c, relay, "receipts", out["sha256"], "--json")
        steps = json.loads(r.stdout)["recipients"][c.bob.email] if r.returncode == 0 else []
        return "ContentHandover" in [st["event"] for st in steps]

    _wait(handed_over, "the acknowledgement in Alice's receipts")


def test_smime_proof_bundle_exports_and_verifies(
    correspondents: Any, relay: Relay, tmp_path: Path
) -> None:
    """The evidence of an S/MIME send is a proof bundle like any other (DESIGN §4.5)."""
    c = correspondents
    s = smime_homes(c, tmp_path)
    args = send_args(c.bob.email, "Contract", "--smime")
    out = json_of(as_sender(c, relay, *args, stdin=b"Dear Bob.\n", **s.env))
    _wait(lambda: len(c.sink.messages) == 1, "delivery to Bob's server")
    bundle = tmp_path / "p.zip"
    p = as_sender(c, relay, "proof", "export", out["sha256"], "-o", str(bundle), **s.env)
    assert p.returncode == 0, p.stderr
    v = json_of(
        as_sender(
            c, relay, "proof", "verify", str(bundle), "--trust-bundle-key", "--trust-bundle-root",
            "--json", "--allow-partial",
        )
    )  # fmt: skip
    assert v["valid"] and v["sha256"] == out["sha256"]
    assert v["unchecked"] == ["sender signature"]  # encrypted: the signature is inside
    assert [e["event"] for e in v["events"]] == ["SubmissionAcceptance", "RelayToNonERDS"]
