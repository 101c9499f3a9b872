"""Releases of sealed and pickup messages on the real app (notary/seals_api.py, seals.py,
seal_marks.py, pickup.py).

- ``POST /v1/seals/{sha256}/open`` through the raw-ASGI fast path answers exactly
  what the FastAPI route answers (``CERTMAIL_REFERENCE_ONLY=1``): hostile requests
  and a release and its retry, byte for byte.
- No asyncio lock is kept per message once no one holds or waits for it.
- A pickup release answers before its ``released`` mark is written (batched, off the
  event loop); the content is downloadable at once, the mark reaches seals.db, a
  lost (or another worker's unwritten) mark does not hold the content back (the log's
  ContentHandover decides), and the next acknowledgement sets it again, logging nothing more.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import sqlite3
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pysequoia
import pytest
from fastapi import FastAPI
from starlette.testclient import TestClient

from notary.api import create_app
from notary.evidence import format_time
from notary.pickupformat import token_hash
from notary.seals import Seals
from notary.service import NotaryService
from tests.fixtures.seals import BOB, open_request, register_seal

CAROL = "carol@example.com"
MID = "<release@example.org>"


def _seals(app: Any) -> Seals:
    while not isinstance(app, FastAPI):  # the fast paths and the body limit wrap it
        app = app.app
    seals: Seals = app.state.seals
    return seals


def _sealed(client: TestClient, auth: dict[str, str], sha: str, cert: Any) -> bytes:
    share = hashlib.sha256(sha.encode()).digest()
    register_seal(client, auth, sha, MID, share, cert)
    return share


def _ack(bob: Any, sha: str, when: datetime) -> dict[str, str]:
    return open_request(bob, sha, MID, when)


def _answers(notary_service: NotaryService, bob: Any, token: str) -> list[tuple[int, str, bytes]]:
    """Status, content type and body of hostile opens, a release and its retry."""
    sha = hashlib.sha256(os.urandom(16)).hexdigest()
    other = hashlib.sha256(b"never sealed").hexdigest()
    auth = {"Authorization": f"Bearer {token}"}
    app = create_app(notary_service)
    out = []
    with TestClient(app, raise_server_exceptions=False) as client:
        share = _sealed(client, auth, sha, bob.extract_certificate())
        good = _ack(bob, sha, datetime(2026, 1, 2, tzinfo=UTC))
        other_time = _ack(bob, sha, datetime(2026, 1, 3, tzinfo=UTC))
        forged = {**good, "signature": other_time["signature"]}  # over another text
        hostile: list[tuple[str, Any]] = [
            (f"/v1/seals/{sha}/open", b"not json"),
            (f"/v1/seals/{sha}/open", b"[" * 100_000),  # over the bound
            (f"/v1/seals/{sha}/open", {"sha256": sha}),
            (f"/v1/seals/{other}/open", good),  # the path names another message
            (f"/v1/seals/{other}/open", _ack(bob, other, datetime.now(UTC))),  # not sealed
            ("/v1/seals/ZZ/open", good),
            (f"/v1/seals/{sha}/open", forged),  # a bad signature
            (f"/v1/seals/{sha}/open", good),  # the release
            (f"/v1/seals/{sha}/open", good),  # its retry
            ("/v1/seals//open", good),
            (f"/v1/seals/{sha}/open/", good),  # redirected to the retry
        ]
        for path, body in hostile:
            if isinstance(body, bytes):
                r = client.post(path, content=body, headers={"Content-Type": "application/json"})
            else:
                r = client.post(path, json=body)
            out.append((r.status_code, r.headers.get("content-type", ""), r.content))
        r = client.get(f"/v1/seals/{sha}/open")
        out.append((r.status_code, r.headers.get("content-type", ""), r.content))
        assert _seals(app).opening() == 0
    assert base64.b64decode(out[7][2].split(b'"share":"')[1].split(b'"')[0]) == share
    events = [e.event for e in notary_service.storage.entries_for_message(sha)]
    assert events == ["SubmissionAcceptance", "ContentHandover"]
    return out


def test_the_open_fast_path_answers_as_the_route_does(
    notary_service: NotaryService, monkeypatch: pytest.MonkeyPatch
) -> None:
    bob = pysequoia.Tsk.generate(f"Bob <{BOB}>")
    _, token = notary_service.add_account(["alice@example.org"])
    fast = _answers(notary_service, bob, token)
    monkeypatch.setenv("CERTMAIL_REFERENCE_ONLY", "1")
    reference = _answers(notary_service, bob, token)
    statuses = [s for s, _, _ in fast]
    assert statuses == [400, 413, 400, 422, 404, 422, 422, 200, 200, 404, 200, 405]
    assert fast[8][2] == fast[7][2] == fast[10][2]  # retries: the same key and receipt
    for (fs, ft, fb), (rs, rt, rb) in zip(fast, reference, strict=True):
        assert (fs, ft) == (rs, rt)
        if fs != 200:  # the receipts differ (other messages); the errors are identical
            assert fb == rb


def test_no_lock_is_kept_per_message(notary_service: NotaryService) -> None:
    seals = Seals(notary_service, notary_service.config.directory)
    sha = "ab" * 32

    async def scenario() -> list[str]:
        order: list[str] = []
        held = asyncio.Event()

        async def holder() -> None:
            async with seals.exclusive(sha):
                held.set()
                await asyncio.sleep(0.05)
                order.append("first")

        async def waiter() -> None:
            async with seals.exclusive(sha):
                order.append("second")

        first = asyncio.create_task(holder())
        await held.wait()
        second, cancelled = asyncio.create_task(waiter()), asyncio.create_task(waiter())
        await asyncio.sleep(0.01)
        assert seals.opening() == 1  # one lock for the message, three users
        cancelled.cancel()  # a waiter that gives up leaves no lock behind either
        await asyncio.gather(first, second, cancelled, return_exceptions=True)
        async with seals.exclusive("cd" * 32):
            assert seals.opening() == 1
        return order

    try:
        assert asyncio.run(scenario()) == ["first", "second"]
        assert seals.opening() == 0
    finally:
        seals.close()


def _released(directory: Path, sha: str) -> tuple[str, str | None]:
    with sqlite3.connect(directory / "seals.db") as db:
        state = db.execute("SELECT state FROM seals WHERE sha256 = ?", (sha,)).fetchone()[0]
        at = db.execute("SELECT released FROM pickups WHERE sha256 = ?", (sha,)).fetchone()[0]
    return str(state), at


def _marked(directory: Path, sha: str) -> tuple[str, str | None]:
    deadline = time.monotonic() + 10
    while _released(directory, sha)[1] is None and time.monotonic() < deadline:
        time.sleep(0.01)
    return _released(directory, sha)


def test_a_pickup_release_is_marked_after_the_answer(notary_service: NotaryService) -> None:
    sha = hashlib.sha256(b"a pickup").hexdigest()
    token = base64.urlsafe_b64encode(os.urandom(24)).decode().rstrip("=")
    content = os.urandom(300)
    _, bearer = notary_service.add_account(["alice@example.org"])
    auth = {"Authorization": f"Bearer {bearer}"}
    reg = {
        "sha256": sha,
        "message_id": MID,
        "share": base64.b64encode(os.urandom(32)).decode(),
        "token_sha256": token_hash(token),
        "recipient": CAROL,
        "expires": format_time(datetime.now(UTC) + timedelta(hours=1)),
        "content": base64.b64encode(content).decode(),
        "sender": "alice@example.org",
        "subject": "Keys",
        "size": 300,
        "date": "Fri, 2 Jan 2026 10:00:00 +0000",
        "passphrase": None,
    }
    directory = notary_service.config.directory
    with TestClient(create_app(notary_service), raise_server_exceptions=False) as client:
        r = client.post("/v1/notarize", json={"sha256": sha, "message_id": MID}, headers=auth)
        assert r.status_code == 200, r.text
        assert client.post("/v1/pickups", json=reg, headers=auth).status_code == 200, r.text
        assert client.get(f"/v1/pickup/{token}/content").status_code != 200  # not yet
        first = client.post(f"/v1/pickup/{token}/ack", json={"address": CAROL})
        assert first.status_code == 200, first.text
        got = client.get(f"/v1/pickup/{token}/content")  # at once, mark written or not
        assert got.status_code == 200 and got.content == content
        assert client.get(f"/v1/pickup/{token}").json()["state"] == "released"
        assert _marked(directory, sha) == ("released", first.json()["released"])
        with sqlite3.connect(directory / "seals.db") as db:  # the marks lost in a crash
            db.execute("UPDATE seals SET state = 'sealed' WHERE sha256 = ?", (sha,))
            db.execute("UPDATE pickups SET released = NULL WHERE sha256 = ?", (sha,))
        # The log decides, not the mark (a lost mark, or another worker's release
        # whose mark this process has not seen): the content is still served.
        after = client.get(f"/v1/pickup/{token}/content")
        assert after.status_code == 200 and after.content == content
        again = client.post(f"/v1/pickup/{token}/ack", json={"address": CAROL})
        assert again.status_code == 200, again.text
        assert again.json() == first.json()  # the same share, receipt and release time
        assert _marked(directory, sha) == ("released", first.json()["released"])
    events = [e.event for e in notary_service.storage.entries_for_message(sha)]
    assert events == ["SubmissionAcceptance", "ContentHandover"]
