"""The relay's delivery client: RFC 5321 over aiosmtplib, with a small connection pool.

The protocol (replies, EHLO, STARTTLS per RFC 3207, commands) is aiosmtplib's;
this module decides what to send and what the answers mean for the worker
(:mod:`notary.relay.worker`). The message itself is written here, dot-stuffed
(RFC 5321 §4.5.2) in chunks of about 1 MiB with the transport's write buffer
kept short, so sending a large message costs one chunk of memory beyond its
bytes (aiosmtplib's ``data()`` makes three whole copies):

- exact bytes: a message with a bare CR or LF is not sent (on the wire it
  would be altered, and it could end DATA early at the next hop);
- SIZE (RFC 1870): ``SIZE=n`` on MAIL, and no attempt when the message is
  larger than the peer's advertised limit (a permanent ``552 5.3.4``);
- SMTPUTF8 (RFC 6531): used when an address or a header is UTF-8, refused
  (``550 5.6.7``) when the peer does not offer it; 8BITMIME (RFC 6152):
  ``BODY=8BITMIME`` when the message has 8-bit bytes, refused (``554 5.6.3``)
  when the peer does not offer it;
- STARTTLS whenever the server offers it (opportunistic: the certificate is
  recorded, not verified, as for MX delivery without DANE/MTA-STS); the TLS
  version and the SHA-256 of the server's certificate are reported.

Every reply must come within ``timeout`` seconds (the greeting, each command,
the reply to the final dot), so a server that drips a reply line by line is
cut off after ``timeout``, not after ``timeout`` per line. The worker puts a
hard deadline over a whole attempt (``asyncio.timeout``); a cancelled send
closes its connection.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from typing import cast

import aiosmtplib

from keys.errors import Error, TemporaryError


@dataclass(frozen=True)
class Reply:
    """An SMTP reply: its code and its text (lines joined by newlines)."""

    code: int
    text: str

    def to_json(self) -> dict[str, object]:
        return {"code": self.code, "text": self.text}


@dataclass(frozen=True)
class TLSInfo:
    version: str
    cert_sha256: str | None

    def to_json(self) -> dict[str, object]:
        return {"version": self.version, "cert_sha256": self.cert_sha256}


@dataclass(frozen=True)
class Sent:
    """A message the server accepted: its final reply and the TLS used, if any."""

    reply: Reply
    tls: TLSInfo | None


class SMTPRejected(Error):
    """The server answered a command with a 4xx or 5xx reply, or the message cannot be
    sent to it as it is (``stage`` names the extension: SIZE, SMTPUTF8, 8BITMIME, DATA)."""

    def __init__(self, stage: str, reply: Reply, tls: TLSInfo | None) -> None:
        super().__init__(f"{stage}: {reply.code} {reply.text}")
        self.stage, self.reply, self.tls = stage, reply, tls

    @property
    def permanent(self) -> bool:
        return self.reply.code >= 500


class SMTPConnectionError(TemporaryError):
    """The server could not be reached or the connection broke."""


@functools.cache
def client_context() -> ssl.SSLContext:
    """Opportunistic TLS: encrypt, record the certificate, do not verify it."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    return ctx


_BROKEN = (
    aiosmtplib.SMTPServerDisconnected,
    aiosmtplib.SMTPTimeoutError,
    aiosmtplib.SMTPConnectError,
    OSError,
    TimeoutError,
    ssl.SSLError,
    UnicodeError,
)


class _Conn:
    """One open session: the aiosmtplib client and the TLS it negotiated."""

    def __init__(self, client: aiosmtplib.SMTP, tls: TLSInfo | None) -> None:
        self.client, self.tls = client, tls

    def offers(self, extension: str) -> bool:
        return self.client.supports_extension(extension)

    def size_limit(self) -> int:
        """The peer's SIZE (RFC 1870 §4), 0 when it states none."""
        value = self.client.esmtp_extensions.get("size", "").strip()
        return int(value) if value.isdigit() else 0

    async def command(self, stage: str, *args: bytes, ok: tuple[int, ...] = (250,)) -> Reply:
        r = await self.client.execute_command(*args)
        reply = _reply(r)
        if reply.code not in ok:
            raise SMTPRejected(stage, reply, self.tls)
        return reply


