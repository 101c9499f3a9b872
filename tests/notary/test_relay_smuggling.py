"""SMTP smuggling through the relay (issue 10, item 1): an attack script, loopback, bounded.

An authenticated account (mallory) ends DATA early with each bare-CR/bare-LF
dot sequence of the 2023 SMTP-smuggling research (SEC Consult; Postfix's
smtp-smuggling.html) and appends a second transaction in another account's
name (alice). The relay delivers to a lenient next hop that takes every such
sequence as the end of the data, so a smuggled transaction would arrive there
as a message of its own. The relay must refuse each with 550 5.5.2 (the NUL
variant with 550 5.6.0), store and log nothing, and the next hop must never
see a MAIL FROM but mallory's.
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from notary.relay.content import RelayRefusal, check_line_endings, inspect
from tests.fixtures.smtp import LenientSink
from tests.notary.relay_helpers import ALICE, BOB, RelayNotary, configure, message, wait_for

MALLORY = "mallory@m.test"
ENDINGS = (b"\r\n", b"\n", b"\r")
#: Every <eol>.<eol> but the real CRLF.CRLF: \n.\n, \n.\r\n, \r\n.\n, \r\n.\r, \r.\r, ...
VARIANTS = [
    a + b"." + b for a, b in itertools.product(ENDINGS, ENDINGS) if (a, b) != (b"\r\n", b"\r\n")
]
#: Servers that drop NUL read CRLF NUL . CRLF as the end too (SEC Consult's follow-up).
NUL_VARIANT = b"\r\n\0.\r\n"
ALL = [*VARIANTS, NUL_VARIANT]
#: The enhanced status code each is refused with.
STATUS = {**{v: b"5.5.2 " for v in VARIANTS}, NUL_VARIANT: b"5.6.0 "}
SMUGGLED = (
    f"MAIL FROM:<{ALICE}>\r\nRCPT TO:<{BOB}>\r\nDATA\r\n"
    f"From: {ALICE}\r\nTo: {BOB}\r\nSubject: urgent: new bank details\r\n"
    f"Message-ID: <smuggled@a.test>\r\nDate: Sat, 21 Nov 2026 12:00:00 +0000\r\n\r\n"
    "Please pay the invoice to our new account.\r\n"
).encode()


class _World:
    def __init__(self, relay: RelayNotary, sink: LenientSink, token: str) -> None:
        self.relay, self.sink, self.token = relay, sink, token
        self.controls = 0

    def events(self, sha: str) -> list[str]:
        r = httpx.get(
            f"{self.relay.url}/v1/messages/{sha}/receipts",
            headers={"Authorization": f"Bearer {self.token}"},
            timeout=10,
        )
        if r.status_code == 404:
            return []
        r.raise_for_status()
        return [x["entry"] for x in r.json()["receipts"]]

    def raw_data(self, payload: bytes) -> tuple[int, bytes]:
        """One transaction as mallory, DATA written raw (dot-stuffed as RFC 5321 §4.5.2 says)."""
        s = self.relay.connect()
        try:
            s.login(MALLORY, self.token)
            assert s.mail(MALLORY)[0] == 250 and s.rcpt(BOB)[0] == 250
            s.putcmd("DATA")
            assert s.getreply()[0] == 354
            stuffed = b"\r\n" + payload
            s.send(stuffed.replace(b"\r\n.", b"\r\n..")[2:] + b".\r\n")
            return s.getreply()
        finally:
            s.close()


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[_World]:
    from tests.fixtures.notary import init_notary_dir

    sink = LenientSink(tuple(ALL))
    d: Path = init_notary_dir(tmp_path_factory.mktemp("smuggle") / "notary")
    configure(d, relay_retry_initial=0.2)
    relay = RelayNotary(d, sink.port)
    token = relay.proc.token_for(MALLORY)
    relay.start()
    yield _World(relay, sink, token)
    relay.proc.stop()
    sink.stop()


def _mallory(mid: str, body: str) -> bytes:
    return message(mid, sender=MALLORY, body=body).replace(b"@a.test>", b"@m.test>")


def test_the_lenient_sink_does_split_on_each_variant() -> None:
    """The fixture itself: a smuggled transaction after a variant arrives as a second message."""
    import smtplib

    sink = LenientSink(tuple(ALL))
    try:
        for v in ALL:
            before = len(sink.messages)
            s = smtplib.SMTP(sink.host, sink.port, timeout=10)
            s.ehlo()
            s.mail(MALLORY)
            s.rcpt(BOB)
            s.putcmd("DATA")
            s.getreply()
            s.send(b"Subject: x\r\n\r\nhello" + v + SMUGGLED + b".\r\n")
            s.getreply()
            s.close()
            wait_for(lambda: len(sink.messages) >= before + 2, 10, "the smuggled message")
            assert sink.messages[before + 1].mail_from == ALICE
    finally:
        sink.stop()


@pytest.mark.parametrize("variant", ALL, ids=[v.hex() for v in ALL])
def test_check_line_endings_refuses_every_variant(variant: bytes) -> None:
    data = _mallory("unit", "hello" + variant.decode() + SMUGGLED.decode())
    with pytest.raises(RelayRefusal) as e:
        check_line_endings(data)
    assert e.value.reply.startswith("550 " + STATUS[variant].decode())
    with pytest.raises(RelayRefusal):
        inspect(data)
    check_line_endings(_mallory("clean", "hello\r\n.\r\nstill data"))  # CRLF only: fine


@pytest.mark.parametrize("variant", ALL, ids=[v.hex() for v in ALL])
def test_smuggling_through_the_relay_is_refused(world: _World, variant: bytes) -> None:
    data = _mallory(f"smuggle{variant.hex()}", "hello") + variant + SMUGGLED
    code, text = world.raw_data(data)
    assert code == 550 and text.startswith(STATUS[variant]), (code, text)
    assert world.events(hashlib.sha256(data).hexdigest()) == []
    # A clean message afterwards is delivered: the next hop was reachable all along.
    world.controls += 1
    clean = _mallory(f"control{variant.hex()}", "nothing hidden")
    code, _ = world.raw_data(clean)
    assert code == 250
    wait_for(lambda: len(world.sink.messages) >= world.controls, 30, "the control message")
    got: list[Any] = world.sink.messages
    assert [m.mail_from for m in got] == [MALLORY] * world.controls
    assert not any(b"bank details" in m.data for m in got)
