"""``POST /v1/deliveries/batch`` on a real notary with its relay (issue 15): the delivery
state of many of the account's messages in one request, each as ``GET .../deliveries``
answers it, with every attempt (``history``: time, outcome, reply, the server reached);
another account's message answers as an unknown one; bad input is a 4xx JSON error.
Real notary subprocess, DNS server and SMTP servers on loopback."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from certmail.relay_client import submit
from notary.api_receipts import MAX_RECEIPTS_BATCH, MAX_RECEIPTS_BODY
from tests.fixtures.notary import CERTMAIL, init_notary_dir
from tests.notary.relay_helpers import ALICE, MxWorld, configure, message, wait_for

ROUTE = "/v1/deliveries/batch"


@pytest.fixture
def world(tmp_path: Path) -> Iterator[MxWorld]:
    d = init_notary_dir(tmp_path / "notary")
    w = MxWorld(d, tmp_path)
    w.zone.update(
        {
            "a.test": {"MX": ["10 mx.a.test."]},
            "mx.a.test": {"A": ["127.0.0.41"]},
            "b.test": {"MX": ["10 mx.b.test."]},
            "mx.b.test": {"A": ["127.0.0.42"]},
        }
    )
    yield w
    w.stop()


def _token(w: MxWorld, addr: str) -> str:
    out = subprocess.run(
        [*CERTMAIL, "notary", "accounts", "add", addr, "--dir", str(w.relay.proc.directory)],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr
    return out.stdout.strip().splitlines()[-1]


def _post(w: MxWorld, body: object, token: str | None = None) -> httpx.Response:
    return httpx.post(
        w.relay.url + ROUTE,
        json=body,
        headers={"Authorization": f"Bearer {token or w.relay.token}"},
        timeout=10,
    )


def test_many_messages_deliveries_with_every_attempt_in_one_request(world: MxWorld) -> None:
    w = world
    configure(w.relay.proc.directory, relay_retry_initial=0.3)
    w.sink("127.0.0.41")
    bob_mx = w.sink("127.0.0.42")
    bob_mx.fail("rcpt", 451, "4.7.1 greylisted, come back later")  # the first attempt only
    w.start()
    carol = _token(w, "carol@a.test")

    def send(mid: str, to: str, sender: str = ALICE, token: str | None = None) -> str:
        return submit(
            message(mid, sender=sender, to=to),
            mail_from=sender,
            recipients=[to],
            notary_url=w.relay.url,
            token=token or w.relay.token,
        )

    grey, direct = send("grey", "bob@b.test"), send("direct", "dan@a.test")
    theirs = send("carol", "erin@a.test", sender="carol@a.test", token=carol)

    def alone(sha: str) -> list[dict[str, Any]]:
        url = f"{w.relay.url}/v1/messages/{sha}/deliveries"
        resp = httpx.get(url, headers={"Authorization": f"Bearer {w.relay.token}"}, timeout=10)
        out: list[dict[str, Any]] = resp.json()["deliveries"]
        return out

    for sha in (grey, direct):
        w.relay.wait_events(sha, "RelayToNonERDS")
    wait_for(lambda: all(alone(s)[0]["state"] == "delivered" for s in (grey, direct)))
    never = "ab" * 32
    r = _post(w, {"sha256": [grey, never, direct, theirs, grey]})
    assert r.status_code == 200, r.text
    messages = r.json()["messages"]
    assert [m["sha256"] for m in messages] == [grey, never, direct, theirs]  # distinct, in order
    got = {m["sha256"]: m["deliveries"] for m in messages}

    assert got[grey] == alone(grey) and got[direct] == alone(direct)  # each as its GET
    (d,) = got[grey]
    assert (d["recipient"], d["state"], d["attempts"]) == ("bob@b.test", "delivered", 2)
    first, second = d["history"]
    assert first["outcome"] == "deferred" and first["started"] and first["finished"]
    assert first["reply"] == {"code": 451, "text": "4.7.1 greylisted, come back later"}
    assert "mx.b.test" in first["error"] and "451 4.7.1" in first["error"]
    assert second["outcome"] == "delivered" and second["host"] == "mx.b.test"
    assert second["reply"]["code"] == 250 and second["error"] is None
    assert second["started"] >= first["finished"]
    (d,) = got[direct]
    assert [(a["outcome"], a["host"]) for a in d["history"]] == [("delivered", "mx.a.test")]
    # carol's message was relayed, but alice is answered as for one never relayed
    assert got[theirs] == got[never] == []
    one = json.dumps(next(m for m in messages if m["sha256"] == theirs))
    assert one.replace(theirs, never) == json.dumps(
        next(m for m in messages if m["sha256"] == never)
    )
    mine = _post(w, {"sha256": [theirs]}, carol).json()["messages"][0]["deliveries"]
    assert [x["recipient"] for x in mine] == ["erin@a.test"]

    # bad input: a 4xx JSON error naming it
    for body, status, code in [
        ({"sha256": [grey] * (MAX_RECEIPTS_BATCH + 1)}, 400, "bad_request"),
        ({"sha256": []}, 400, "bad_request"),
        ({"sha256": [grey.upper()]}, 400, "bad_sha256"),
        ({"sha256": [grey[:63]]}, 400, "bad_sha256"),
        ({"sha256": [7]}, 400, "bad_sha256"),
        ({"sha256": [grey], "x": 1}, 400, "bad_request"),
        ([grey], 400, "bad_request"),
    ]:
        r = _post(w, body)
        assert (r.status_code, r.json()["error"]) == (status, code), (body, r.text)
        assert r.json()["message"]
    auth = {"Authorization": f"Bearer {w.relay.token}"}
    r = httpx.post(w.relay.url + ROUTE, content=b'{"sha256": [', headers=auth, timeout=10)
    assert (r.status_code, r.json()["error"]) == (400, "bad_json")
    big = json.dumps({"sha256": [grey] * 2000}).encode()
    assert len(big) > MAX_RECEIPTS_BODY
    r = httpx.post(w.relay.url + ROUTE, content=big, headers=auth, timeout=10)
    assert (r.status_code, r.json()["error"]) == (413, "too_large")
    r = httpx.post(w.relay.url + ROUTE, json={"sha256": [grey]}, timeout=10)
    assert (r.status_code, r.json()["error"]) == (401, "unauthorized")
    assert _post(w, {"sha256": [grey]}, "0" * 64).status_code == 401