def _reply(r: aiosmtplib.SMTPResponse) -> Reply:
    if r.code < 200:  # aiosmtplib's code for a malformed reply line
        raise SMTPConnectionError(f"malformed reply: {r.message[:80]!r}")
    return Reply(r.code, r.message)


def _rejected(stage: str, e: aiosmtplib.SMTPResponseException, tls: TLSInfo | None) -> Error:
    if e.code < 200:
        return SMTPConnectionError(f"malformed reply: {e.message[:80]!r}")
    return SMTPRejected(stage, Reply(e.code, e.message), tls)


@dataclass
class _Session:
    conn: _Conn
    last_used: float


class Pool:
    """Open SMTP sessions kept for reuse per (host, port): one transaction after another
    on the same connection (RSET-free: each transaction ends with the DATA reply)."""

    def __init__(self, *, max_idle: int = 64, idle_seconds: float = 20.0) -> None:
        self.max_idle, self.idle_seconds = max_idle, idle_seconds
        self._idle: dict[tuple[str, int], list[_Session]] = {}

    async def close(self) -> None:
        for sessions in self._idle.values():
            for sess in sessions:
                await _close(sess.conn, quit_first=True)
        self._idle.clear()

    async def send(
        self,
        host: str,
        port: int,
        *,
        mail_from: str,
        recipient: str,
        data: bytes,
        prefix: bytes = b"",
        helo: str,
        timeout: float = 60.0,
        starttls: bool = True,
    ) -> Sent:
        """Like :func:`send`, over a kept session when there is one."""
        parts = (prefix, data) if prefix else (data,)
        loop = asyncio.get_running_loop()
        idle = self._idle.setdefault((host, port), [])
        while idle:
            sess = idle.pop()
            if loop.time() - sess.last_used > self.idle_seconds or (
                not sess.conn.client.is_connected
            ):
                await _close(sess.conn, quit_first=True)
                continue
            try:
                sent = await _transaction(sess.conn, mail_from, recipient, parts)
            except (SMTPConnectionError, SMTPRejected) as e:
                if isinstance(e, SMTPRejected) and e.stage not in ("MAIL", "RCPT", "DATA"):
                    self._keep(host, port, sess.conn)  # refused here, the session is fine
                    raise
                await _close(sess.conn, quit_first=False)
                if isinstance(e, SMTPRejected) and e.stage != "MAIL":
                    raise
                continue  # a stale session: the server closed it; open a new one
            except BaseException:  # cancelled mid-transaction: the session is unusable
                await _close(sess.conn, quit_first=False)
                raise
            self._keep(host, port, sess.conn)
            return sent
        conn = await _open(host, port, helo, timeout, starttls)
        try:
            sent = await _transaction(conn, mail_from, recipient, parts)
        except BaseException:
            await _close(conn, quit_first=False)
            raise
        self._keep(host, port, conn)
        return sent

    def _keep(self, host: str, port: int, conn: _Conn) -> None:
        idle = self._idle.setdefault((host, port), [])
        if len(idle) < self.max_idle:
            idle.append(_Session(conn, asyncio.get_running_loop().time()))
        else:
            asyncio.get_running_loop().create_task(_close(conn, quit_first=True))


