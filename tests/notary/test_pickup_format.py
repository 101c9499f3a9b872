"""The pickup request bodies (notary/pickupformat.py, docs/formats.md §10.3): strict, each
malformed body refused with a message naming what is wrong."""

from __future__ import annotations

import base64
import hashlib
from typing import Any

import httpx
import pytest

from keys.errors import MalformedError
from notary.pickupformat import (
    KDF_PARAMS,
    is_token,
    parse_pickup_registration,
    parse_pickup_request,
    token_hash,
)
from tests.fixtures.notary import NotaryProcess


def registration(**change: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "sha256": "ab" * 32,
        "message_id": "<1@example.org>",
        "share": base64.b64encode(bytes(32)).decode(),
        "token_sha256": token_hash("A" * 32),
        "recipient": "Carol@Example.com",
        "expires": "2030-01-01T00:00:00.000000Z",
        "content": base64.b64encode(b"CMPICK1\n" + bytes(40)).decode(),
        "sender": "Alice <alice@example.org>",
        "subject": "Keys",
        "size": 12,
        "date": "Tue, 01 Dec 2026 17:00:00 +0000",
        "passphrase": None,
    }
    body.update(change)
    return body


def test_a_good_registration_is_read() -> None:
    reg = parse_pickup_registration(registration())
    assert reg.recipient == "carol@example.com" and reg.passphrase is None
    salt = base64.b64encode(bytes(16)).decode()
    pp = {**KDF_PARAMS, "salt": salt, "verifier_sha256": "cd" * 32}
    assert parse_pickup_registration(registration(passphrase=pp)).passphrase is not None


@pytest.mark.parametrize(
    ("change", "says"),
    [
        ({"sha256": "AB" * 32}, "sha256"),
        ({"share": base64.b64encode(bytes(31)).decode()}, "share"),
        ({"recipient": "not an address"}, "recipient"),
        ({"size": -1}, "size"),
        ({"size": True}, "size"),
        ({"subject": "a\nb"}, "subject"),
        ({"content": "!!"}, "content"),
        ({"passphrase": {"kdf": "pbkdf2"}}, "passphrase"),
        ({"passphrase": {**KDF_PARAMS, "n": 2, "salt": "AA==", "verifier_sha256": "0" * 64}},
         "KDF"),
        ({"extra": 1}, "exactly"),
    ],
)  # fmt: skip
def test_malformed_registrations_are_refused(change: dict[str, Any], says: str) -> None:
    with pytest.raises(MalformedError, match=says):
        parse_pickup_registration(registration(**change))


def test_page_requests_are_strict() -> None:
    v = base64.b64encode(bytes(32)).decode()
    assert parse_pickup_request({"address": " Carol@Example.com ", "verifier": v}).address == (
        "carol@example.com"
    )
    for bad in ({}, {"address": ""}, {"address": "a@b", "verifier": "AA=="}, {"address": "a@b",
                "share": v}, []):  # fmt: skip
        with pytest.raises(MalformedError):
            parse_pickup_request(bad)


def test_tokens_are_192_bits_and_stored_hashed() -> None:
    from certmail.sealed.pickup import new_token

    tokens = {new_token() for _ in range(100)}
    assert len(tokens) == 100 and all(is_token(t) and len(t) == 32 for t in tokens)
    t = next(iter(tokens))
    assert token_hash(t) == hashlib.sha256(t.encode()).hexdigest()
    assert not is_token("A" * 31) and not is_token("A" * 31 + "/")


def test_registration_needs_a_token_and_a_bounded_body(notary_server: NotaryProcess) -> None:
    token = notary_server.token_for("alice@example.org")
    r = httpx.post(f"{notary_server.url}/v1/pickups", json=registration())
    assert r.status_code == 401
    auth = {"Authorization": f"Bearer {token}"}
    big = registration(content=base64.b64encode(bytes(2 << 20)).decode())
    r = httpx.post(f"{notary_server.url}/v1/pickups", json=big, headers=auth)
    assert r.status_code == 413 and "body over" in r.json()["message"]
    r = httpx.post(f"{notary_server.url}/v1/pickups", json=registration(size="x"), headers=auth)
    assert r.status_code == 400 and "size" in r.json()["message"]
    assert not list((notary_server.directory / "pickups").glob("*.bin"))
