"""The relay side of campaigns (issue 15 item 3): many messages over one session.

A real relay (notary subprocess) delivering to an aiosmtpd recipient server:
EHLO offers PIPELINING (RFC 2920); aiosmtplib sends 200 messages in one
STARTTLS + AUTH session (one TLS handshake for all of them); a raw client
pipelines MAIL, RCPT and DATA, and the next transaction right after the final
dot, and every reply comes back in order. (That one slow destination does not
hold up another is ``test_relay_deliveries.py::
test_a_dripping_destination_does_not_starve_the_others``.)
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiosmtplib
import pytest

from tests.notary.relay_helpers import ALICE, BOB, RelayNotary, configure, message, wait_for

MESSAGES = 200


@pytest.fixture
def relay(notary_dir: Path, smtp_sink: Any) -> Iterator[RelayNotary]:
    configure(notary_dir, relay_retry_initial=0.2)
    r = RelayNotary(notary_dir, smtp_sink.port)
    r.start()
    yield r
    r.proc.stop()


def _tls() -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def test_200_messages_in_one_session(relay: RelayNotary, smtp_sink: Any) -> None:
    messages = [message(f"c{i}", body=f"notice {i}") for i in range(MESSAGES)]

    async def campaign() -> tuple[bool, list[str]]:
        client = aiosmtplib.SMTP(
            hostname="127.0.0.1", port=relay.smtp_port, start_tls=False, timeout=60
        )
        await client.connect()
        await client.starttls(tls_context=_tls())
        await client.login(ALICE, relay.token)
        pipelining = client.supports_extension("pipelining")
        replies = []  # one connection, one STARTTLS handshake, one AUTH for all of them
        for m in messages:
            _, text = await client.sendmail(ALICE, [BOB], m)
            replies.append(text)
        await client.quit()
        return pipelining, replies

    pipelining, replies = asyncio.run(campaign())
    assert pipelining
    assert replies == [f"2.0.0 Accepted sha256={hashlib.sha256(m).hexdigest()}" for m in messages]
    wait_for(lambda: len(smtp_sink.messages) == MESSAGES, timeout=120, what="200 deliveries")
    got = sorted(
        hashlib.sha256(m.data[m.data.index(b"From: ") :]).hexdigest() for m in smtp_sink.messages
    )
    assert got == sorted(hashlib.sha256(m).hexdigest() for m in messages)


async def _replies(r: asyncio.StreamReader, n: int) -> list[str]:
    out = []
    for _ in range(n):
        lines = []
        while True:
            line = (await r.readline()).decode()
            lines.append(line)
            if len(line) < 4 or line[3] != "-":
                break
        out.append("".join(lines))
    return out


def test_pipelined_transactions_across_the_final_dot(relay: RelayNotary, smtp_sink: Any) -> None:
    first, second = message("p1"), message("p2", body=".a dot first\r\n..two")

    def stuffed(m: bytes) -> bytes:
        return (b"\r\n" + m).replace(b"\r\n.", b"\r\n..")[2:] + b".\r\n"

    async def run() -> list[str]:
        r, w = await asyncio.open_connection("127.0.0.1", relay.smtp_port)
        await _replies(r, 1)
        w.write(b"EHLO campaign\r\n")
        await _replies(r, 1)
        w.write(b"STARTTLS\r\n")
        await _replies(r, 1)
        await w.start_tls(_tls())
        w.write(b"EHLO campaign\r\n")
        (ehlo,) = await _replies(r, 1)
        cred = base64.b64encode(f"\0{ALICE}\0{relay.token}".encode())
        w.write(b"AUTH PLAIN " + cred + b"\r\n")
        await _replies(r, 1)
        env = f"MAIL FROM:<{ALICE}>\r\nRCPT TO:<{BOB}>\r\nDATA\r\n".encode()
        w.write(env)  # one group: MAIL, RCPT, DATA
        got = await _replies(r, 3)
        # The message, its final dot and the whole next transaction in one write.
        w.write(stuffed(first) + env)
        got += await _replies(r, 4)
        w.write(stuffed(second) + b"QUIT\r\n")
        got += await _replies(r, 2)
        w.close()
        return [ehlo, *got]

    ehlo, *got = asyncio.run(run())
    assert "250-PIPELINING" in ehlo
    codes = [g[:3] for g in got]
    assert codes == ["250", "250", "354", "250", "250", "250", "354", "250", "221"]
    assert hashlib.sha256(first).hexdigest() in got[3]
    assert hashlib.sha256(second).hexdigest() in got[7]
    wait_for(lambda: len(smtp_sink.messages) == 2, what="both deliveries")
    assert {m.data[m.data.index(b"From: ") :] for m in smtp_sink.messages} == {first, second}
