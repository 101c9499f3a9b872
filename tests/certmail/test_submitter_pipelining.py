"""SMTP PIPELINING (RFC 2920) in certmail.submitter: with a server that offers it, the
envelope (NOOP on a kept session, MAIL, RCPT, DATA) reaches the server in one piece
and is answered in order; a refused recipient still stops the message."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import pytest

from certmail import submitter
from certmail.submitter import DeliveryError, Peer, submit
from keys.errors import TemporaryError
from tests.fixtures.notary_tap import TcpTap


def _msg(i: int) -> bytes:
    return f"From: a@a.test\r\nTo: b@b.test\r\nSubject: {i}\r\n\r\n.\r\nbody {i}\r\n".encode()


class _Tap(TcpTap):
    """A :class:`TcpTap` in front of ``sink``: a test sees which commands travelled
    together (one ``recv`` each)."""

    def piece_with(self, command: bytes) -> bytes:
        found = [p for p in self.pieces if command in p.upper()]
        assert len(found) == 1, (command, self.pieces)
        return found[0].upper()


def _offer_pipelining(sink: Any, offer: bool = True) -> None:
    async def handle_EHLO(
        server: Any, session: Any, envelope: Any, hostname: str, responses: list[str]
    ) -> list[str]:
        session.host_name = hostname
        return [*responses[:-1], "250-PIPELINING", responses[-1]] if offer else responses

    sink.handler.handle_EHLO = handle_EHLO


@pytest.fixture
def tapped(smtp_sink_factory: Any) -> Iterator[tuple[Any, _Tap, Peer]]:
    sink = smtp_sink_factory()
    _offer_pipelining(sink)
    tap = _Tap(sink.host, sink.port)
    submitter.keep_sessions()
    yield sink, tap, Peer("127.0.0.1", tap.port, starttls="never")
    submitter.close_sessions()
    tap.close()


def test_the_envelope_travels_in_one_piece(tapped: tuple[Any, _Tap, Peer]) -> None:
    sink, tap, peer = tapped
    for i in range(3):
        r = submit(peer, "a@a.test", ["b@b.test"], _msg(i))
        assert r.code == 250
    assert [m.data for m in sink.messages] == [_msg(i) for i in range(3)]
    envelopes = [p.upper() for p in tap.pieces if b"MAIL FROM:" in p.upper()]
    assert len(envelopes) == 3
    first, *kept = envelopes
    assert first == b"MAIL FROM:<A@A.TEST>\r\nRCPT TO:<B@B.TEST>\r\nDATA\r\n"
    for piece in kept:  # a kept session: the NOOP rides along, no round trip of its own
        assert piece.startswith(b"NOOP\r\nMAIL FROM:<A@A.TEST>")
        assert piece.endswith(b"RCPT TO:<B@B.TEST>\r\nDATA\r\n")
    assert not any(p.upper() == b"NOOP\r\n" for p in tap.pieces)


def test_without_pipelining_commands_go_one_by_one(smtp_sink_factory: Any) -> None:
    sink = smtp_sink_factory()
    _offer_pipelining(sink, offer=False)
    tap = _Tap(sink.host, sink.port)
    try:
        submit(Peer("127.0.0.1", tap.port, starttls="never"), "a@a.test", ["b@b.test"], _msg(0))
        assert tap.piece_with(b"MAIL FROM:").startswith(b"MAIL FROM:")
        assert b"RCPT" not in tap.piece_with(b"MAIL FROM:")
        assert tap.piece_with(b"RCPT TO:").startswith(b"RCPT TO:<B@B.TEST>\r\n")
        assert [m.data for m in sink.messages] == [_msg(0)]
    finally:
        tap.close()


def test_a_refused_recipient_stops_the_pipelined_message(
    tapped: tuple[Any, _Tap, Peer],
) -> None:
    sink, tap, peer = tapped
    sink.fail("rcpt", 550, "no such user")
    with pytest.raises(DeliveryError, match="550 no such user"):
        submit(peer, "a@a.test", ["b@b.test"], _msg(0))
    sink.fail("mail", 451, "busy")
    with pytest.raises(TemporaryError, match="451 busy"):
        submit(peer, "a@a.test", ["b@b.test"], _msg(1))
    assert sink.messages == []
    envelope = b"mail FROM:<a@a.test>\r\nrcpt TO:<b@b.test>\r\ndata\r\n"
    # each refusal: the pipelined envelope, RSET, and the failed session closed
    assert (
        tap.pieces[:8]
        == [
            b"ehlo %s\r\n" % socket.gethostname().lower().encode(),
            envelope,
            b"rset\r\n",
            b"quit\r\n",
        ]
        * 2
    )
    submit(peer, "a@a.test", ["b@b.test"], _msg(2))
    assert [m.data for m in sink.messages] == [_msg(2)]


def test_a_server_that_answers_data_despite_a_refusal_gets_no_dot(
    tapped: tuple[Any, _Tap, Peer],
) -> None:
    """Two recipients, one refused: aiosmtpd still answers DATA with 354 (one was
    accepted). All-or-nothing: the client hangs up rather than sending the dot."""
    sink, tap, peer = tapped
    original = sink.handler.handle_RCPT

    async def handle_RCPT(server: Any, session: Any, envelope: Any, address: str, o: Any) -> str:
        if address == "c@c.test":
            return "550 no such user"
        return str(await original(server, session, envelope, address, o))

    sink.handler.handle_RCPT = handle_RCPT
    with pytest.raises(DeliveryError, match=r"c@c\.test: 550 no such user"):
        submit(peer, "a@a.test", ["b@b.test", "c@c.test"], _msg(0))
    assert not any(b"\r\n.\r\n" in p for p in tap.pieces)
    submit(peer, "a@a.test", ["b@b.test"], _msg(1))  # a new session
    assert [m.data for m in sink.messages] == [_msg(1)]
