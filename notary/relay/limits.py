"""Per-peer bounds on the relay's SMTP sessions (DESIGN §5: one slow peer never starves others).

One :class:`PeerLimits` per relay counts open connections and failed AUTH
attempts by peer address (IPv6 peers by their /64, so one host cannot spread
over its own addresses):

- at most ``max_connections`` sessions per peer at a time; the next one is
  greeted with ``421 4.7.0`` and closed;
- at most ``auth_failures`` failed AUTH attempts per peer within
  ``auth_window`` seconds; then AUTH is answered ``421 4.7.0`` and the
  connection closed until the window has passed. A success does not reset
  the count (one valid account must not unlock guessing at others).

Time is injectable (``clock``) so tests are deterministic.
"""

from __future__ import annotations

import ipaddress
import time
from collections import defaultdict, deque
from collections.abc import Callable

MAX_CONNECTIONS_PER_PEER = 50  # as Postfix's smtpd_client_connection_count_limit
AUTH_FAILURES_PER_PEER = 10
AUTH_FAILURE_WINDOW = 600.0
#: Seconds before a failed AUTH is answered, and failures per session before it is closed.
AUTH_FAILURE_DELAY = 0.5
AUTH_FAILURES_PER_SESSION = 5


def peer_key(peer: object) -> str:
    """The address a peer is counted by: IPv4 as is, IPv6 by its /64."""
    host = peer[0] if isinstance(peer, tuple) and peer else str(peer)
    try:
        ip = ipaddress.ip_address(str(host))
    except ValueError:
        return str(host)
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


class PeerLimits:
    """Connection counts and failed-AUTH budgets per peer (see the module docstring)."""

    def __init__(
        self,
        *,
        max_connections: int = MAX_CONNECTIONS_PER_PEER,
        auth_failures: int = AUTH_FAILURES_PER_PEER,
        auth_window: float = AUTH_FAILURE_WINDOW,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_connections = max_connections
        self.auth_failures = auth_failures
        self.auth_window = auth_window
        self.clock = clock
        self._open: dict[str, int] = defaultdict(int)
        self._failures: dict[str, deque[float]] = {}

    def connect(self, peer: str) -> bool:
        """Count a new session of ``peer``; False (not counted) when it is over its cap."""
        if self._open[peer] >= self.max_connections:
            return False
        self._open[peer] += 1
        return True

    def disconnect(self, peer: str) -> None:
        n = self._open.get(peer, 0) - 1
        if n > 0:
            self._open[peer] = n
        else:
            self._open.pop(peer, None)

    def connections(self, peer: str) -> int:
        return self._open.get(peer, 0)

    def _recent(self, peer: str) -> deque[float]:
        q = self._failures.get(peer)
        if q is None:
            return deque()
        horizon = self.clock() - self.auth_window
        while q and q[0] <= horizon:
            q.popleft()
        if not q:
            del self._failures[peer]
        return q

    def auth_failed(self, peer: str) -> None:
        self._recent(peer)
        self._failures.setdefault(peer, deque()).append(self.clock())

    def auth_blocked(self, peer: str) -> bool:
        """True while ``peer`` has used up its failed-AUTH budget."""
        return len(self._recent(peer)) >= self.auth_failures
