"""SMTP resource limits (issue 10, item 5, SMTP side): attack scripts, loopback, bounded.

Idle and slow (slowloris) clients are closed with 421 4.4.2, connections per
peer are capped (421 4.7.0), and failed AUTH is throttled: delayed, a few per
session, and a budget per peer after which AUTH is answered 421 4.7.0. Each
script gives up after a bounded number of steps or seconds; none asserts a
duration.
"""

from __future__ import annotations

import base64
import hashlib
import smtplib
import socket
import ssl
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from notary.relay.limits import (
    AUTH_FAILURES_PER_PEER,
    MAX_CONNECTIONS_PER_PEER,
    PeerLimits,
    peer_key,
)
from tests.fixtures.smtp import SmtpSink
from tests.notary.relay_helpers import ALICE, BOB, RelayNotary, configure, message

WAIT = 30.0  # what a script waits at most for the relay to act (the old idle timeout: 300 s)


def _relay(notary_dir: Path, tmp_path: Path, **settings: float) -> Iterator[RelayNotary]:
    sink = SmtpSink(tmp_path)
    sink.start()
    configure(notary_dir, **settings)
    r = RelayNotary(notary_dir, sink.port)
    r.start()
    yield r
    r.proc.stop()
    sink.stop()


@pytest.fixture
def quick(notary_dir: Path, tmp_path: Path) -> Iterator[RelayNotary]:
    """A relay with a 1 s idle timeout and a 2 s DATA deadline."""
    yield from _relay(notary_dir, tmp_path, relay_idle_timeout=1.0, relay_data_timeout=2.0)


@pytest.fixture
def relay(notary_dir: Path, tmp_path: Path) -> Iterator[RelayNotary]:
    """A relay with the default limits."""
    yield from _relay(notary_dir, tmp_path)


def _read_until_closed(sock: socket.socket | ssl.SSLSocket) -> bytes:
    """Everything the relay says until it closes the connection (at most WAIT seconds)."""
    sock.settimeout(WAIT)
    out = b""
    while True:
        try:
            chunk = sock.recv(4096)
        except TimeoutError:
            raise AssertionError(f"the relay kept the connection open; it said {out!r}") from None
        except (ConnectionResetError, ssl.SSLError):
            return out
        if not chunk:
            return out
        out += chunk


def _session(r: RelayNotary) -> ssl.SSLSocket:
    """A raw TLS session after EHLO and STARTTLS, greeting and replies consumed."""
    s = r.connect()
    sock = s.sock
    assert isinstance(sock, ssl.SSLSocket)
    return sock


def test_idle_session_is_closed(quick: RelayNotary) -> None:
    sock = _session(quick)
    said = _read_until_closed(sock)  # send nothing at all
    assert said.startswith(b"421 4.4.2 ")


def test_slowloris_command_is_closed(quick: RelayNotary) -> None:
    sock = _session(quick)
    sock.settimeout(WAIT)
    deadline = time.monotonic() + WAIT
    try:
        for c in b"NOOP but never the end of the line":  # one byte every 0.2 s
            sock.send(bytes([c]))
            time.sleep(0.2)
            if time.monotonic() > deadline:
                break
    except OSError:
        pass
    assert _read_until_closed(sock).startswith(b"421 4.4.2 ")


def test_slow_data_is_closed(quick: RelayNotary) -> None:
    s = quick.connect()
    s.login(ALICE, quick.token)
    assert s.mail(ALICE)[0] == 250 and s.rcpt(BOB)[0] == 250
    s.putcmd("DATA")
    assert s.getreply()[0] == 354
    sock = s.sock
    assert sock is not None
    data = message("slow", body="x\r\n" * 1000)
    closed = False
    deadline = time.monotonic() + WAIT
    try:
        for i in range(0, len(data), 20):  # 20 bytes every 0.1 s: each line well in time
            sock.send(data[i : i + 20])
            time.sleep(0.1)
            if time.monotonic() > deadline:
                break
    except OSError:
        closed = True
    said = _read_until_closed(sock)
    assert closed or said.startswith(b"421 4.4.2 "), said
    assert quick.events(hashlib.sha256(data).hexdigest()) == []


def test_connections_per_peer_are_capped(relay: RelayNotary) -> None:
    held = []
    try:
        for _ in range(MAX_CONNECTIONS_PER_PEER):
            c = socket.create_connection(("127.0.0.1", relay.smtp_port), timeout=WAIT)
            assert c.recv(512).startswith(b"220 ")
            held.append(c)
        extra = socket.create_connection(("127.0.0.1", relay.smtp_port), timeout=WAIT)
        assert _read_until_closed(extra).startswith(b"421 4.7.0 ")
        held.pop().close()
        time.sleep(0.2)
        s = relay.connect()  # room again: served
        s.login(ALICE, relay.token)
        s.close()
    finally:
        for c in held:
            c.close()


def test_failed_auth_is_throttled(relay: RelayNotary) -> None:
    failures, closed_by_relay, tries = 0, 0, 0
    while failures < AUTH_FAILURES_PER_PEER and tries < 3 * AUTH_FAILURES_PER_PEER:
        s = relay.connect()
        code = 535
        while code == 535 and tries < 3 * AUTH_FAILURES_PER_PEER:  # bounded either way
            tries += 1
            code, _ = s.docmd(
                "AUTH", "PLAIN " + base64.b64encode(f"\0{ALICE}\0wrong-{tries}".encode()).decode()
            )
            failures += code == 535
        assert code == 421, (code, failures)
        closed_by_relay += 1
        with pytest.raises(smtplib.SMTPServerDisconnected):
            s.noop()
        s.close()
    assert failures == AUTH_FAILURES_PER_PEER and closed_by_relay > 1
    # The budget is used up: even the right token is not tried now.
    s = relay.connect()
    code, _ = s.docmd(
        "AUTH", "PLAIN " + base64.b64encode(f"\0{ALICE}\0{relay.token}".encode()).decode()
    )
    assert code == 421


def test_peer_limits_unit() -> None:
    now = [0.0]
    lim = PeerLimits(max_connections=2, auth_failures=2, auth_window=10, clock=lambda: now[0])
    assert lim.connect("p") and lim.connect("p") and not lim.connect("p")
    lim.disconnect("p")
    assert lim.connections("p") == 1 and lim.connect("p")
    lim.auth_failed("p")
    assert not lim.auth_blocked("p")
    lim.auth_failed("p")
    assert lim.auth_blocked("p") and not lim.auth_blocked("q")
    now[0] = 10.5
    assert not lim.auth_blocked("p")
    assert (
        peer_key(("2001:db8::1", 25, 0, 0))
        == peer_key(("2001:db8::2", 25, 0, 0))
        == "2001:db8::/64"
    )
    assert peer_key(("::ffff:192.0.2.1", 25, 0, 0)) == "192.0.2.1"
    assert peer_key(("192.0.2.1", 25)) == "192.0.2.1"
