"""``POST /v1/ack`` of a running notary with acknowledgements signed by Sequoia ``sq``.

Issue 10 item 13: a signature made by ``sq`` (which adds a binary
``salt@notations.sequoia-pgp.org`` notation) gave HTTP 500 on ``POST /v1/ack``.
Here a real ``certmail notary serve`` process is asked: a valid sq signature
is accepted and logged as ContentHandover with the sq key's fingerprint; a
forged one (another key's signature, a signature over other text, bytes flipped
in the signature) gets a clear 4xx JSON error, never a 5xx.
"""

from __future__ import annotations

import base64
import hashlib
import json
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from notary.ackformat import Ack, ack_text
from notary.note import Verifier
from notary.receipt import Receipt
from tests.fixtures.notary import NotaryProcess
from tests.fixtures.sequoia import SqKey

BOB = "bob@example.net"
T0 = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
MID = "<sq-ack@example.org>"


def _notarized(notary: NotaryProcess, data: bytes) -> tuple[str, str]:
    token = notary.token_for("alice@example.org")
    digest = hashlib.sha256(data).hexdigest()
    r = httpx.post(
        f"{notary.url}/v1/notarize",
        json={"sha256": digest, "message_id": MID},
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )
    assert r.status_code == 200, r.text
    return digest, token


def _body(notary: NotaryProcess, digest: str, signer: SqKey, cert: str) -> dict[str, str]:
    text = ack_text(Ack(digest, MID, BOB, T0, notary.url))
    return {
        "sha256": digest,
        "message_id": MID,
        "recipient": BOB,
        "signed": text,
        "signature": signer.sign_detached(text.encode()),
        "public_key": cert,
    }


def _post(notary: NotaryProcess, body: dict[str, str]) -> httpx.Response:
    return httpx.post(f"{notary.url}/v1/ack", json=body, timeout=30)


@pytest.fixture
def bob_sq(tmp_path: Path) -> SqKey:
    return SqKey.generate(tmp_path / "bob-sq", f"Bob <{BOB}>")


def test_sq_signed_ack_is_logged(notary_server: NotaryProcess, bob_sq: SqKey) -> None:
    digest, token = _notarized(notary_server, b"a message acknowledged with sq")
    r = _post(notary_server, _body(notary_server, digest, bob_sq, bob_sq.cert))
    assert r.status_code == 200, r.text
    stmt = Receipt.from_json(r.json()).verify(Verifier.from_vkey(notary_server.vkey))
    assert stmt["event"] == "ContentHandover" and stmt["recipient"] == BOB
    assert stmt["fingerprint"] == bob_sq.fingerprint
    got = httpx.get(
        f"{notary_server.url}/v1/messages/{digest}/receipts",
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    ).json()["receipts"]
    events = [json.loads(base64.b64decode(x["entry"]))["event"] for x in got]
    assert events == ["SubmissionAcceptance", "ContentHandover"]


def _flip(armored: str) -> str:
    """The same armored signature with one byte of the signature MPIs changed."""
    lines = armored.splitlines()
    body = [
        i for i, ln in enumerate(lines) if ln and ":" not in ln and not ln.startswith(("-", "="))
    ]
    raw = bytearray(base64.b64decode("".join(lines[i] for i in body)))
    raw[-5] ^= 0x01
    b64 = base64.b64encode(bytes(raw)).decode()
    head = lines[: body[0]]
    return "\n".join([*head, *(b64[i : i + 64] for i in range(0, len(b64), 64)), lines[-1]]) + "\n"


def test_forged_sq_acks_get_a_clear_4xx(
    notary_server: NotaryProcess, bob_sq: SqKey, tmp_path: Path
) -> None:
    digest, token = _notarized(notary_server, b"a message someone wants to fake an ack for")
    good = _body(notary_server, digest, bob_sq, bob_sq.cert)
    mallory = SqKey.generate(tmp_path / "mallory", "Mallory <mallory@example.org>")
    other_text = ack_text(Ack(digest, MID, BOB, T0.replace(hour=13), notary_server.url))
    forged = {
        # Mallory's signature, Bob's key sent along.
        "another key's signature": {
            **good,
            "signature": mallory.sign_detached(good["signed"].encode()),
        },
        # Bob's real sq signature, but over another text than the one posted.
        "a signature over other text": {
            **good,
            "signature": bob_sq.sign_detached(other_text.encode()),
        },
        # One bit of the signature changed.
        "a flipped signature byte": {**good, "signature": _flip(good["signature"])},
        # Mallory's key claims another address than the recipient's.
        "a key without the recipient's address": {
            **good,
            "signature": mallory.sign_detached(good["signed"].encode()),
            "public_key": mallory.cert,
        },
    }
    for what, body in forged.items():
        r = _post(notary_server, body)
        assert 400 <= r.status_code < 500, (what, r.status_code, r.text)
        assert isinstance(r.json().get("message"), str), (what, r.text)
    # Nothing forged was logged; the real one still is accepted afterwards.
    assert _post(notary_server, good).status_code == 200
    got = httpx.get(
        f"{notary_server.url}/v1/messages/{digest}/receipts",
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    ).json()["receipts"]
    assert len(got) == 2  # the acceptance and the one real acknowledgement
