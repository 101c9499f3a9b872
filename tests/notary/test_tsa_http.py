"""POST /tsa and GET /v1/tsa/chain through TSAMiddleware (RFC 3161 §3.4)."""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from asn1crypto import cms as a_cms
from asn1crypto import core as a_core
from asn1crypto import tsp as a_tsp
from cryptography import x509
from fastapi import FastAPI
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from keys.tsa import ROOT_CERT, generate_tsa_pki
from notary.rfc3161 import TimeStampAuthority
from notary.tsa_asgi import TSAMiddleware

QUERY_TYPE = {"content-type": "application/timestamp-query"}
MAX = 4096


class TimeStampResp(a_core.Sequence):  # type: ignore[misc]
    """RFC 3161 §2.4.2, with timeStampToken OPTIONAL as the RFC says (asn1crypto's is not)."""

    _fields = [  # noqa: RUF012
        ("status", a_tsp.PKIStatusInfo),
        ("time_stamp_token", a_cms.ContentInfo, {"optional": True}),
    ]


@pytest.fixture(scope="module")
def pki_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("http") / "tsa"
    generate_tsa_pki(d, "HTTP TSA")
    return d


class Client:
    """A synchronous face on httpx's ASGITransport (no server, no threads, no mocks)."""

    def __init__(self, app: TSAMiddleware) -> None:
        self.loop = asyncio.new_event_loop()
        transport = httpx.ASGITransport(app=app)
        self.http = httpx.AsyncClient(transport=transport, base_url="http://notary.test")

    def request(self, method: str, url: str, **kw: object) -> httpx.Response:
        return self.loop.run_until_complete(self.http.request(method, url, **kw))  # type: ignore[arg-type]

    def get(self, url: str) -> httpx.Response:
        return self.request("GET", url)

    def post(self, url: str, **kw: object) -> httpx.Response:
        return self.request("POST", url, **kw)

    def close(self) -> None:
        self.loop.run_until_complete(self.http.aclose())
        self.loop.close()


@pytest.fixture(scope="module")
def client(pki_dir: Path) -> Iterator[Client]:
    from keys.tsa import load_tsa

    inner = FastAPI()

    @inner.get("/hello")
    def hello() -> dict[str, str]:
        return {"hello": "world"}

    tsa = TimeStampAuthority(load_tsa(pki_dir), state_dir=pki_dir)
    c = Client(TSAMiddleware(inner, tsa, max_query_bytes=MAX))
    yield c
    c.close()


def openssl_query(work: Path, *opts: str) -> Path:
    (work / "m.eml").write_bytes(b"hello\r\n")
    run("openssl", "ts", "-query", "-data", work / "m.eml", *opts, "-out", work / "q.tsq")
    return work / "q.tsq"


