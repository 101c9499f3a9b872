"""Where to deliver a recipient's mail: RFC 5321 §5.1 with null MX (RFC 7505).

MX records in preference order; no MX record means the domain itself (the
"implicit MX", used only when the domain has an A or AAAA record); a single MX
of "." means the domain accepts no mail. A domain literal (``[192.0.2.1]``) is
used as given.

Host names are resolved to addresses with the same resolver as the MX records
(not the C library's), so a configured name server (``relay_dns_server``)
decides the whole route. The default resolver reads the system's
``/etc/resolv.conf``.
"""

from __future__ import annotations

import ipaddress
import random
from dataclasses import dataclass
from typing import TYPE_CHECKING

from keys.errors import Error, TemporaryError

if TYPE_CHECKING:
    import dns.asyncresolver

SMTP_PORT = 25
LIFETIME = 20.0


class PermanentRouteError(Error):
    """The recipient's domain cannot receive mail (no such domain, null MX)."""


@dataclass(frozen=True)
class MailHost:
    """One server to try: its name (the MX exchange or the domain), an address, a port."""

    host: str
    address: str
    port: int


def parse_nameservers(value: str) -> list[tuple[str, int]]:
    """``HOST[:PORT][,HOST[:PORT]...]`` (IPv6 as ``[addr]:port``) to (address, port) pairs."""
    out: list[tuple[str, int]] = []
    for part in value.split(","):
        part = part.strip()
        if not part:
            continue
        if part.startswith("["):
            host, _, rest = part[1:].partition("]")
            port = rest.removeprefix(":") or "53"
        elif part.count(":") == 1:
            host, _, port = part.partition(":")
        else:
            host, port = part, "53"
        try:
            ipaddress.ip_address(host)
            if not port.isdigit() or not 0 < int(port) < 65536:
                raise ValueError(port)
        except ValueError:
            raise Error(
                f"bad name server {part!r}", hint="give IP[:PORT], e.g. 127.0.0.1:5353 or [::1]:53"
            ) from None
        out.append((host, int(port)))
    if not out:
        raise Error(f"no name server in {value!r}", hint="give IP[:PORT], e.g. 127.0.0.1:5353")
    return out


def make_resolver(nameservers: str = "") -> dns.asyncresolver.Resolver:
    """A resolver for ``nameservers`` (see :func:`parse_nameservers`); "" = the system's."""
    import dns.asyncresolver
    import dns.nameserver

    if not nameservers:
        r = dns.asyncresolver.Resolver()
    else:
        r = dns.asyncresolver.Resolver(configure=False)
        r.nameservers = [
            dns.nameserver.Do53Nameserver(h, p) for h, p in parse_nameservers(nameservers)
        ]
    r.lifetime = LIFETIME
    return r


async def _addresses(resolver: dns.asyncresolver.Resolver, name: str) -> list[str]:
    """A then AAAA addresses of ``name``; [] when it has none. NXDOMAIN propagates."""
    import dns.resolver

    out: list[str] = []
    for rdtype in ("A", "AAAA"):
        try:
            answer = await resolver.resolve(name, rdtype)
        except dns.resolver.NoAnswer:
            continue
        out.extend(str(r.address) for r in answer)
    return out


async def mail_hosts(
    domain: str,
    *,
    port: int = SMTP_PORT,
    resolver: dns.asyncresolver.Resolver | None = None,
) -> list[MailHost]:
    """The servers to try for ``domain``, best first.

    Raises PermanentRouteError (NXDOMAIN, null MX, no MX and no address) or
    TemporaryError (the lookup failed: time-out, SERVFAIL, no usable address
    for any MX host).
    """
    import dns.asyncresolver
    import dns.exception
    import dns.resolver

    resolver = resolver or make_resolver()
    domain = domain.strip().rstrip(".").lower()
    if domain.startswith("[") and domain.endswith("]"):
        literal = domain[1:-1].removeprefix("ipv6:")
        try:
            address = str(ipaddress.ip_address(literal))
        except ValueError:
            raise PermanentRouteError(f"bad domain literal {domain!r}") from None
        return [MailHost(address, address, port)]
    if not domain:
        raise PermanentRouteError("empty recipient domain")
    try:
        try:
            answer = await resolver.resolve(domain, "MX")
        except dns.resolver.NoAnswer:
            # Implicit MX (RFC 5321 §5.1): the domain itself, if it has an address.
            addresses = await _addresses(resolver, domain)
            if not addresses:
                raise PermanentRouteError(
                    f"{domain} has no MX and no A/AAAA record: it receives no mail"
                ) from None
            return [MailHost(domain, a, port) for a in addresses]
    except dns.resolver.NXDOMAIN:
        raise PermanentRouteError(f"no such domain: {domain} (NXDOMAIN)") from None
    except dns.exception.DNSException as e:
        raise TemporaryError(f"MX lookup for {domain} failed: {e}") from None
    records = [(int(r.preference), str(r.exchange).rstrip(".").lower()) for r in answer]
    if any(x in ("", ".") for _, x in records):
        if len(records) == 1:
            raise PermanentRouteError(f"{domain} accepts no mail (null MX, RFC 7505)")
        records = [r for r in records if r[1] not in ("", ".")]
    # Equal preferences in random order (RFC 5321 §5.1), lower preference first.
    random.shuffle(records)
    records.sort(key=lambda r: r[0])
    hosts: list[MailHost] = []
    problems: list[str] = []
    for _, name in records:
        try:
            addresses = await _addresses(resolver, name)
        except dns.exception.DNSException as e:
            problems.append(f"{name}: {e}")
            continue
        if not addresses:
            problems.append(f"{name}: no A/AAAA record")
        hosts.extend(MailHost(name, a, port) for a in addresses)
    if not hosts:
        raise TemporaryError(
            f"no address for any MX host of {domain}: {'; '.join(problems)}"[:2000]
        )
    return hosts
