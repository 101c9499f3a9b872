"""Pickup evidence (issue 12 item 3): the proof bundle of a picked-up message, checked by
``proof verify`` and told by the certificate: mode pickup, identity assurance, release time."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

import httpx

from certmail.bundle.documents.facts import PICKUP_HANDOVER
from tests.certmail.test_pickup import CAROL, api, parts, send_pickup
from tests.fixtures.cli import run, use_notary
from tests.fixtures.notary import NotaryProcess


def picked_up_bundle(c: Any, notary: NotaryProcess, tmp_path: Path) -> tuple[Path, Path, Any]:
    """Alice's pickup to Carol, acknowledged on the page's API; the exported bundle,
    the notary's vkey file and ``proof verify --json``'s report."""
    use_notary(c, c.alice, notary)
    sent, _, url = send_pickup(c, tmp_path)
    _, token, _ = parts(url)
    r = httpx.post(api(notary, token, "/ack"), json={"address": CAROL})
    assert r.status_code == 200, r.text
    bundle, vkey = tmp_path / "p.zip", tmp_path / "notary.vkey"
    vkey.write_text(notary.vkey + "\n")
    p = run(c.alice, "proof", "export", sent["sha256"], "-o", str(bundle))
    assert p.returncode == 0, p.stderr
    p = run(
        c.alice, *("proof", "verify", str(bundle), "--vkey", str(vkey), "--trust-bundle-root"),
        *("--json", "--allow-partial"),
    )  # fmt: skip
    assert p.returncode == 0, p.stderr
    return bundle, vkey, json.loads(p.stdout)


def test_bundle_and_certificate_tell_the_pickup(
    correspondents: Any, notary_server: NotaryProcess, tmp_path: Path
) -> None:
    bundle, _, report = picked_up_bundle(correspondents, notary_server, tmp_path)
    (handover,) = [e for e in report["events"] if e["event"] == "ContentHandover"]
    assert handover["proves"] == PICKUP_HANDOVER and handover["recipient"] == CAROL
    (ack,) = [c for c in report["checks"] if c["item"].endswith("acknowledgement")]
    assert ack["status"] == "skipped" and "holder of the mailbox link" in ack["detail"]
    with zipfile.ZipFile(bundle) as z:
        cert = z.read("certificate.html").decode()
    assert "the notary released its key share only after" in cert
    assert "identity assurance: holder of the mailbox link" in cert
    assert "key share released: 20" in cert
