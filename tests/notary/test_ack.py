"""POST /v1/ack (ContentHandover), POST /v1/tracking and GET /r/{token} on the real app.

Real gpg keys sign the acknowledgements; the notary checks them with gpg in a
throw-away GNUPGHOME.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from starlette.testclient import TestClient

from certmail.ack import SignedAck, make_ack
from keys.errors import MalformedError
from keys.gpg import Keyring
from notary.ackformat import Ack, ack_text, parse_ack_text
from notary.api import create_app
from notary.note import Verifier
from notary.receipt import Receipt
from notary.service import NotaryService
from notary.tracking import PIXEL_GIF, RateLimiter

BOB = "bob@example.net"
T0 = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def bob(keyring_factory: Callable[[str, str], tuple[Keyring, str]]) -> tuple[Keyring, str]:
    return keyring_factory(BOB, "Bob")


def _notarize(
    notary_client: TestClient, notary_service: NotaryService, data: bytes, mid: str
) -> tuple[dict[str, str], str]:
    _, token = notary_service.add_account([f"a{secrets.token_hex(4)}@example.org"])
    auth = {"Authorization": f"Bearer {token}"}
    digest = hashlib.sha256(data).hexdigest()
    r = notary_client.post("/v1/notarize", json={"sha256": digest, "message_id": mid}, headers=auth)
    assert r.status_code == 200, r.text
    return auth, digest


def _bob_ack(bob: Keyring, digest: str, mid: str) -> SignedAck:
    """Bob's acknowledgement of message ``mid`` (SHA-256 ``digest``) at T0."""
    return make_ack(bob, Ack(digest, mid, BOB, T0, "http://notary.test"))


def _statement(receipt: dict[str, Any], notary_client: TestClient) -> dict[str, Any]:
    v = Verifier.from_vkey(notary_client.get("/v1/vkey").text.strip())
    return Receipt.from_json(receipt).verify(v)


def test_ack_text_round_trip_and_strictness() -> None:
    a = Ack("ab" * 32, "<m1@example.org>", BOB, T0, "http://notary.test")
    text = ack_text(a)
    assert parse_ack_text(text) == a
    for bad in (
        text.replace("v1", "v2"),
        text.replace("SHA-256", "SHA256"),
        text + "Extra: 1\n",
        text.replace("\n", "\r\n"),
        text[:-1],
        text.replace(BOB, "bob example.net"),
    ):
        with pytest.raises(MalformedError):
            parse_ack_text(bad)


def test_ack_logs_content_handover_for_the_senders_account(
    notary_client: TestClient, notary_service: NotaryService, bob: tuple[Keyring, str]
) -> None:
    auth, digest = _notarize(notary_client, notary_service, b"message one", "<m1@example.org>")
    ack = _bob_ack(bob[0], digest, "<m1@example.org>")
    r = notary_client.post("/v1/ack", json=ack.to_json())
    assert r.status_code == 200, r.text
    stmt = _statement(r.json(), notary_client)
    assert stmt["event"] == "ContentHandover"
    assert stmt["recipient"] == BOB and stmt["fingerprint"] == bob[1]
    assert stmt["signed"] == ack.signed and stmt["signature"] == ack.signature
    # The sender sees it among the message's receipts.
    got = notary_client.get(f"/v1/messages/{digest}/receipts", headers=auth).json()["receipts"]
    events = [json.loads(base64.b64decode(x["entry"]))["event"] for x in got]
    assert events == ["SubmissionAcceptance", "ContentHandover"]
    # Posting the same acknowledgement again logs nothing new.
    again = notary_client.post("/v1/ack", json=ack.to_json())
    assert again.status_code == 200 and again.json()["entry"] == r.json()["entry"]
    got = notary_client.get(f"/v1/messages/{digest}/receipts", headers=auth).json()["receipts"]
    assert len(got) == 2


