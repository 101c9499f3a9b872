"""One bounded HTTP GET for key discovery: size cap, deadline, no redirects (httpx).

Every key-discovery answer (WKD, VKS) comes through :func:`get_bounded`: the
body is read piece by piece and cut off past ``max_bytes`` (a server answering
1 GB gets a clear error, not a full disk), the whole exchange has one deadline
(a server trickling its answer is cut off too), redirects are not followed
(a WKD answer must come from the domain asked), and TLS certificates are
verified against the system's CAs or ``CERTMAIL_KEYS_CA`` (a private CA's PEM).

``CERTMAIL_WKD_HOST_OVERRIDE`` (``host=IP:PORT`` pairs, space separated) sends
the requests for ``host`` to ``IP:PORT`` while TLS still checks the
certificate against ``host`` (curl's ``--resolve``): for tests on loopback and
for a split-horizon set-up; docs/keys.md.
"""

from __future__ import annotations

import functools
import os
import ssl
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlsplit, urlunsplit

from keys.errors import Error, TemporaryError, VerificationError

if TYPE_CHECKING:  # httpx is imported where a key is fetched: `open` starts faster
    import httpx

#: GnuPG's dirmngr bounds a WKD answer the same way (256 KiB).
MAX_KEY_BYTES = 256 * 1024
TIMEOUT = 15.0  # seconds for the whole exchange
OVERRIDE_ENV = "CERTMAIL_WKD_HOST_OVERRIDE"
CA_ENV = "CERTMAIL_KEYS_CA"


class AnswerTooLargeError(VerificationError):
    """The server's answer went past the size bound."""


@dataclass(frozen=True)
class Answer:
    """What a server answered: status and (bounded) body."""

    url: str
    status: int
    body: bytes


def overrides(env: Mapping[str, str]) -> dict[str, str]:
    """``{host: "IP:PORT"}`` from ``CERTMAIL_WKD_HOST_OVERRIDE``."""
    out: dict[str, str] = {}
    for item in env.get(OVERRIDE_ENV, "").split():
        host, sep, target = item.partition("=")
        if not sep or not host or not target:
            raise Error(
                f"{OVERRIDE_ENV}: {item!r} is not host=IP:PORT",
                hint=f"{OVERRIDE_ENV}='openpgpkey.example.org=127.0.0.1:8443'",
            )
        out[host.lower().rstrip(".")] = target
    return out


def tls_context(env: Mapping[str, str]) -> ssl.SSLContext:
    """The system's CAs, or the PEM file named by ``CERTMAIL_KEYS_CA``.

    One context per CA file while the file is unchanged (its inode, size and mtime):
    loading a CA store costs about 40 ms of CPU, once per key looked up before, and a
    campaign's ``create`` looks many up (a client context is safe to share between
    threads)."""
    ca = env.get(CA_ENV) or None
    try:
        st = os.stat(ca) if ca is not None else None
        stamp = None if st is None else (st.st_ino, st.st_size, st.st_mtime_ns)
        return _context(ca, stamp)
    except (OSError, ssl.SSLError) as e:
        raise Error(f"{CA_ENV}: cannot read {ca}: {e}") from None


@functools.lru_cache(maxsize=8)
def _context(ca: str | None, stamp: tuple[int, int, int] | None) -> ssl.SSLContext:
    """:func:`tls_context`'s context for ``ca`` as it was at ``stamp``."""
    del stamp  # part of the cache key only
    return ssl.create_default_context(cafile=ca)


def get_bounded(
    url: str,
    *,
    env: Mapping[str, str] | None = None,
    max_bytes: int = MAX_KEY_BYTES,
    timeout: float = TIMEOUT,
) -> Answer:
    """GET ``url``; raise on a network failure, an over-long answer or the deadline.

    Raises :class:`TemporaryError` when the server cannot be reached or does not
    finish in ``timeout`` seconds, :class:`AnswerTooLargeError` past ``max_bytes``.
    Any status is returned (the caller decides what a 404 means).
    """
    import httpx

    env = os.environ if env is None else env
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    target = overrides(env).get(host)
    headers = {"Accept": "application/octet-stream, application/pgp-keys"}
    extensions: dict[str, str] = {}
    real = url
    if target is not None:
        headers["Host"] = parts.netloc
        extensions["sni_hostname"] = host
        real = urlunsplit((parts.scheme, target, parts.path, parts.query, ""))
    deadline = time.monotonic() + timeout
    try:
        with httpx.Client(
            verify=tls_context(env), timeout=timeout, follow_redirects=False, trust_env=False
        ) as client:
            request = client.build_request("GET", real, headers=headers, extensions=extensions)
            resp = client.send(request, stream=True)
            try:
                return Answer(url, resp.status_code, _read(resp, url, max_bytes, deadline))
            finally:
                resp.close()
    except httpx.TimeoutException:
        raise TemporaryError(f"{host} did not answer in time ({timeout:g} s)") from None
    except httpx.ConnectError as e:
        if "CERTIFICATE_VERIFY_FAILED" in str(e):
            raise VerificationError(
                f"the certificate of {host} does not verify: {_why(e)}",
                hint=f"for a private CA: {CA_ENV}=/path/to/ca.pem",
            ) from None
        raise TemporaryError(f"cannot reach {host}: {_why(e)}") from None
    except httpx.HTTPError as e:
        raise TemporaryError(f"{host}: the HTTP exchange failed: {_why(e)}") from None


def _read(resp: httpx.Response, url: str, max_bytes: int, deadline: float) -> bytes:
    import httpx

    declared = resp.headers.get("Content-Length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise AnswerTooLargeError(
            f"the answer from {url} is {int(declared):,} bytes, more than the "
            f"{max_bytes:,} a key may take; refused"
        )
    buf = bytearray()
    for chunk in resp.iter_bytes():
        buf += chunk
        if len(buf) > max_bytes:
            raise AnswerTooLargeError(
                f"the answer from {url} is larger than the {max_bytes:,} bytes a key may "
                "take; cut off and refused"
            )
        if time.monotonic() > deadline:
            raise httpx.ReadTimeout("deadline")
    return bytes(buf)


def _why(e: Exception) -> str:
    text = str(e).strip() or type(e).__name__
    return text.splitlines()[0][:200]
