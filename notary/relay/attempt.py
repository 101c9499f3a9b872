"""One delivery attempt: route the recipient, try its hosts in turn, read what they said.

Per recipient: the smarthost when one is set, else the domain's MX hosts
(:mod:`notary.relay.mx`). The outcome (ETSI EN 319 522 events, docs/relay.md):

- 250 after DATA: ``RelayToNonERDS`` with the host, its full reply and TLS details;
- a 5xx reply, a domain without mail (null MX, NXDOMAIN): ``RelayToNonERDSFailure``;
- a 4xx reply or no connection: no event, a reason to retry (and the reply).

The worker (:mod:`notary.relay.worker`) runs it under the attempt's deadline.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from keys.errors import TemporaryError
from notary.relay import mx
from notary.relay.settings import WorkerSettings
from notary.relay.smtp_client import Pool, SMTPConnectionError, SMTPRejected
from notary.storage import Delivery

_QUEUE_ID = re.compile(r"(?:queued as|id[= ])\s*<?([A-Za-z0-9._@-]+)>?", re.IGNORECASE)


def queue_id(reply: Any) -> str | None:
    """The next hop's queue id from its 250 text ("2.0.0 Ok: queued as 4XyZ"), if it says one."""
    if not isinstance(reply, dict):
        return None
    m = _QUEUE_ID.search(str(reply.get("text", "")))
    return m.group(1)[:200] if m else None


@dataclass(frozen=True)
class Outcome:
    """What one attempt came to: a final event (with its evidence) or a reason to retry."""

    event: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    why: str = ""
    reply: dict[str, Any] | None = None


async def send_attempt(
    pool: Pool,
    resolver: Any,
    s: WorkerSettings,
    d: Delivery,
    prefix: bytes,
    data: bytes,
) -> Outcome:
    """Route and try the hosts in turn (the part under the attempt's deadline)."""
    domain = d.recipient.rpartition("@")[2]
    try:
        if s.smarthost:
            hosts = [mx.MailHost(s.smarthost[0], s.smarthost[0], s.smarthost[1])]
        else:
            hosts = await mx.mail_hosts(domain, port=s.mx_port, resolver=resolver)
    except mx.PermanentRouteError as e:
        return Outcome(
            "RelayToNonERDSFailure",
            {
                "recipient": d.recipient,
                "reason": "no-route",
                "detail": e.message,
                "reply": None,
            },
        )
    except TemporaryError as e:
        return Outcome(why=e.message)
    last = Outcome(why="no host to try")
    for mh in hosts:
        host, port = mh.host, mh.port
        try:
            sent = await pool.send(
                mh.address,
                port,
                mail_from=d.mail_from,
                recipient=d.recipient,
                data=data,
                prefix=prefix,
                helo=s.helo,
                timeout=s.timeout,
            )
        except SMTPConnectionError as e:
            last = Outcome(why=e.message)
            continue
        except SMTPRejected as e:
            if e.permanent:
                return Outcome(
                    "RelayToNonERDSFailure",
                    {
                        "recipient": d.recipient,
                        "reason": "rejected",
                        "host": host,
                        "address": mh.address,
                        "port": port,
                        "stage": e.stage,
                        "reply": e.reply.to_json(),
                        "tls": e.tls.to_json() if e.tls else None,
                    },
                )
            return Outcome(
                why=f"{host}[{mh.address}]:{port} {e.stage}: {e.reply.code} {e.reply.text}",
                reply=e.reply.to_json(),
            )
        return Outcome(
            "RelayToNonERDS",
            {
                "recipient": d.recipient,
                "host": host,
                "address": mh.address,
                "port": port,
                "reply": sent.reply.to_json(),
                "tls": sent.tls.to_json() if sent.tls else None,
                "attempts": d.attempts + 1,
            },
        )
    return last
