"""The relay's delivery client (notary.relay.smtp_client) against loopback aiosmtpd servers."""

from __future__ import annotations

import asyncio
import hashlib
import socket
import ssl
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from notary.relay.smtp_client import CHUNK, Pool, SMTPConnectionError, SMTPRejected, send

MSG = b"From: a@a.test\r\nTo: b@b.test\r\nSubject: t\r\n\r\nhello\r\n"


def _send(
    sink: Any, data: bytes = MSG, *, recipient: str = "b@b.test", mail_from: str = "a@a.test"
) -> Any:
    return asyncio.run(
        send(
            sink.host,
            sink.port,
            mail_from=mail_from,
            recipient=recipient,
            data=data,
            helo="relay.test",
            timeout=10,
        )
    )


@pytest.mark.parametrize(
    "body",
    [
        b".\r\n..x\r\n.\r\nmiddle\r\n.\r\n..x\r\n.\r\n",
        b"..\r\n.\r\n\r\n.\r\n",
        b"x\r\n.",  # a last line without CRLF that is a lone dot
    ],
)
def test_dot_stuffing_is_exact(smtp_sink: Any, body: bytes) -> None:
    """Lines `.`, `..x`, `.` at the start and the end of the body arrive as they were."""
    data = b"Subject: dots\r\n\r\n" + body
    _send(smtp_sink, data)
    got = smtp_sink.messages[-1].data
    want = data if data.endswith(b"\r\n") else data + b"\r\n"  # SMTP ends the data with CRLF
    assert got == want


def test_message_starting_with_a_dot_line(smtp_sink: Any) -> None:
    data = b".\r\n..\r\nx\r\n"
    _send(smtp_sink, data)
    assert smtp_sink.messages[-1].data == data


def test_bare_lf_or_cr_is_not_sent(smtp_sink: Any) -> None:
    for bad in (MSG + b"a\n.\nMAIL FROM:<x@y>\r\n", MSG + b"a\r.\r\n", MSG + b"\r"):
        with pytest.raises(SMTPRejected) as e:
            _send(smtp_sink, bad)
        assert (
            e.value.permanent and e.value.stage == "DATA" and "bare CR or LF" in e.value.reply.text
        )
    assert smtp_sink.messages == []


def test_size_is_announced_and_respected(smtp_sink_factory: Any) -> None:
    sink = smtp_sink_factory(size_limit=2000)
    sent = _send(sink)
    assert sent.reply.code == 250
    assert f"SIZE={len(MSG)}" in sink.messages[-1].mail_options
    big = MSG + b"x" * 3000 + b"\r\n"
    with pytest.raises(SMTPRejected) as e:
        _send(sink, big)
    assert e.value.permanent and e.value.stage == "SIZE"
    assert e.value.reply.code == 552 and "2000" in e.value.reply.text
    assert len(sink.messages) == 1


def test_smtputf8_recipient_is_delivered_when_offered(smtp_sink_factory: Any) -> None:
    sink = smtp_sink_factory(smtputf8=True)
    data = "From: a@a.test\r\nTo: 用户@例子.测试\r\nSubject: 你好\r\n\r\n正文\r\n".encode()
    _send(sink, data, recipient="用户@例子.测试")
    got = sink.messages[-1]
    assert got.rcpt_tos == ["用户@例子.测试"] and got.data == data
    assert "SMTPUTF8" in got.mail_options and "BODY=8BITMIME" in got.mail_options


def test_smtputf8_needed_but_not_offered_fails_permanently(smtp_sink: Any) -> None:
    with pytest.raises(SMTPRejected) as e:
        _send(smtp_sink, recipient="用户@例子.测试")
    assert e.value.permanent and e.value.stage == "SMTPUTF8" and "5.6.7" in e.value.reply.text
    header = "Subject: café\r\n\r\nx\r\n".encode()
    with pytest.raises(SMTPRejected) as e:
        _send(smtp_sink, header)
    assert e.value.stage == "SMTPUTF8" and "header" in e.value.reply.text
    assert smtp_sink.messages == []


def test_8bit_body_uses_8bitmime_without_smtputf8(smtp_sink: Any) -> None:
    data = MSG + "Grüße\r\n".encode()
    _send(smtp_sink, data)
    got = smtp_sink.messages[-1]
    assert got.data == data and "BODY=8BITMIME" in got.mail_options
    assert "SMTPUTF8" not in got.mail_options
    _send(smtp_sink)
    assert smtp_sink.messages[-1].mail_options == []


class _MiniServer:
    """An SMTP server that offers nothing but PIPELINING (no 8BITMIME, no SIZE); with
    ``drip``, its greeting starts with that many continuation lines, 0.2 s apart."""

    def __init__(self, drip: int = 0) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen()
        self.port = self.sock.getsockname()[1]
        self.host = "127.0.0.1"
        self.drip = drip
        self.commands: list[bytes] = []
        self.received: list[bytes] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        import time

        conn, _ = self.sock.accept()
        f = conn.makefile("rwb")
        try:
            for _ in range(self.drip):
                f.write(b"220-still greeting\r\n")
                f.flush()
                time.sleep(0.2)
            f.write(b"220 mini\r\n")
            f.flush()
            self._dialogue(f)
        except OSError:
            pass
        finally:
            conn.close()

    def _dialogue(self, f: Any) -> None:
        for line in f:
            self.commands.append(line)
            verb = line.upper()[:4]
            if verb == b"EHLO":
                f.write(b"250-mini\r\n250 PIPELINING\r\n")
            elif verb == b"DATA":
                f.write(b"354 go\r\n")
                f.flush()
                data = b""
                for body_line in f:
                    if body_line == b".\r\n":
                        break
                    data += body_line[1:] if body_line.startswith(b".") else body_line
                self.received.append(data)
                f.write(b"250 ok\r\n")
            elif verb == b"QUIT":
                f.write(b"221 bye\r\n")
                f.flush()
                return
            else:
                f.write(b"250 ok\r\n")
            f.flush()


