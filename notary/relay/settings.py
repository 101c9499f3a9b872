"""How the relay's delivery worker delivers, retries and bounds itself (docs/relay.md)."""

from __future__ import annotations

from dataclasses import dataclass

from notary.relay import mx


@dataclass
class WorkerSettings:
    """How the worker delivers and retries (seconds)."""

    node: str
    helo: str
    smarthost: tuple[str, int] | None = None
    mx_port: int = mx.SMTP_PORT
    dns_server: str = ""
    concurrency: int = 100
    #: Attempts in flight per destination (recipient domain), as Postfix's
    #: default_destination_concurrency_limit.
    per_destination: int = 20
    #: A hard limit on one attempt: routing, connecting, greeting, the transaction.
    attempt_deadline: float = 300.0
    #: A delivery whose destination is busy is due again after this long.
    postpone: float = 1.0
    poll_interval: float = 1.0
    lease: float = 600.0
    retry_initial: float = 60.0
    retry_max: float = 3600.0
    deadline: float = 24 * 3600.0
    warn_after: float = 12 * 3600.0
    #: Bytes of large messages (over 1 MiB) being delivered at once (notary.relay.budget).
    memory_budget: int = 50 * 1024 * 1024
    timeout: float = 60.0