def test_forged_and_mismatched_acks_are_refused(
    notary_client: TestClient,
    notary_service: NotaryService,
    bob: tuple[Keyring, str],
    keyring_factory: Callable[[str, str], tuple[Keyring, str]],
) -> None:
    _, digest = _notarize(notary_client, notary_service, b"message two", "<m2@example.org>")
    good = _bob_ack(bob[0], digest, "<m2@example.org>").to_json()
    # The text changed after signing: the signature no longer verifies.
    forged = dict(good, signed=good["signed"].replace("12:00:00", "13:00:00"))
    r = notary_client.post("/v1/ack", json=forged)
    assert r.status_code == 422 and r.json()["error"] == "bad_signature", r.text
    # A flipped byte inside the signature.
    sig = good["signature"]
    i = sig.index("\n\n") + 10
    flipped = sig[:i] + ("A" if sig[i] != "A" else "B") + sig[i + 1 :]
    r = notary_client.post("/v1/ack", json=dict(good, signature=flipped))
    assert 400 <= r.status_code < 500 and set(r.json()) == {"error", "message"}
    # Signed by Bob, but sent with someone else's public key.
    carol, _ = keyring_factory("carol@example.com", "Carol")
    r = notary_client.post(
        "/v1/ack", json=dict(good, public_key=carol.export_public("carol@example.com"))
    )
    assert r.status_code == 422
    # A key whose user ids do not include the recipient.
    ack_c = make_ack(carol, Ack(digest, "<m2@example.org>", "carol@example.com", T0, "x")).to_json()
    r = notary_client.post("/v1/ack", json=dict(ack_c, recipient=BOB))
    assert r.status_code == 400  # the text names carol, the request bob
    # Request fields that differ from the signed text.
    r = notary_client.post("/v1/ack", json=dict(good, message_id="<other@example.org>"))
    assert r.status_code == 400 and "Message-ID" in r.json()["message"]
    # Unknown message: 404 before any gpg work.
    other = make_ack(bob[0], Ack("00" * 32, "<m2@example.org>", BOB, T0, "x")).to_json()
    r = notary_client.post("/v1/ack", json=other)
    assert r.status_code == 404 and r.json()["error"] == "not_found"
    # Size cap and garbage.
    r = notary_client.post(
        "/v1/ack",
        content=b"{" + b" " * (64 * 1024) + b"}",
        headers={"content-type": "application/json"},
    )
    assert r.status_code == 413
    assert notary_client.post("/v1/ack", content=b"not json").status_code == 400
    assert notary_client.post("/v1/ack", json=dict(good, extra="x")).status_code == 400


def test_ack_for_a_non_recipient_of_a_relayed_message_is_refused(
    notary_client: TestClient,
    notary_service: NotaryService,
    keyring_factory: Callable[[str, str], tuple[Keyring, str]],
) -> None:
    from notary.sequencer import Submission

    digest = hashlib.sha256(b"relayed").hexdigest()
    acct, _ = notary_service.add_account(["relay-sender@example.org"])
    notary_client.portal.call(
        notary_service.sequencer.submit,
        [
            Submission(  # type: ignore[union-attr]
                "SubmissionAcceptance",
                digest,
                "<r1@example.org>",
                acct.id,
                {"recipients": ["dave@example.com"], "channel": "smtp"},
                False,
            )
        ],
    )
    bob_ring, _ = keyring_factory(BOB, "Bob")
    ack = make_ack(bob_ring, Ack(digest, "<r1@example.org>", BOB, T0, "x"))
    r = notary_client.post("/v1/ack", json=ack.to_json())
    assert r.status_code == 422 and "not a recipient" in r.json()["message"]


def test_tracking_register_hit_and_unknown(
    notary_client: TestClient, notary_service: NotaryService
) -> None:
    auth, digest = _notarize(notary_client, notary_service, b"tracked", "<t1@example.org>")
    token = secrets.token_urlsafe(32)
    th = hashlib.sha256(token.encode()).hexdigest()
    body = {
        "sha256": digest,
        "message_id": "<t1@example.org>",
        "tokens": [{"recipient": BOB, "token_sha256": th}],
    }
    assert notary_client.post("/v1/tracking", json=body).status_code == 401
    r = notary_client.post("/v1/tracking", json=body, headers=auth)
    assert r.status_code == 200 and r.json() == {"registered": 1}
    assert notary_client.post("/v1/tracking", json=body, headers=auth).status_code == 409
    bad = dict(body, tokens=[{"recipient": BOB, "token_sha256": "xyz"}])
    assert notary_client.post("/v1/tracking", json=bad, headers=auth).status_code == 400

    r = notary_client.get(f"/r/{token}", headers={"User-Agent": "TestMail/1.0"})
    assert r.status_code == 200 and r.content == PIXEL_GIF
    assert r.headers["content-type"] == "image/gif"
    got = notary_client.get(f"/v1/messages/{digest}/receipts", headers=auth).json()["receipts"]
    stmts = [_statement(x, notary_client) for x in got]
    hit = [s for s in stmts if s["event"] == "ContentAccessTracking"]
    assert len(hit) == 1
    assert hit[0]["recipient"] == BOB and hit[0]["strength"] == "weak"
    assert hit[0]["user_agent"] == "TestMail/1.0" and hit[0]["remote_address"]
    assert "proxies" in hit[0]["note"]

    unknown = notary_client.get(f"/r/{secrets.token_urlsafe(32)}")
    assert unknown.status_code == 404 and unknown.json()["error"] == "not_found"
    assert notary_client.get("/r/short").status_code == 404


def test_tracking_hits_are_logged_each_time_but_rate_limited(
    notary_client: TestClient, notary_service: NotaryService
) -> None:
    auth, digest = _notarize(notary_client, notary_service, b"tracked twice", "<t2@example.org>")
    token = secrets.token_urlsafe(32)
    notary_client.post(
        "/v1/tracking",
        headers=auth,
        json={
            "sha256": digest,
            "message_id": "<t2@example.org>",
            "tokens": [
                {"recipient": BOB, "token_sha256": hashlib.sha256(token.encode()).hexdigest()}
            ],
        },
    )
    codes = [notary_client.get(f"/r/{token}").status_code for _ in range(7)]
    assert codes == [200] * 5 + [429] * 2
    got = notary_client.get(f"/v1/messages/{digest}/receipts", headers=auth).json()["receipts"]
    assert (
        sum(
            json.loads(base64.b64decode(x["entry"]))["event"] == "ContentAccessTracking"
            for x in got
        )
        == 5
    )


