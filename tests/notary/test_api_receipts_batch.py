"""``POST /v1/receipts/batch`` on a real ``certmail notary serve``, over HTTP (httpx):
the receipts of many of the account's messages, as ``GET .../receipts`` answers them;
another account's message answers as one never logged; bad input is a 4xx JSON error."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from notary.api_receipts import MAX_RECEIPTS_BATCH, MAX_RECEIPTS_BODY
from notary.note import Verifier
from notary.receipt import Receipt
from tests.fixtures.notary import NotaryProcess


def _sha(i: int | str) -> str:
    return hashlib.sha256(f"message {i}".encode()).hexdigest()


@pytest.fixture
def world(notary_server: NotaryProcess) -> Iterator[dict[str, Any]]:
    """Two accounts at one notary: alice's three messages notarized, bob's one."""
    alice = notary_server.token_for("alice@example.org")
    bob = notary_server.token_for("bob@example.net")
    with httpx.Client(base_url=notary_server.url, timeout=30) as http:
        mine = [_sha(i) for i in range(3)]
        items = [{"sha256": s, "message_id": f"<m{i}@example.org>"} for i, s in enumerate(mine)]
        r = http.post("/v1/notarize/batch", json={"items": items}, headers=_auth(alice))
        assert r.status_code == 200, r.text
        theirs = _sha("bob")
        r = http.post(
            "/v1/notarize",
            json={"sha256": theirs, "message_id": "<b@example.net>"},
            headers=_auth(bob),
        )
        assert r.status_code == 200, r.text
        yield {"http": http, "alice": alice, "bob": bob, "mine": mine, "theirs": theirs}


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_one_request_answers_each_message_as_its_get_does(
    world: dict[str, Any], notary_server: NotaryProcess
) -> None:
    http, alice, mine = world["http"], world["alice"], world["mine"]
    never = _sha("never logged")
    asked = [mine[2], never, mine[0], world["theirs"], mine[1], mine[0]]
    r = http.post("/v1/receipts/batch", json={"sha256": asked}, headers=_auth(alice))
    assert r.status_code == 200, r.text
    messages = r.json()["messages"]
    # every distinct hash once, in the order asked
    assert [m["sha256"] for m in messages] == [mine[2], never, mine[0], world["theirs"], mine[1]]
    got = {m["sha256"]: m["receipts"] for m in messages}
    verifier = Verifier.from_vkey(notary_server.vkey)
    for i, sha in enumerate(mine):
        (receipt,) = got[sha]
        alone = http.get(f"/v1/messages/{sha}/receipts", headers=_auth(alice)).json()["receipts"]
        assert got[sha] == alone  # the same receipt, against the same checkpoint
        stmt = Receipt.from_json(receipt).verify(verifier)
        assert (stmt["message"]["sha256"], stmt["message"]["id"]) == (sha, f"<m{i}@example.org>")
        assert stmt["event"] == "SubmissionAcceptance"
    # bob's message is in the log, but alice is answered as for one that never was
    theirs = next(m for m in messages if m["sha256"] == world["theirs"])
    none = next(m for m in messages if m["sha256"] == never)
    assert theirs["receipts"] == none["receipts"] == []
    assert json.dumps(theirs).replace(world["theirs"], never) == json.dumps(none)
    # and bob sees his own
    r = http.post(
        "/v1/receipts/batch", json={"sha256": [world["theirs"]]}, headers=_auth(world["bob"])
    )
    assert len(r.json()["messages"][0]["receipts"]) == 1


BAD = [
    ({"sha256": "a" * 64}, "bad_request"),  # not a list
    ({"sha256": []}, "bad_request"),
    ({"sha256": [1, 2]}, "bad_sha256"),
    ({"sha256": [None]}, "bad_sha256"),
    ({"sha256": [["a" * 64]]}, "bad_sha256"),
    ({"sha256": ["A" * 64]}, "bad_sha256"),  # upper case
    ({"sha256": ["a" * 63]}, "bad_sha256"),
    ({"sha256": ["g" * 64]}, "bad_sha256"),
    ({"sha256": ["a" * 64 + "\n"]}, "bad_sha256"),
    ({"sha256": ["../" + "a" * 61]}, "bad_sha256"),
    ({"hashes": ["a" * 64]}, "bad_request"),  # unknown member, none given
    ({"sha256": ["a" * 64], "extra": 1}, "bad_request"),
    (["a" * 64], "bad_request"),  # not an object
    ("a" * 64, "bad_request"),
    ({"sha256": ["a" * 64] * (MAX_RECEIPTS_BATCH + 1)}, "bad_request"),  # too many
]


def test_bad_input_is_a_400_naming_it(world: dict[str, Any]) -> None:
    for body, code in BAD:
        r = world["http"].post("/v1/receipts/batch", json=body, headers=_auth(world["alice"]))
        assert r.status_code == 400, (body, r.text)
        assert r.json()["error"] == code and r.json()["message"], (body, r.text)


def test_not_json_too_large_and_unauthenticated(world: dict[str, Any]) -> None:
    http, alice = world["http"], world["alice"]
    r = http.post("/v1/receipts/batch", content=b'{"sha256": [', headers=_auth(alice))
    assert (r.status_code, r.json()["error"]) == (400, "bad_json")
    big = json.dumps({"sha256": [world["mine"][0]] * 2000}).encode()
    assert len(big) > MAX_RECEIPTS_BODY
    r = http.post("/v1/receipts/batch", content=big, headers=_auth(alice))
    assert (r.status_code, r.json()["error"]) == (413, "too_large")
    ok = {"sha256": [world["mine"][0]]}
    r = http.post("/v1/receipts/batch", json=ok)
    assert (r.status_code, r.json()["error"]) == (401, "unauthorized")
    r = http.post("/v1/receipts/batch", json=ok, headers=_auth("0" * 64))
    assert (r.status_code, r.json()["error"]) == (401, "unauthorized")
    r = http.get("/v1/receipts/batch", headers=_auth(alice))
    assert r.status_code == 405
