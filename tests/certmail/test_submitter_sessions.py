"""Kept SMTP sessions (certmail.submitter.keep_sessions): one connection for many
messages, a closed one replaced, never a message resent once handed over."""

from __future__ import annotations

import hashlib
import ssl
from collections.abc import Iterator
from typing import Any

import pytest

from certmail import submitter
from certmail.submitter import Peer, UncertainDeliveryError, submit

LOGIN = ("alice", "s3cret")


def _msg(i: int) -> bytes:
    return f"From: a@a.test\r\nTo: b@b.test\r\nSubject: {i}\r\n\r\n.\r\nbody {i}\r\n".encode()


def _pinned(sink: Any) -> Peer:
    assert sink.ca_file is not None
    pin = hashlib.sha256(ssl.PEM_cert_to_DER_cert(sink.ca_file.read_text())).hexdigest()
    return Peer(sink.host, sink.port, pin_sha256=pin)


def _count_connections(sink: Any) -> list[Any]:
    """The client address (host, port) of each MAIL the sink answers."""
    peers: list[Any] = []
    original = sink.handler.handle_MAIL

    async def handle_MAIL(server: Any, session: Any, *args: Any) -> str:
        peers.append(session.peer)
        return str(await original(server, session, *args))

    sink.handler.handle_MAIL = handle_MAIL
    return peers


@pytest.fixture
def kept() -> Iterator[None]:
    submitter.keep_sessions()
    yield
    submitter.close_sessions()


def test_kept_session_carries_many_messages_over_one_connection(
    smtp_sink_factory: Any, kept: None
) -> None:
    sink = smtp_sink_factory(tls=True, auth=LOGIN)
    peers = _count_connections(sink)
    peer = _pinned(sink)
    for i in range(5):
        r = submit(peer, "a@a.test", ["b@b.test"], _msg(i), login=LOGIN)
        assert r.code == 250 and r.tls and r.cert_sha256 == peer.pin_sha256
    assert [m.data for m in sink.messages] == [_msg(i) for i in range(5)]
    assert len(peers) == 5 and len(set(peers)) == 1


def test_without_keep_sessions_each_message_has_its_own_connection(
    smtp_sink_factory: Any,
) -> None:
    sink = smtp_sink_factory(tls=True, auth=LOGIN)
    peers = _count_connections(sink)
    for i in range(3):
        submit(_pinned(sink), "a@a.test", ["b@b.test"], _msg(i), login=LOGIN)
    assert len(sink.messages) == 3 and len(set(peers)) == 3


def test_a_session_closed_by_the_server_is_replaced(smtp_sink_factory: Any, kept: None) -> None:
    sink = smtp_sink_factory(tls=True, auth=LOGIN)
    peers = _count_connections(sink)
    peer = _pinned(sink)
    submit(peer, "a@a.test", ["b@b.test"], _msg(0), login=LOGIN)
    sink.stop()  # the kept connection is closed under the client
    sink.start()
    submit(peer, "a@a.test", ["b@b.test"], _msg(1), login=LOGIN)
    assert [m.data for m in sink.messages] == [_msg(0), _msg(1)]
    assert len(set(peers)) == 2


def test_a_kept_session_that_breaks_after_the_dot_is_not_resent(
    smtp_sink_factory: Any, kept: None
) -> None:
    sink = smtp_sink_factory(tls=True, auth=LOGIN)
    peer = _pinned(sink)
    submit(peer, "a@a.test", ["b@b.test"], _msg(0), login=LOGIN)
    sink.drop_after_data()
    with pytest.raises(UncertainDeliveryError):
        submit(peer, "a@a.test", ["b@b.test"], _msg(1), login=LOGIN)
    assert [m.data for m in sink.messages] == [_msg(0)]
    assert [m.data for m in sink.handler.dropped] == [_msg(1)]
    submit(peer, "a@a.test", ["b@b.test"], _msg(2), login=LOGIN)  # a new session
    assert [m.data for m in sink.messages] == [_msg(0), _msg(2)]
