"""The ``released`` mark of seals.db is a hint; the log says whether a handover happened.

notary/seals.py writes the mark after the answer, many releases' marks in one
statement off the event loop, without waiting for the disk. Shown on the real
app: a release sets it; when it is lost (as a crash right after the answer may
lose it), opening again answers the same share with a receipt for the same
entry, logs nothing more, and sets the mark again.
"""

from __future__ import annotations

import base64
import hashlib
import os
import sqlite3
import time
from datetime import UTC, datetime
from pathlib import Path

import pysequoia
from starlette.testclient import TestClient

from notary.api import create_app
from notary.service import NotaryService
from tests.fixtures.seals import BOB, open_request, register_seal

MID = "<mark@example.org>"


def _state(directory: Path, sha: str) -> str:
    with sqlite3.connect(directory / "seals.db") as db:
        return str(db.execute("SELECT state FROM seals WHERE sha256 = ?", (sha,)).fetchone()[0])


def _marked(directory: Path, sha: str) -> str:
    """The seal's state once the mark written after the answer is in seals.db (or 10 s)."""
    deadline = time.monotonic() + 10
    while _state(directory, sha) == "sealed" and time.monotonic() < deadline:
        time.sleep(0.01)
    return _state(directory, sha)


def test_a_lost_released_mark_is_set_again_and_nothing_more_is_logged(
    notary_service: NotaryService,
) -> None:
    bob = pysequoia.Tsk.generate(f"Bob <{BOB}>")
    cert = bob.extract_certificate()
    sha = hashlib.sha256(b"a sealed message").hexdigest()
    share = os.urandom(32)
    _, token = notary_service.add_account(["alice@example.org"])
    auth = {"Authorization": f"Bearer {token}"}
    with TestClient(create_app(notary_service), raise_server_exceptions=False) as client:
        register_seal(client, auth, sha, MID, share, cert)
        ack = open_request(bob, sha, MID, datetime.now(UTC))
        first = client.post(f"/v1/seals/{sha}/open", json=ack)
        assert first.status_code == 200, first.text
        assert base64.b64decode(first.json()["share"]) == share
        directory = notary_service.config.directory
        assert _marked(directory, sha) == "released"
        with sqlite3.connect(directory / "seals.db") as db:  # the mark lost
            db.execute("UPDATE seals SET state = 'sealed' WHERE sha256 = ?", (sha,))
        again = client.post(f"/v1/seals/{sha}/open", json=ack)
        assert again.status_code == 200, again.text
        assert again.json() == first.json()  # the same share, the same receipt
        assert _marked(directory, sha) == "released"
    events = [e.event for e in notary_service.storage.entries_for_message(sha)]
    assert events == ["SubmissionAcceptance", "ContentHandover"]
