"""A Verifying Key Server lookup (keys.openpgp.org's VKS API, ``/vks/v1/by-email/``).

``GET <server>/vks/v1/by-email/<percent-encoded address>`` answers the
ASCII-armored key whose owner confirmed that address to the server, or 404.
The server is ``--keyserver URL`` or ``CERTMAIL_KEYSERVER``; it must be
``https://`` (plain ``http://`` only on loopback, for tests and a local relay).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import quote, urlsplit

from keys.errors import Error, TemporaryError

from .fetch import get_bounded

KEYSERVER_ENV = "CERTMAIL_KEYSERVER"


@dataclass(frozen=True)
class VksAnswer:
    url: str
    data: bytes


def by_email_url(server: str, addr: str) -> str:
    """The VKS by-email URL of ``addr`` on ``server`` (checked: https, or http on loopback)."""
    parts = urlsplit(server.strip())
    host = parts.hostname or ""
    if parts.scheme not in ("https", "http") or not host:
        raise Error(
            f"keyserver {server!r} is not an https:// URL",
            hint="--keyserver https://keys.openpgp.org",
        )
    if parts.scheme == "http" and not _loopback(host):
        raise Error(
            f"keyserver {server!r} is plain http: only https:// is used off loopback",
            hint="--keyserver https://" + (parts.netloc or "keys.openpgp.org"),
        )
    base = server.strip().rstrip("/")
    return f"{base}/vks/v1/by-email/{quote(addr.strip(), safe='')}"


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def lookup(server: str, addr: str, *, env: Mapping[str, str] | None = None) -> VksAnswer | None:
    """The key the server holds for ``addr``, or None (404)."""
    url = by_email_url(server, addr)
    answer = get_bounded(url, env=env)
    if answer.status == 404:
        return None
    if answer.status != 200:
        raise TemporaryError(f"the keyserver answered HTTP {answer.status} ({url})")
    return VksAnswer(url, answer.body)