def run(*args: str | Path) -> str:
    proc = subprocess.run([str(a) for a in args], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout + proc.stderr


def test_post_tsa_grants_a_token_openssl_verifies(
    tmp_path: Path, client: Client, pki_dir: Path
) -> None:
    query = openssl_query(tmp_path, "-sha256", "-cert")
    r = client.post("/tsa", content=query.read_bytes(), headers=QUERY_TYPE)
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/timestamp-reply"
    (tmp_path / "r.tsr").write_bytes(r.content)
    out = run("openssl", "ts", "-verify", "-queryfile", query, "-in", tmp_path / "r.tsr",
              "-CAfile", pki_dir / ROOT_CERT)  # fmt: skip
    assert "Verification: OK" in out


def test_content_type_parameters_are_allowed(tmp_path: Path, client: Client) -> None:
    query = openssl_query(tmp_path, "-sha512")
    headers = {"content-type": "Application/TimeStamp-Query; charset=binary"}
    r = client.post("/tsa", content=query.read_bytes(), headers=headers)
    assert r.status_code == 200
    assert TimeStampResp.load(r.content)["status"]["status"].native == "granted"


def test_malformed_query_gets_a_200_rejection(tmp_path: Path, client: Client) -> None:
    r = client.post("/tsa", content=b"\x30\x03\x02\x01", headers=QUERY_TYPE)
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/timestamp-reply"
    status = TimeStampResp.load(r.content, strict=True)["status"]
    assert status["status"].native == "rejection"
    assert status["fail_info"].native == {"bad_data_format"}
    (tmp_path / "r.tsr").write_bytes(r.content)
    assert "Status: Rejected." in run("openssl", "ts", "-reply", "-in", tmp_path / "r.tsr", "-text")


@pytest.mark.parametrize("content_type", [None, "application/octet-stream", "text/plain"])
def test_wrong_content_type_is_415(client: Client, content_type: str | None) -> None:
    headers = {} if content_type is None else {"content-type": content_type}
    r = client.post("/tsa", content=b"\x30\x00", headers=headers)
    assert r.status_code == 415
    assert r.json()["error"] == "unsupported_media_type"


def test_oversized_query_is_413_by_header_and_by_body(client: Client) -> None:
    r = client.post("/tsa", content=bytes(MAX + 1), headers=QUERY_TYPE)
    assert r.status_code == 413
    assert r.json()["error"] == "payload_too_large"

    async def chunks() -> AsyncIterator[bytes]:  # no content-length: counted as it comes
        for _ in range(MAX // 512 + 2):
            yield bytes(512)

    r = client.post("/tsa", content=chunks(), headers=QUERY_TYPE)
    assert r.status_code == 413


def test_get_tsa_is_405(client: Client) -> None:
    r = client.get("/tsa")
    assert r.status_code == 405
    assert r.headers["allow"] == "POST"


def test_chain_is_pem_tsa_first_then_issuers(client: Client, pki_dir: Path) -> None:
    r = client.get("/v1/tsa/chain")
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/pem-certificate-chain"
    certs = x509.load_pem_x509_certificates(r.content)
    assert len(certs) == 2
    tsa_cert, root = certs
    tsa_cert.verify_directly_issued_by(root)
    assert root == x509.load_pem_x509_certificate((pki_dir / ROOT_CERT).read_bytes())
    assert client.post("/v1/tsa/chain").status_code == 405


def test_other_paths_reach_the_wrapped_app(client: Client) -> None:
    assert client.get("/hello").json() == {"hello": "world"}
    assert client.get("/nowhere").status_code == 404


# --- fuzzing through HTTP: never a 5xx ----------------------------------------------

_VALID = a_tsp.TimeStampReq(
    {
        "version": "v1",
        "message_imprint": {
            "hash_algorithm": {"algorithm": "sha256"},
            "hashed_message": bytes(range(32)),
        },
        "nonce": 0x1234567890ABCDEF,
        "cert_req": True,
    }
).dump()

_queries = st.one_of(
    st.binary(max_size=300),  # random bytes
    st.integers(0, len(_VALID)).map(lambda n: _VALID[:n]),  # truncated
    st.tuples(st.integers(0, len(_VALID) - 1), st.integers(1, 255)).map(  # mutated
        lambda p: _VALID[: p[0]] + bytes((_VALID[p[0]] ^ p[1],)) + _VALID[p[0] + 1 :]
    ),
    st.integers(1, 3 * MAX).map(  # oversized, with a DER header claiming the size
        lambda n: b"\x30\x82" + n.to_bytes(2, "big") + _VALID[2:] + bytes(n)
    ),
    st.binary(min_size=1, max_size=40).map(lambda b: _VALID + b),  # trailing garbage
)


@settings(
    max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(query=_queries)
def test_fuzzed_queries_never_get_a_5xx(client: Client, query: bytes) -> None:
    r = client.post("/tsa", content=query, headers=QUERY_TYPE)
    assert r.status_code < 500
    if len(query) > MAX:
        assert r.status_code == 413
    else:
        assert r.status_code == 200
        status = TimeStampResp.load(r.content, strict=True)["status"]["status"].native
        assert status in ("granted", "rejection")
