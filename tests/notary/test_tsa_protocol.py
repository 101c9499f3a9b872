"""POST /tsa answered inside the HTTP protocol by a real `certmail notary serve` (raw sockets).

The protocol path (notary/tsa_protocol.py) must give the answers the ASGI path
gives: tokens that verify, the same headers, keep-alive and ``Connection: close``
honoured, pipelined requests answered in order, and every request it does not
take (refusals, chunked bodies, ``Expect: 100-continue``) still answered by
TSAMiddleware.
"""

from __future__ import annotations

import json
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509

from notary.api import create_app
from notary.rfc3161 import verify_token
from notary.service import NotaryService
from notary.tsa_asgi import TSAMiddleware
from notary.tsa_protocol import find_tsa_middleware
from tests.fixtures.notary import NotaryProcess, init_notary_dir

MESSAGE = b"Subject: protocol path\r\n\r\nhello\r\n"


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NotaryProcess]:
    directory = init_notary_dir(tmp_path_factory.mktemp("tsa-protocol") / "notary")
    notary = NotaryProcess(directory)
    notary.start()
    yield notary
    notary.stop()


@pytest.fixture(scope="module")
def query(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    work = tmp_path_factory.mktemp("tsq")
    (work / "m").write_bytes(MESSAGE)
    cmd = ["openssl", "ts", "-query", "-data", str(work / "m"), "-sha256", "-cert"]
    subprocess.run([*cmd, "-out", str(work / "q.tsq")], check=True, capture_output=True)
    return (work / "q.tsq").read_bytes()


def _request(body: bytes, *, extra: bytes = b"", path: bytes = b"/tsa") -> bytes:
    return (
        b"POST " + path + b" HTTP/1.1\r\nhost: 127.0.0.1\r\n"
        b"content-type: application/timestamp-query\r\n"
        b"content-length: %d\r\n" % len(body) + extra + b"\r\n" + body
    )


class _Conn:
    """One TCP connection reading HTTP/1.1 responses with a Content-Length."""

    def __init__(self, notary: NotaryProcess) -> None:
        self.sock = socket.create_connection(("127.0.0.1", notary.port), timeout=10)
        self.buf = b""

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _fill(self) -> bool:
        chunk = self.sock.recv(65536)
        self.buf += chunk
        return bool(chunk)

    def response(self) -> tuple[int, dict[str, str], bytes]:
        while b"\r\n\r\n" not in self.buf:
            assert self._fill(), "connection closed before a response"
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {k.lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:])}
        n = 0 if status < 200 else int(headers["content-length"])
        while len(self.buf) < n:
            assert self._fill(), "connection closed inside a response body"
        body, self.buf = self.buf[:n], self.buf[n:]
        return status, headers, body

    def closed_by_server(self) -> bool:
        return not self.buf and not self._fill()

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def conn(served: NotaryProcess) -> Iterator[_Conn]:
    c = _Conn(served)
    yield c
    c.close()


def _token_of(reply: bytes) -> bytes:
    """The TimeStampToken of a granted TimeStampResp (status SEQUENCE, then the token)."""
    from asn1crypto import tsp

    resp = tsp.TimeStampResp.load(reply)
    assert resp["status"]["status"].native == "granted"
    return bytes(resp["time_stamp_token"].dump())


def _status(reply: bytes) -> int:
    """The PKIStatus of a TimeStampResp."""
    from notary.rfc3161 import der

    _, s, e = der.read(reply, 0, len(reply))
    _, s, e = der.read(reply, s, e)  # PKIStatusInfo
    _, s, e = der.read(reply, s, e)  # status
    return der.uint(reply, s, e)


def _roots(notary: NotaryProcess) -> list[x509.Certificate]:
    return x509.load_pem_x509_certificates((notary.directory / "tsa" / "root-ca.pem").read_bytes())


def test_keep_alive_tokens_verify_with_the_asgi_headers(
    served: NotaryProcess, conn: _Conn, query: bytes
) -> None:
    serials = set()
    for _ in range(3):  # one connection, three tokens
        conn.send(_request(query))
        status, headers, body = conn.response()
        assert status == 200
        assert headers["content-type"] == "application/timestamp-reply"
        assert "date" in headers and "connection" not in headers
        info = verify_token(_token_of(body), roots=_roots(served), data=MESSAGE)
        serials.add(info.serial)
    assert len(serials) == 3


def test_connection_close_is_honoured(served: NotaryProcess, conn: _Conn, query: bytes) -> None:
    conn.send(_request(query, extra=b"connection: close\r\n"))
    status, headers, body = conn.response()
    assert status == 200 and headers["connection"] == "close"
    verify_token(_token_of(body), roots=_roots(served), data=MESSAGE)
    assert conn.closed_by_server()


