"""Loopback key servers for the key-discovery tests (issue 11 item 7).

- :class:`KeyServer`: a threaded HTTP(S) server answering from ``routes``
  ``{path_with_query: (status, body)}``; ``body`` may be the string ``"HUGE"``
  (2 MiB streamed with no Content-Length) or ``"HUGE-DECLARED"`` (a declared
  1 GB answer whose first bytes follow) or ``"TRICKLE"`` (a byte a second).
- :func:`wkd_tls`: a test CA and a TLS server context for
  ``openpgpkey.<domain>`` and ``<domain>`` (the CA file goes into
  ``CERTMAIL_KEYS_CA``).
"""

from __future__ import annotations

import datetime
import ssl
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from tests.fixtures.x509 import certificate, tls_server_context

Routes = dict[str, tuple[int, bytes | str]]


class KeyServer:
    """HTTP (or HTTPS with ``tls``) on 127.0.0.1, one free port; ``.hits`` records paths."""

    def __init__(self, routes: Routes, tls: ssl.SSLContext | None = None) -> None:
        self.routes = routes
        self.hits: list[str] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"

            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                server.hits.append(self.path)
                status, body = server.routes.get(self.path, (404, b"not found"))
                self.send_response(status)
                if body == "HUGE":
                    self.end_headers()
                    try:
                        for _ in range(32):
                            self.wfile.write(b"\x99" * 65536)
                    except OSError:
                        pass
                    return
                if body == "TRICKLE":  # one byte a second, for ever
                    self.send_header("Content-Length", "100000")
                    self.end_headers()
                    try:
                        for _ in range(120):
                            self.wfile.write(b"\x99")
                            self.wfile.flush()
                            time.sleep(1)
                    except OSError:
                        pass
                    return
                if body == "HUGE-DECLARED":
                    self.send_header("Content-Length", str(1 << 30))
                    self.end_headers()
                    try:
                        self.wfile.write(b"\x99" * 65536)
                    except OSError:
                        pass
                    return
                assert isinstance(body, bytes)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        if tls is not None:
            self.httpd.socket = tls.wrap_socket(self.httpd.socket, server_side=True)
        self.port = int(self.httpd.server_address[1])
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def __enter__(self) -> KeyServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self._thread.join(5)


def wkd_tls(directory: Path, domain: str) -> tuple[Path, ssl.SSLContext]:
    """A test root CA (PEM file) and a server context for ``openpgpkey.DOMAIN`` and ``DOMAIN``."""
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = certificate("WKD Test Root CA", ca_key, ca=True, path_length=0)
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = certificate(
        domain,
        key,
        issuer=(ca, ca_key),
        ca=False,
        sans=[x509.DNSName(f"openpgpkey.{domain}"), x509.DNSName(domain)],
        now=datetime.datetime.now(datetime.UTC),
    )
    ca_file = directory / "wkd-ca.pem"
    ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    return ca_file, tls_server_context(directory, "wkd", leaf, key)
