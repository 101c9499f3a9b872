"""Web Key Directory lookups (draft-koch-openpgp-webkey-service, §3.1).

The local part of the address is lower-cased (ASCII), hashed with SHA-1 and
encoded in z-base-32 (§3.1); the key is fetched from

- the advanced method: ``https://openpgpkey.<domain>/.well-known/openpgpkey/<domain>/hu/<hash>?l=<local>``
- the direct method:   ``https://<domain>/.well-known/openpgpkey/hu/<hash>?l=<local>``

The direct method is tried only when the ``openpgpkey`` sub-domain cannot be
reached (the draft: "only if the required sub-domain does not exist"). The
answer is a binary (or, tolerated, armored) transferable public key.

Special-use domains (RFC 2606, RFC 6761: ``.test``, ``.example``,
``.invalid``, ``.localhost`` and ``example.com``/``.net``/``.org``) host no
one's keys and are never asked on the network, unless
``CERTMAIL_WKD_HOST_OVERRIDE`` names the host (tests on loopback).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import quote

from keys.errors import Error, TemporaryError

from .fetch import Answer, get_bounded, overrides

SPECIAL_TLDS = ("test", "example", "invalid", "localhost")
SPECIAL_DOMAINS = ("example.com", "example.net", "example.org")


def special_use(domain: str) -> bool:
    """Whether ``domain`` is reserved (RFC 2606 §2-3, RFC 6761 §6)."""
    d = domain.lower().rstrip(".")
    return d.rpartition(".")[2] in SPECIAL_TLDS or any(
        d == s or d.endswith("." + s) for s in SPECIAL_DOMAINS
    )


#: z-base-32 alphabet (Zooko's "human-oriented base-32").
ZBASE32 = "ybndrfg8ejkmcpqxot1uwisza345h769"


def zbase32(data: bytes) -> str:
    """z-base-32 of ``data``, without padding (for SHA-1: 32 characters)."""
    bits = int.from_bytes(data, "big")
    n = len(data) * 8
    out = []
    for shift in range(n - 5, -5, -5):
        idx = (bits >> shift) & 31 if shift >= 0 else (bits << -shift) & 31
        out.append(ZBASE32[idx])
    return "".join(out)


def split_address(addr: str) -> tuple[str, str]:
    """``(local, domain)`` of an addr-spec; raises on anything else."""
    local, sep, domain = addr.strip().rpartition("@")
    if not sep or not local or not domain or any(c in addr for c in " <>/\\?#\r\n"):
        raise Error(
            f"{addr!r} is not an email address", hint="certmail keys locate bob@example.org"
        )
    return local, domain.lower().rstrip(".")


def wkd_hash(local: str) -> str:
    """The ``hu`` name of a local part: z-base-32(SHA-1(lower-cased local part))."""
    lowered = "".join(c.lower() if c.isascii() else c for c in local)
    return zbase32(hashlib.sha1(lowered.encode("utf-8")).digest())  # noqa: S324 - the spec's hash


def wkd_urls(addr: str) -> tuple[str, str]:
    """The advanced and the direct method's URL for ``addr``."""
    local, domain = split_address(addr)
    h = wkd_hash(local)
    q = quote(local, safe="")
    return (
        f"https://openpgpkey.{domain}/.well-known/openpgpkey/{domain}/hu/{h}?l={q}",
        f"https://{domain}/.well-known/openpgpkey/hu/{h}?l={q}",
    )


@dataclass(frozen=True)
class WkdAnswer:
    """The key bytes a WKD answered and the method that answered."""

    method: str  # "advanced" or "direct"
    url: str
    data: bytes


def lookup(addr: str, *, env: Mapping[str, str] | None = None) -> WkdAnswer | None:
    """The key the address's domain publishes, or None (404: no key there).

    Raises :class:`TemporaryError` when neither method's host answers, and
    the errors of :func:`certmail.locate.fetch.get_bounded`.
    """
    advanced, direct = wkd_urls(addr)
    domain = split_address(addr)[1]
    named = overrides(os.environ if env is None else env)
    if special_use(domain) and not ({domain, "openpgpkey." + domain} & named.keys()):
        return None  # reserved: nobody publishes keys there (and tests stay offline)
    try:
        answer = get_bounded(advanced, env=env)
        method = "advanced"
    except TemporaryError as first:
        try:
            answer = get_bounded(direct, env=env)
        except TemporaryError:
            raise first from None
        method = "direct"
    return _result(answer, method)


def _result(answer: Answer, method: str) -> WkdAnswer | None:
    if answer.status == 404:
        return None
    if answer.status != 200:
        raise TemporaryError(f"the Web Key Directory answered HTTP {answer.status} ({answer.url})")
    return WkdAnswer(method, answer.url, answer.body)