def test_8bit_body_to_a_server_without_8bitmime_is_refused() -> None:
    server = _MiniServer()
    with pytest.raises(SMTPRejected) as e:
        _send(server, MSG + "Grüße\r\n".encode())
    assert e.value.permanent and e.value.stage == "8BITMIME" and "5.6.3" in e.value.reply.text
    assert not any(c.upper().startswith(b"MAIL") for c in server.commands)


def test_starttls_is_used_and_recorded(smtp_sink_factory: Any) -> None:
    sink = smtp_sink_factory(tls=True)
    sent = _send(sink)
    assert sink.messages[-1].tls
    assert sent.tls is not None and sent.tls.version.startswith("TLSv1.")
    der = ssl.PEM_cert_to_DER_cert(sink.ca_file.read_text())
    assert sent.tls.cert_sha256 == hashlib.sha256(der).hexdigest()
    plain = asyncio.run(
        send(
            sink.host,
            sink.port,
            mail_from="a@a.test",
            recipient="b@b.test",
            data=MSG,
            helo="relay.test",
            timeout=10,
            starttls=False,
        )
    )
    assert plain.tls is None and not sink.messages[-1].tls


def test_replies_become_rejections(smtp_sink: Any) -> None:
    smtp_sink.fail("rcpt", 550, "5.1.1 no such user")
    with pytest.raises(SMTPRejected) as e:
        _send(smtp_sink)
    assert e.value.stage == "RCPT" and e.value.permanent and e.value.reply.code == 550
    smtp_sink.fail("data", 451, "4.3.0 later")
    with pytest.raises(SMTPRejected) as e:
        _send(smtp_sink)
    assert e.value.stage == "DATA" and not e.value.permanent
    smtp_sink.fail("mail", 421, "4.7.0 busy")
    with pytest.raises(SMTPRejected) as e:
        _send(smtp_sink)
    assert e.value.stage == "MAIL" and e.value.reply.text == "4.7.0 busy"
    assert _send(smtp_sink).reply.code == 250


def test_unreachable_and_dropped_are_connection_errors(smtp_sink: Any) -> None:
    smtp_sink.drop_after_data()
    with pytest.raises(SMTPConnectionError):
        _send(smtp_sink)
    assert smtp_sink.handler.dropped
    smtp_sink.stop()
    with pytest.raises(SMTPConnectionError):
        _send(smtp_sink)


@pytest.fixture
def silent_server() -> Iterator[tuple[str, int]]:
    """Accepts connections and never says a word."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    yield "127.0.0.1", sock.getsockname()[1]
    sock.close()


def test_a_silent_server_times_out(silent_server: tuple[str, int]) -> None:
    host, port = silent_server
    with pytest.raises(SMTPConnectionError):
        asyncio.run(
            send(
                host,
                port,
                mail_from="a@a.test",
                recipient="b@b.test",
                data=MSG,
                helo="relay.test",
                timeout=0.5,
            )
        )


def test_pool_reuses_a_session_and_recovers_from_a_stale_one(smtp_sink: Any) -> None:
    async def run() -> None:
        pool = Pool()
        for i in range(3):
            await pool.send(
                smtp_sink.host,
                smtp_sink.port,
                mail_from="a@a.test",
                recipient=f"b{i}@b.test",
                data=MSG,
                helo="relay.test",
                timeout=10,
            )
        # The server goes away and comes back: the kept session is stale.
        smtp_sink.stop()
        smtp_sink.start()
        await pool.send(
            smtp_sink.host,
            smtp_sink.port,
            mail_from="a@a.test",
            recipient="c@b.test",
            data=MSG,
            helo="relay.test",
            timeout=10,
        )
        await pool.close()

    asyncio.run(run())
    assert [m.rcpt_tos[0] for m in smtp_sink.messages] == [
        "b0@b.test",
        "b1@b.test",
        "b2@b.test",
        "c@b.test",
    ]


def test_a_dripping_reply_is_cut_off_after_the_timeout() -> None:
    """The timeout covers the whole reply, not each of its lines: a greeting that drips
    a line every 0.2 s for 10 s fails a 1 s timeout (it would pass a per-line one)."""
    server = _MiniServer(drip=50)
    with pytest.raises(SMTPConnectionError):
        asyncio.run(
            send(
                server.host,
                server.port,
                mail_from="a@a.test",
                recipient="b@b.test",
                data=MSG,
                helo="relay.test",
                timeout=1.0,
            )
        )
    assert server.commands == []


def test_the_mini_server_takes_a_message() -> None:
    """The server of the test above, without the drip, is a working SMTP server."""
    server = _MiniServer()
    sent = _send(server)
    assert sent.reply.code == 250 and server.received == [MSG]


@pytest.mark.parametrize("tls", [False, True], ids=["plain", "STARTTLS"])
def test_a_multi_mib_message_arrives_exactly(smtp_sink_factory: Any, tls: bool) -> None:
    """Over CHUNK bytes: written chunk by chunk, each after the transport drained (flow
    control, through the TLS transport too); lines of dots fall on every chunk edge."""
    sink = smtp_sink_factory(tls=tls)
    lines = [b"." * (k % 3) + b"y" * (k % 90) + b"\r\n" for k in range(60_000)]
    data = b"Subject: big\r\n\r\n" + b"".join(lines)
    assert len(data) > 2 * CHUNK
    sent = _send(sink, data)
    assert (sent.tls is not None) is tls
    assert sink.messages[-1].data == data
