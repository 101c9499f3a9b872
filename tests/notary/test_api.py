"""The HTTP API in-process (Starlette TestClient over ASGI) on a real notary directory."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.testclient import TestClient

from keys.errors import VerificationError
from notary.api import create_app
from notary.checkpoint import open_checkpoint
from notary.merkle import verify_consistency
from notary.note import Verifier
from notary.receipt import Receipt
from notary.rfc3161 import verify_token
from notary.service import NotaryService
from tests.fixtures.notary import app_client, open_service


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture(scope="module")
def notary(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NotaryService]:
    yield from open_service(tmp_path_factory.mktemp("api") / "notary")


@pytest.fixture(scope="module")
def client(notary: NotaryService) -> Iterator[TestClient]:
    yield from app_client(notary)


@pytest.fixture(scope="module")
def alice(notary: NotaryService) -> dict[str, str]:
    _, token = notary.add_account(["alice@example.test"])
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture(scope="module")
def bob(notary: NotaryService) -> dict[str, str]:
    _, token = notary.add_account(["bob@example.test"])
    return {"Authorization": f"Bearer {token}"}


def verifier(client: TestClient) -> Verifier:
    r = client.get("/v1/vkey")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    return Verifier.from_vkey(r.text.strip())


def test_healthz_vkey_checkpoint(client: TestClient, notary: NotaryService) -> None:
    assert client.get("/healthz").json()["status"] == "ok"
    v = verifier(client)
    assert v.vkey() == notary.vkey
    cp = open_checkpoint(client.get("/v1/checkpoint").content, v)
    assert cp.origin == "notary.test/log"


def test_notarize_returns_a_receipt_that_verifies(
    client: TestClient, alice: dict[str, str], notary: NotaryService
) -> None:
    message = b"From: alice@example.test\r\n\r\nhello\r\n"
    digest = sha(message)
    r = client.post(
        "/v1/notarize", json={"sha256": digest, "message_id": "<1@example.test>"}, headers=alice
    )
    assert r.status_code == 200, r.text
    receipt = Receipt.from_json(r.json())
    stmt = receipt.verify(verifier(client))
    assert stmt["event"] == "SubmissionAcceptance"
    assert stmt["message"] == {"sha256": digest, "id": "<1@example.test>"}
    assert receipt.tst is not None
    creds = notary.tsa.creds  # the log's tokens carry no certificates: the chain, beside
    chain = [creds.cert, *creds.chain]
    info = verify_token(receipt.tst, roots=chain[-1:], data=message, certificates=chain)
    assert info.digest == bytes.fromhex(digest)
    # the receipt also comes back from the receipts endpoint, against the latest checkpoint
    got = client.get(f"/v1/messages/{digest}/receipts", headers=alice)
    assert got.status_code == 200
    (again,) = [Receipt.from_json(x) for x in got.json()["receipts"]]
    assert again.entry == receipt.entry and again.tst == receipt.tst
    again.verify(verifier(client))


def test_batch(client: TestClient, alice: dict[str, str]) -> None:
    items = [{"sha256": sha(bytes([i])), "message_id": f"<b{i}@x>"} for i in range(50)]
    r = client.post("/v1/notarize/batch", json={"items": items, "tst": False}, headers=alice)
    assert r.status_code == 200, r.text
    receipts = [Receipt.from_json(x) for x in r.json()["receipts"]]
    assert len(receipts) == 50
    v = verifier(client)
    for it, rc in zip(items, receipts, strict=True):
        assert rc.verify(v)["message"]["sha256"] == it["sha256"]
        assert rc.tst is None
    assert len({rc.index for rc in receipts}) == 50


def test_consistency_between_checkpoints(client: TestClient, alice: dict[str, str]) -> None:
    v = verifier(client)
    # One entry first: a consistency proof starts from a non-empty tree (RFC 9162 §2.1.4),
    # whatever other tests logged before this one (it runs alone too).
    client.post("/v1/notarize", json={"sha256": sha(b"c0"), "message_id": "<c0@x>"}, headers=alice)
    old = open_checkpoint(client.get("/v1/checkpoint").content, v)
    assert old.size >= 1
    client.post("/v1/notarize", json={"sha256": sha(b"c1"), "message_id": "<c1@x>"}, headers=alice)
    new = open_checkpoint(client.get("/v1/checkpoint").content, v)
    assert new.size > old.size
    r = client.get(f"/v1/proof/consistency?old={old.size}&new={new.size}")
    assert r.status_code == 200
    body = r.json()
    assert (body["old"], body["new"]) == (old.size, new.size)
    proof = [base64.b64decode(h) for h in body["proof"]]
    verify_consistency(old.size, new.size, proof, old.root_hash, new.root_hash)
    with pytest.raises(VerificationError):
        verify_consistency(old.size, new.size, proof[:-1], old.root_hash, new.root_hash)
    assert client.get(f"/v1/proof/consistency?old=1&new={new.size + 5}").status_code == 404
    assert client.get("/v1/proof/consistency?old=3&new=2").status_code == 400
    assert client.get("/v1/proof/consistency?old=x&new=2").status_code == 400


def test_auth(
    client: TestClient, alice: dict[str, str], bob: dict[str, str], notary: NotaryService
) -> None:
    body = {"sha256": sha(b"auth"), "message_id": "<auth@x>"}
    assert client.post("/v1/notarize", json=body).status_code == 401
    r = client.post("/v1/notarize", json=body, headers={"Authorization": "Bearer nope"})
    assert r.status_code == 401 and r.json()["error"] == "unauthorized"
    assert (
        client.post("/v1/notarize", json=body, headers={"Authorization": "Basic abc"}).status_code
        == 401
    )
    assert client.post("/v1/notarize", json=body, headers=alice).status_code == 200
    assert client.get(f"/v1/messages/{body['sha256']}/receipts").status_code == 401
    # Another account's message and a hash never logged get the same answer (issue 10
    # item 6: a 403 told bob that the hash is in the log).
    theirs = client.get(f"/v1/messages/{body['sha256']}/receipts", headers=bob)
    absent = client.get(f"/v1/messages/{sha(b'none')}/receipts", headers=bob)
    assert theirs.status_code == absent.status_code == 404
    assert theirs.json()["error"] == absent.json()["error"] == "not_found"
    assert theirs.json()["message"].replace(body["sha256"], "H") == absent.json()[
        "message"
    ].replace(sha(b"none"), "H")
    # a revoked token stops working at once
    _acct, token = notary.add_account(["carol@example.test"])
    carol = {"Authorization": f"Bearer {token}"}
    assert client.post("/v1/notarize", json=body, headers=carol).status_code == 200
    notary.storage.revoke_account("carol@example.test")
    assert client.post("/v1/notarize", json=body, headers=carol).status_code == 401


@pytest.mark.parametrize(
    ("body", "status"),
    [
        (b"{not json", 400),
        (b"[]", 400),
        (json.dumps({"sha256": "zz" * 32, "message_id": "<x>"}).encode(), 400),
        (json.dumps({"sha256": "ab" * 31, "message_id": "<x>"}).encode(), 400),
        (json.dumps({"sha256": "AB" * 32, "message_id": "<x>"}).encode(), 400),
        (json.dumps({"sha256": "ab" * 32}).encode(), 400),
        (json.dumps({"sha256": "ab" * 32, "message_id": ""}).encode(), 400),
        (json.dumps({"sha256": "ab" * 32, "message_id": "<a\r\nBcc: x>"}).encode(), 400),
        (json.dumps({"sha256": "ab" * 32, "message_id": "<x>", "extra": 1}).encode(), 400),
        (b"x" * (2 << 20), 413),
    ],
)
def test_bad_input_is_a_4xx_json_error(
    client: TestClient, alice: dict[str, str], body: bytes, status: int
) -> None:
    r = client.post(
        "/v1/notarize", content=body, headers={**alice, "content-type": "application/json"}
    )
    assert r.status_code == status, r.text
    err = r.json()
    assert set(err) == {"error", "message"}


def test_bad_batches(client: TestClient, alice: dict[str, str]) -> None:
    assert client.post("/v1/notarize/batch", json={"items": []}, headers=alice).status_code == 400
    too_many = [{"sha256": "ab" * 32, "message_id": "<x>"}] * 10_001
    r = client.post("/v1/notarize/batch", json={"items": too_many}, headers=alice)
    assert r.status_code in (400, 413)
    assert client.get("/v1/messages/ZZ/receipts", headers=alice).status_code == 400
    items = [
        {"sha256": "ab" * 32, "message_id": "<ok@x>"},
        {"sha256": "AB" * 32, "message_id": "<bad@x>"},
    ]
    r = client.post("/v1/notarize/batch", json={"items": items}, headers=alice)
    assert r.status_code == 400 and r.json()["message"].startswith("items.1:")
    r = client.post("/v1/notarize/batch", json={"items": items[:1], "tst": "yes"}, headers=alice)
    assert r.status_code == 400
    r = client.post("/v1/notarize/batch", json={"items": items[:1], "x": 1}, headers=alice)
    assert r.status_code == 400


def test_metrics(client: TestClient, alice: dict[str, str]) -> None:
    r = client.post(
        "/v1/notarize", json={"sha256": sha(b"m"), "message_id": "<m@x>"}, headers=alice
    )
    assert r.status_code == 200
    text = client.get("/metrics").text
    assert "certmail_log_tree_size " in text
    assert "certmail_sequencer_batch_size_bucket" in text
    assert "certmail_sequencer_commit_seconds_sum" in text
    assert 'certmail_sequencer_batch_size_bucket{le="+Inf"}' in text
    # prometheus_client writes every value as a float ("3.0").
    size = int(
        float(
            next(
                line.split()[1]
                for line in text.splitlines()
                if line.startswith("certmail_log_tree_size ")
            )
        )
    )
    assert size >= 1


def test_metrics_count_entries_and_failed_batches() -> None:
    from notary.metrics import ServiceMetrics

    m = ServiceMetrics(lambda: 7)
    m.observe(3, 0.002, 7)
    m.observe(2, 0.5, 9)
    m.batch_failed()  # what the sequencer calls when a batch fails
    text = m.render().decode()
    assert "certmail_log_entries_total 5.0" in text
    assert 'certmail_sequencer_batch_size_bucket{le="1.0"} 0.0' in text
    assert 'certmail_sequencer_batch_size_bucket{le="4.0"} 2.0' in text
    assert 'certmail_sequencer_commit_seconds_bucket{le="0.25"} 1.0' in text
    assert "certmail_sequencer_commit_seconds_count 2.0" in text
    assert "certmail_log_failed_batches_total 1.0" in text
    assert "certmail_log_tree_size 7.0" in text
    assert (m.entries, m.batches, m.failed_batches) == (5, 2, 1)


def test_openapi_lists_every_path(client: TestClient) -> None:
    paths = set(client.get("/openapi.json").json()["paths"])
    assert {
        "/healthz",
        "/v1/vkey",
        "/v1/checkpoint",
        "/v1/proof/consistency",
        "/v1/notarize",
        "/v1/notarize/batch",
        "/v1/messages/{sha256}/receipts",
        "/metrics",
        "/tsa",
        "/v1/tsa/chain",
    } <= paths
    assert client.get("/docs").status_code == 200


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    body=st.one_of(
        st.binary(max_size=300),
        st.recursive(
            st.none() | st.booleans() | st.integers() | st.text(max_size=80),
            lambda c: (
                st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=10), c, max_size=4)
            ),
            max_leaves=10,
        ).map(lambda o: json.dumps(o).encode()),
        st.fixed_dictionaries(
            {"sha256": st.text(max_size=70), "message_id": st.text(max_size=40)}
        ).map(lambda o: json.dumps(o).encode()),
    )
)
def test_fuzzed_json_never_crashes_or_corrupts(
    client: TestClient, alice: dict[str, str], body: bytes
) -> None:
    for path in ("/v1/notarize", "/v1/notarize/batch"):
        r = client.post(path, content=body, headers={**alice, "content-type": "application/json"})
        assert r.status_code < 500, r.text
        if r.status_code != 200:
            assert set(r.json()) == {"error", "message"}
    assert client.get("/healthz").json()["status"] == "ok"


def test_log_intact_after_fuzzing(
    client: TestClient, alice: dict[str, str], notary: NotaryService
) -> None:
    # Good and bad requests of its own, so that the log it checks has entries
    # whether or not the fuzzing test ran before it.
    for i in range(3):
        r = client.post(
            "/v1/notarize",
            json={
                "sha256": sha(f"intact {i}".encode()),
                "message_id": f"<intact-{i}@example.test>",
            },
            headers=alice,
        )
        assert r.status_code == 200, r.text
        r = client.post(
            "/v1/notarize",
            content=b'{"sha256": ' + str(i).encode() + b"}",
            headers={**alice, "content-type": "application/json"},
        )
        assert 400 <= r.status_code < 500
    v = verifier(client)
    cp = open_checkpoint(client.get("/v1/checkpoint").content, v)
    entries = list(notary.storage.iter_entries())
    assert len(entries) == cp.size >= 3
    from notary.merkle import mth

    assert mth([e.entry for e in entries]) == cp.root_hash


@pytest.mark.parametrize("reference_only", ["", "1"])
def test_fast_paths_and_reference_routes_answer_alike(
    notary: NotaryService,
    alice: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    reference_only: str,
    tmp_path: Path,
) -> None:
    """With CERTMAIL_REFERENCE_ONLY=1 the raw-ASGI notarize and /tsa handlers are not in the
    stack, and the FastAPI routes give the same answers (a token, a receipt, the same errors)."""
    import subprocess

    from notary.api import NotarizeFastPath
    from notary.tsa_asgi import TSAMiddleware

    monkeypatch.setenv("CERTMAIL_REFERENCE_ONLY", reference_only)
    app = create_app(notary)
    layers = []
    inner: object = app
    while hasattr(inner, "app"):
        layers.append(type(inner))
        inner = inner.app
    fast = {NotarizeFastPath, TSAMiddleware} & set(layers)
    assert fast == (set() if reference_only else {NotarizeFastPath, TSAMiddleware})
    with TestClient(app, raise_server_exceptions=False) as c:
        work = tmp_path
        (work / "m").write_bytes(b"reference or fast\r\n")
        subprocess.run(
            [
                "openssl",
                "ts",
                "-query",
                "-data",
                str(work / "m"),
                "-sha256",
                "-cert",
                "-out",
                str(work / "q.tsq"),
            ],
            check=True,
            capture_output=True,
        )
        r = c.post(
            "/tsa",
            content=(work / "q.tsq").read_bytes(),
            headers={"content-type": "application/timestamp-query"},
        )
        assert r.status_code == 200
        assert r.headers["content-type"] == "application/timestamp-reply"
        (work / "r.tsr").write_bytes(r.content)
        chain = c.get("/v1/tsa/chain")
        assert chain.status_code == 200 and chain.text.startswith("-----BEGIN CERTIFICATE-----")
        bad = c.post("/tsa", content=b"x", headers={"content-type": "text/plain"})
        assert bad.status_code == 415 and bad.json()["error"] == "unsupported_media_type"
        big = c.post(
            "/tsa",
            content=b"\x30" * (70 * 1024),
            headers={"content-type": "application/timestamp-query"},
        )
        assert big.status_code == 413 and big.json()["error"] == "payload_too_large"
        msg = f"reference {reference_only}".encode()
        n = c.post(
            "/v1/notarize",
            headers=alice,
            json={"sha256": sha(msg), "message_id": f"<ref{reference_only}@example.org>"},
        )
        assert n.status_code == 200 and n.json()["entry"]
    # The token verifies with openssl against the TSA chain.
    (work / "chain.pem").write_text(chain.text)
    out = subprocess.run(
        [
            "openssl",
            "ts",
            "-verify",
            "-queryfile",
            str(work / "q.tsq"),
            "-in",
            str(work / "r.tsr"),
            "-CAfile",
            str(work / "chain.pem"),
        ],
        capture_output=True,
        text=True,
    )
    assert "Verification: OK" in out.stdout, out.stdout + out.stderr