async def _open(host: str, port: int, helo: str, timeout: float, starttls: bool) -> _Conn:
    """Connect, read the greeting, EHLO, and STARTTLS (then EHLO again) when offered."""
    try:
        client = aiosmtplib.SMTP(
            hostname=host,
            port=port,
            local_hostname=helo,
            timeout=timeout,
            use_tls=False,
            start_tls=False,
        )
    except ValueError as e:
        raise SMTPConnectionError(f"{host}:{port}: {e}") from None
    conn = _Conn(client, None)
    try:
        await client.connect()
    except aiosmtplib.SMTPConnectResponseError as e:
        client.close()
        raise _rejected("connect", e, None) from None
    except _BROKEN as e:
        client.close()
        raise SMTPConnectionError(f"cannot connect to {host}:{port}: {e}") from None
    except BaseException:  # cancelled (the attempt's deadline): no half-open connection
        client.close()
        raise
    try:
        await _ehlo(conn, helo)
        if starttls and conn.offers("starttls"):
            await client.starttls(tls_context=client_context(), server_hostname=None)
            ssl_object = client.get_transport_info("ssl_object")
            der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
            conn.tls = TLSInfo(
                (ssl_object.version() if ssl_object is not None else None) or "unknown",
                hashlib.sha256(der).hexdigest() if der else None,
            )
            await _ehlo(conn, helo)
    except aiosmtplib.SMTPResponseException as e:
        await _close(conn, quit_first=False)
        raise _rejected("STARTTLS", e, conn.tls) from None
    except _BROKEN as e:
        await _close(conn, quit_first=False)
        raise SMTPConnectionError(f"{host}:{port}: {e.__class__.__name__}: {e}") from None
    except BaseException:
        await _close(conn, quit_first=False)
        raise
    return conn


async def _ehlo(conn: _Conn, helo: str) -> None:
    try:
        await conn.client.ehlo(hostname=helo)
    except aiosmtplib.SMTPHeloError as e:
        raise _rejected("EHLO", e, conn.tls) from None


def _bare(part: bytes) -> bool:
    crlf = part.count(b"\r\n")
    return part.count(b"\n") != crlf or part.count(b"\r") != crlf


def _check(conn: _Conn, mail_from: str, recipient: str, parts: tuple[bytes, ...]) -> list[str]:
    """The MAIL parameters for the message ``parts`` (header lines to prepend, then the
    submitted bytes); raise SMTPRejected when the peer cannot take it."""
    size = sum(len(p) for p in parts)
    if any(_bare(p) for p in parts):
        raise SMTPRejected(
            "DATA",
            Reply(
                554, "5.6.0 the message has a bare CR or LF: it cannot travel unchanged over SMTP"
            ),
            conn.tls,
        )
    params: list[str] = []
    if conn.offers("size"):
        limit = conn.size_limit()
        if limit and size > limit:
            raise SMTPRejected(
                "SIZE",
                Reply(
                    552,
                    f"5.3.4 the message ({size} bytes) is larger than the server's SIZE {limit}",
                ),
                conn.tls,
            )
        params.append(f"SIZE={size}")
    data = parts[-1]
    header_end = data.find(b"\r\n\r\n")
    header = b"".join(parts[:-1]) + (data if header_end < 0 else data[:header_end])
    utf8 = not (mail_from.isascii() and recipient.isascii() and header.isascii())
    if utf8:
        if not conn.offers("smtputf8"):
            what = "addresses" if header.isascii() else "header fields"
            raise SMTPRejected(
                "SMTPUTF8",
                Reply(
                    550,
                    f"5.6.7 the message has UTF-8 {what} and the server does not offer SMTPUTF8",
                ),
                conn.tls,
            )
        params.append("SMTPUTF8")
    if not all(p.isascii() for p in parts):
        if not conn.offers("8bitmime"):
            raise SMTPRejected(
                "8BITMIME",
                Reply(
                    554,
                    "5.6.3 the message has 8-bit content and the server does not offer 8BITMIME",
                ),
                conn.tls,
            )
        params.append("BODY=8BITMIME")
    return params


async def _transaction(
    conn: _Conn, mail_from: str, recipient: str, parts: tuple[bytes, ...]
) -> Sent:
    params = _check(conn, mail_from, recipient, parts)
    try:
        await conn.command(
            "MAIL",
            b"MAIL",
            b"FROM:<" + mail_from.encode("utf-8") + b">",
            *(p.encode("ascii") for p in params),
        )
        try:
            await conn.command(
                "RCPT", b"RCPT", b"TO:<" + recipient.encode("utf-8") + b">", ok=(250, 251)
            )
            response = await _data(conn, parts)
        except (SMTPRejected, aiosmtplib.SMTPResponseException):
            await _rset(conn)
            raise
    except aiosmtplib.SMTPResponseException as e:
        raise _rejected("DATA", e, conn.tls) from None
    except _BROKEN as e:
        raise SMTPConnectionError(f"{e.__class__.__name__}: {e}") from None
    final = _reply(response)
    if final.code != 250:
        raise SMTPRejected("DATA", final, conn.tls)
    return Sent(final, conn.tls)


