"""An acknowledgement is seen only by the account whose message was acknowledged (issue 10 item 3).

Mallory notarizes the SHA-256 and Message-ID of alice's message; bob's signed
acknowledgement of alice's message must show up in alice's receipts only
(DESIGN §4.1: entries are private to the account that caused them). Real gpg
keys, the real app, on each storage backend.
"""

from __future__ import annotations

import base64
import hashlib
import json
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from certmail.ack import make_ack
from keys.gpg import Keyring
from notary.ackformat import Ack
from notary.api import create_app
from notary.service import NotaryService
from tests.fixtures.notary import init_notary_dir
from tests.notary.storage_backends import BACKENDS, pg_url

BOB = "bob@example.net"
T0 = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)


@pytest.fixture(params=BACKENDS)
def notary(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[NotaryService]:
    d = init_notary_dir(tmp_path / "notary")
    if request.param == "sqlite":
        svc = NotaryService.open(d)
        yield svc
        svc.close()
        return
    from notary.storage.postgres import PostgresStorage

    svc = NotaryService.open(d, database=pg_url("ack_" + uuid.uuid4().hex[:12]))
    yield svc
    assert isinstance(svc.storage, PostgresStorage)
    svc.storage.drop_schema()
    svc.close()


def _events(client: TestClient, digest: str, auth: dict[str, str]) -> list[str]:
    r = client.get(f"/v1/messages/{digest}/receipts", headers=auth)
    assert r.status_code == 200, r.text
    return [json.loads(base64.b64decode(x["entry"]))["event"] for x in r.json()["receipts"]]


def test_another_account_notarizing_the_same_hash_never_sees_the_ack(
    notary: NotaryService, keyring_factory: Callable[[str, str], tuple[Keyring, str]]
) -> None:
    bob, _ = keyring_factory(BOB, "Bob")
    digest = hashlib.sha256(b"alice's letter to bob").hexdigest()
    mid = "<letter-1@example.org>"
    with TestClient(create_app(notary), raise_server_exceptions=False) as client:
        auths = {}
        for name in ("alice", "mallory"):
            _, token = notary.add_account([f"{name}@example.org"])
            auths[name] = {"Authorization": f"Bearer {token}"}
            r = client.post(
                "/v1/notarize", json={"sha256": digest, "message_id": mid}, headers=auths[name]
            )
            assert r.status_code == 200, r.text
        ack = make_ack(bob, Ack(digest, mid, BOB, T0, "http://notary.test"))
        r = client.post("/v1/ack", json=ack.to_json())
        assert r.status_code == 200, r.text
        assert _events(client, digest, auths["alice"]) == [
            "SubmissionAcceptance",
            "ContentHandover",
        ]
        assert _events(client, digest, auths["mallory"]) == ["SubmissionAcceptance"]
    # The log holds one ContentHandover, alice's.
    alice = notary.storage.account_by_address("alice@example.org")
    assert alice is not None
    handovers = [
        e for e in notary.storage.entries_for_message(digest) if e.event == "ContentHandover"
    ]
    assert [e.account_id for e in handovers] == [alice.id]
