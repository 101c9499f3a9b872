"""Pickup evidence (issue 12 item 3): the proof bundle of a picked-up message, checked by
``proof verify`` and told by the certificate: mode pickup, identity assurance, release time."""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any

from certmail.bundle.documents.facts import PICKUP_HANDOVER
from tests.fixtures.notary import NotaryProcess
from tests.fixtures.pickup import CAROL, picked_up_bundle


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
