"""The verify page on a sealed bundle (issue 12): the same events and sentences as the CLI."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from tests.fixtures.cli import CERTMAIL, delivered, json_of, run, use_notary
from tests.web.browser import verify_in_page

SENTENCE = "the content could not be read before the signature was logged"


def test_sealed_handover_reads_the_same_in_the_page(
    correspondents: Any, notary_server: Any, browser: Any, tmp_path: Path
) -> None:
    c = correspondents
    use_notary(c, c.alice, notary_server)
    sent = json_of(
        run(c.alice, "send", "--to", c.bob.email, "--subject", "Contract", "--sealed", "--json",
            stdin=b"Sealed terms.\n")
    )  # fmt: skip
    eml = delivered(c, tmp_path)
    json_of(run(c.bob, "open", str(eml), "--ack", "--json"))
    bundle, vkey = tmp_path / "p.zip", tmp_path / "notary.vkey"
    vkey.write_text(notary_server.vkey + "\n")
    assert run(c.alice, "proof", "export", sent["sha256"], "-o", str(bundle)).returncode == 0
    p = run(
        c.alice, *("proof", "verify", str(bundle), "--vkey", str(vkey), "--trust-bundle-root"),
        *("--json", "--allow-partial"),
    )  # fmt: skip
    assert p.returncode == 0, p.stderr
    py = json.loads(p.stdout)
    page = tmp_path / "verify.html"
    made = subprocess.run(
        [*CERTMAIL, "proof", "verifier-page", "-o", str(page)], capture_output=True, timeout=60
    )
    assert made.returncode == 0, made.stderr
    browser.get(page.as_uri())
    (js,) = verify_in_page(browser, [(bundle.read_bytes(), True)], notary_server.vkey, "")
    assert js["valid"], js
    assert [e["event"] for e in js["events"]] == [e["event"] for e in py["events"]]
    assert [e["proves"] for e in js["events"]] == [e["proves"] for e in py["events"]]
    (handover,) = [e for e in js["events"] if e["event"] == "ContentHandover"]
    assert SENTENCE in handover["proves"]