def test_rate_limiter_window_with_an_injected_clock() -> None:
    now = [0.0]
    lim = RateLimiter(2, 10.0, clock=lambda: now[0])
    assert [lim.allow(b"k") for _ in range(3)] == [True, True, False]
    assert lim.allow(b"other")
    now[0] = 10.5
    assert lim.allow(b"k")


def test_ack_flood_is_rate_limited_logs_nothing_and_notarize_is_served(
    notary_service: NotaryService, bob: tuple[Keyring, str]
) -> None:
    import dataclasses
    import threading

    # A window longer than the test, so the counts below are exact.
    notary_service.config = dataclasses.replace(notary_service.config, ack_window=3600.0)
    per_source, per_message = (
        notary_service.config.ack_per_source,
        notary_service.config.ack_per_message,
    )
    with TestClient(create_app(notary_service), raise_server_exceptions=False) as notary_client:
        auth, digest = _notarize(notary_client, notary_service, b"flooded", "<f1@example.org>")
        good = _bob_ack(bob[0], digest, "<f1@example.org>").to_json()
        bad = dict(good, signed=good["signed"].replace("12:00:00", "13:00:00"))
        size_before = notary_service.tree_size()
        entries_before = len(list(notary_service.storage.iter_entries()))
        answers: list[tuple[int, str]] = []
        lock = threading.Lock()

        def flood(n: int) -> None:
            for _ in range(n):
                r = notary_client.post("/v1/ack", json=bad)
                with lock:
                    answers.append((r.status_code, r.json()["message"]))

        threads = [threading.Thread(target=flood, args=(50,)) for _ in range(6)]
        for t in threads:
            t.start()
        # Authenticated traffic is served while the flood goes on.
        notarized = []
        for i in range(5):
            d = hashlib.sha256(f"during-{i}".encode()).hexdigest()
            r = notary_client.post(
                "/v1/notarize", json={"sha256": d, "message_id": f"<d{i}@x>"}, headers=auth
            )
            notarized.append(r.status_code)
        for t in threads:
            t.join()
        assert notarized == [200] * 5
        codes = [c for c, _ in answers]
        assert len(codes) == 300
        # The first per_message acks of the message reach gpg and fail there ...
        assert codes.count(422) == per_message
        # ... the rest of the source's allowance is stopped by the message's limit ...
        by_message = [m for c, m in answers if c == 429 and "this message" in m]
        assert len(by_message) == per_source - per_message
        # ... and everything after it by the source's, before the body is read.
        by_source = [m for c, m in answers if c == 429 and "this address" in m]
        assert len(by_source) == 300 - per_source
        assert codes.count(422) + codes.count(429) == 300
        # Nothing of the flood was logged: only the five notarizations are new.
        assert len(list(notary_service.storage.iter_entries())) == entries_before + 5
        assert notary_service.tree_size() >= size_before
        r = notary_client.post("/v1/ack", json=bad)
        assert r.status_code == 429 and r.headers["retry-after"] == "3600"


def test_signature_checks_are_bounded(
    notary_service: NotaryService, bob: tuple[Keyring, str]
) -> None:
    import asyncio

    from notary.ack import CHECK_CONCURRENCY, Busy, SignatureChecks
    from notary.ackformat import parse_ack_request

    good = make_ack(bob[0], Ack("ab" * 32, "<b1@example.org>", BOB, T0, "x")).to_json()
    req = parse_ack_request(good)
    checks = SignatureChecks(queue=1)

    async def burst() -> list[Any]:
        n = CHECK_CONCURRENCY + 1 + 2  # two more than may run or wait
        return await asyncio.gather(*(checks.check(req) for _ in range(n)), return_exceptions=True)

    results = asyncio.run(burst())
    busy = [r for r in results if isinstance(r, Busy)]
    signed = [r for r in results if not isinstance(r, BaseException)]
    assert len(busy) == 2 and len(signed) == CHECK_CONCURRENCY + 1
    assert all(s.fingerprint == bob[1] for s in signed)
    assert checks.active == 0  # every slot is given back


@pytest.mark.parametrize(("preset", "want"), [(None, "0"), ("1", "1")])
def test_rust_errors_capture_no_backtrace_unless_asked(preset: str | None, want: str) -> None:
    """With ``RUST_BACKTRACE=1`` inherited, Sequoia's errors (a failed check raises
    several) would each capture a backtrace: the notary switches that capture off
    (``RUST_LIB_BACKTRACE=0``) unless the operator set ``RUST_LIB_BACKTRACE``."""
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "RUST_LIB_BACKTRACE"}
    env["RUST_BACKTRACE"] = "1"
    if preset is not None:
        env["RUST_LIB_BACKTRACE"] = preset
    code = "import os, notary.ack; print(os.environ['RUST_LIB_BACKTRACE'])"
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == want
