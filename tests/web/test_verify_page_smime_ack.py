"""The in-browser verifier on a bundle with an S/MIME (CMS) acknowledgement (format 6):
valid as ``certmail proof verify --smime-ca`` finds it, item for item; the
acknowledgement's members and recipient checked, its CMS signature "not checked
here"; the event worded as an S/MIME acknowledgement, its certificate among the
details, as the CLI states them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.fixtures.cli import json_of, run, send_args
from tests.fixtures.relay import Relay, as_sender
from tests.fixtures.smime import Smime
from tests.fixtures.smime_relay import relay, smime, wait_until
from tests.web.browser import verify_in_page

__all__ = ["relay", "smime"]  # the fixtures


def test_smime_acknowledgement_bundle_in_the_page(
    correspondents: Any, relay: Relay, smime: Smime, tmp_path: Path, browser: Any, page: Path
) -> None:
    c, s = correspondents, smime
    args = send_args(c.bob.email, "Contract", "--smime")
    out = json_of(as_sender(c, relay, *args, stdin=b"Dear Bob.\n", **s.env))
    wait_until(lambda: len(c.sink.messages) == 1, "delivery to Bob's server")
    eml = tmp_path / "in.eml"
    eml.write_bytes(c.sink.messages[0].data)
    assert json_of(run(c.bob, "open", str(eml), "--ack", "--json", **s.env))["ack"]["receipt"]
    bundle = tmp_path / "p.zip"
    p = as_sender(c, relay, "proof", "export", out["sha256"], "-o", str(bundle), **s.env)
    assert p.returncode == 0, p.stderr
    verify = ("proof", "verify", str(bundle), "--trust-bundle-key", "--trust-bundle-root")
    cli = json_of(as_sender(c, relay, *verify, "--json", "--allow-partial", "--smime-ca",
                            str(s.pki.ca)))  # fmt: skip
    browser.get(page.as_uri())
    root = (relay.proc.directory / "tsa" / "root-ca.pem").read_text()
    (js,) = verify_in_page(browser, [(bundle.read_bytes(), True)], relay.proc.vkey, root)
    assert js["valid"], js
    assert [ch["item"] for ch in js["checks"]] == [ch["item"] for ch in cli["checks"]]
    (ack,) = [ch for ch in js["checks"] if ch["item"].endswith("acknowledgement")]
    assert ack["status"] == "skipped", ack
    assert ack["detail"].startswith("not checked here: the S/MIME signature of the ackn")
    py_events = {e["number"]: e for e in cli["events"]}
    for e in js["events"]:
        assert e["proves"] == py_events[e["number"]]["proves"], (e, py_events[e["number"]])
    (handover,) = [e for e in js["events"] if e["event"] == "ContentHandover"]
    assert "with an S/MIME certificate's key (CMS)" in handover["proves"]