CHUNK = 1024 * 1024
#: Above this the transport's write buffer pauses the writer until it has drained.
WRITE_HIGH_WATER = 256 * 1024


def stuffed_chunks(part: bytes, chunk: int = CHUNK) -> Iterator[bytes]:
    """``part`` (starting at a line start) dot-stuffed (RFC 5321 §4.5.2), chunk by chunk."""
    n, start = len(part), 0
    while start < n:
        end = min(start + chunk, n)
        if end < n:
            cut = part.rfind(b"\n", start, end)
            if cut >= start:
                end = cut + 1
        if start and part[start - 1 : start] != b"\n" and part[start : start + 1] == b".":
            yield b"."  # not a line start (a line longer than a chunk): no stuffing
            start += 1
            continue
        piece = part[start:end].replace(b"\n.", b"\n..")  # bytes.replace: no regex per line
        yield b"." + piece if part[start : start + 1] == b"." else piece
        start = end


async def _data(conn: _Conn, parts: tuple[bytes, ...]) -> aiosmtplib.SMTPResponse:
    """DATA: the parts dot-stuffed, then ``<CRLF>.<CRLF>``; the reply to the final dot."""
    r = await conn.client.execute_command(b"DATA")
    if r.code != 354:
        raise aiosmtplib.SMTPDataError(r.code, r.message)
    proto = conn.client.protocol
    if proto is None:
        raise aiosmtplib.SMTPServerDisconnected("Connection lost")
    end = b".\r\n" if not parts or parts[-1].endswith(b"\r\n") else b"\r\n.\r\n"
    if sum(len(p) for p in parts) <= CHUNK:  # small: one write (one segment) is cheaper
        proto.write(b"".join(b"".join(stuffed_chunks(p)) for p in parts) + end)
        return await proto.read_response(timeout=conn.client.timeout)
    transport = cast("asyncio.WriteTransport | None", proto.transport)
    if transport is None:
        raise aiosmtplib.SMTPServerDisconnected("Connection lost")
    # Above the high-water mark the transport pauses the protocol (pause_writing) and
    # resumes it once drained: wait for that, never poll the buffer's size.
    transport.set_write_buffer_limits(high=WRITE_HIGH_WATER)
    for part in parts:
        for piece in stuffed_chunks(part):
            proto.write(piece)
            try:
                await proto._drain_helper()  # aiosmtplib's FlowControlMixin (as stdlib's)
            except ConnectionResetError:
                raise aiosmtplib.SMTPServerDisconnected("Connection lost") from None
    proto.write(end)  # and read the reply at once (nothing else runs in between)
    return await proto.read_response(timeout=conn.client.timeout)


async def _rset(conn: _Conn) -> None:
    """End a refused transaction (best effort: a broken session is closed by the caller)."""
    try:
        await conn.client.rset()
    except (aiosmtplib.SMTPException, *_BROKEN):
        pass


async def _close(conn: _Conn, *, quit_first: bool) -> None:
    client = conn.client
    if quit_first and client.is_connected:
        try:
            await client.quit(timeout=2.0)
        except (aiosmtplib.SMTPException, OSError, TimeoutError, ssl.SSLError):
            pass
    client.close()


async def send(
    host: str,
    port: int,
    *,
    mail_from: str,
    recipient: str,
    data: bytes,
    prefix: bytes = b"",
    helo: str,
    timeout: float = 60.0,
    starttls: bool = True,
) -> Sent:
    """Deliver ``prefix`` (header lines) and ``data`` to ``recipient`` via ``host:port``
    on a new connection.

    Raises SMTPRejected (4xx/5xx) or SMTPConnectionError.
    """
    parts = (prefix, data) if prefix else (data,)
    conn = await _open(host, port, helo, timeout, starttls)
    try:
        return await _transaction(conn, mail_from, recipient, parts)
    finally:
        await _close(conn, quit_first=True)