def test_pipelined_requests_are_answered_in_order(conn: _Conn, query: bytes) -> None:
    chain = b"GET /v1/tsa/chain HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n"
    conn.send(_request(query) + chain + _request(query) + _request(b"\x30\x00"))
    answers = [conn.response() for _ in range(4)]
    assert [a[0] for a in answers] == [200, 200, 200, 200]
    assert [a[1]["content-type"] for a in answers] == [
        "application/timestamp-reply",
        "application/pem-certificate-chain",
        "application/timestamp-reply",
        "application/timestamp-reply",
    ]
    assert answers[1][2].startswith(b"-----BEGIN CERTIFICATE-----")
    assert _status(answers[3][2]) == 2  # rejection (RFC 3161 §2.4.2)


@pytest.mark.parametrize(
    ("raw", "status", "code"),
    [
        (b"GET /tsa HTTP/1.1\r\nhost: x\r\n\r\n", 405, "method_not_allowed"),
        (
            b"POST /tsa HTTP/1.1\r\nhost: x\r\ncontent-type: text/plain\r\n"
            b"content-length: 2\r\n\r\n0\x00",
            415,
            "unsupported_media_type",
        ),
        (
            b"POST /tsa HTTP/1.1\r\nhost: x\r\ncontent-type: application/timestamp-query\r\n"
            b"content-length: 70000\r\n\r\n",
            413,
            "payload_too_large",
        ),
    ],
)
def test_refusals_are_the_middlewares(conn: _Conn, raw: bytes, status: int, code: str) -> None:
    conn.send(raw)
    got, headers, body = conn.response()
    assert got == status and headers["content-type"] == "application/json"
    assert json.loads(body)["error"] == code


def test_chunked_and_expect_continue_go_the_asgi_way(
    served: NotaryProcess, conn: _Conn, query: bytes
) -> None:
    chunked = (
        b"POST /tsa HTTP/1.1\r\nhost: x\r\ncontent-type: application/timestamp-query\r\n"
        b"transfer-encoding: chunked\r\n\r\n%x\r\n" % len(query) + query + b"\r\n0\r\n\r\n"
    )
    conn.send(chunked)
    status, _, body = conn.response()
    assert status == 200
    verify_token(_token_of(body), roots=_roots(served), data=MESSAGE)
    conn.send(_request(query, extra=b"expect: 100-continue\r\n"))
    status, _, body = conn.response()
    if status == 100:  # the interim answer, then the real one
        status, _, body = conn.response()
    assert status == 200
    verify_token(_token_of(body), roots=_roots(served), data=MESSAGE)


def test_a_query_string_or_other_path_is_not_taken(conn: _Conn, query: bytes) -> None:
    conn.send(_request(query, path=b"/tsa?x=1"))
    status, headers, _ = conn.response()
    assert status == 200 and headers["content-type"] == "application/timestamp-reply"
    conn.send(_request(query, path=b"/tsa/"))
    assert conn.response()[0] != 200  # FastAPI's answer for another path, not a token


@pytest.mark.parametrize("reference_only", ["", "1"])
def test_the_protocol_path_follows_the_fast_path_switch(
    served: NotaryProcess, monkeypatch: pytest.MonkeyPatch, reference_only: str
) -> None:
    """The protocol finds a TSAMiddleware (and so answers /tsa itself) exactly when the
    fast paths are on; with CERTMAIL_REFERENCE_ONLY=1 every /tsa goes to FastAPI."""
    monkeypatch.setenv("CERTMAIL_REFERENCE_ONLY", reference_only)
    svc = NotaryService.open(Path(served.directory))
    try:
        found = find_tsa_middleware(create_app(svc))
        if reference_only:
            assert found is None
        else:
            assert isinstance(found, TSAMiddleware) and found.tsa is svc.tsa
    finally:
        svc.close()


def test_a_lean_connection_reads_a_dripped_request_then_promotes(
    served: NotaryProcess, conn: _Conn, query: bytes
) -> None:
    """A new connection answers /tsa lean, however the bytes arrive; the first other
    request promotes it to the full protocol, which still answers /tsa after."""
    raw = _request(query)
    for i in range(0, len(raw), 7):  # seven bytes a write: the lean buffer across reads
        conn.send(raw[i : i + 7])
    status, headers, body = conn.response()
    assert status == 200 and headers["content-type"] == "application/timestamp-reply"
    verify_token(_token_of(body), roots=_roots(served), data=MESSAGE)
    conn.send(b"GET /v1/tsa/chain HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n")
    status, headers, body = conn.response()
    assert status == 200 and body.startswith(b"-----BEGIN CERTIFICATE-----")
    conn.send(_request(query))
    status, _, body = conn.response()
    assert status == 200
    verify_token(_token_of(body), roots=_roots(served), data=MESSAGE)


def test_a_malformed_request_on_a_lean_connection_gets_the_parsers_400(conn: _Conn) -> None:
    conn.send(b"POST /tsa HTTP/1.1\r\nhost: x\r\ncontent-length: nope\r\n\r\n")
    assert conn.response()[0] == 400
    assert conn.closed_by_server()
