"""A small asyncio SMTP client for delivery (RFC 5321, STARTTLS per RFC 3207).

It sends exact bytes (dot-stuffed on the wire, RFC 5321 §4.5.2), uses
STARTTLS whenever the server offers it (opportunistic: the certificate is
recorded, not verified, as for MX delivery without DANE/MTA-STS), and reports
the TLS version and the SHA-256 of the server's certificate.
"""

from __future__ import annotations

import asyncio
import hashlib
import ssl
from dataclasses import dataclass

from keys.errors import Error, TemporaryError

MAX_REPLY_LINES = 100


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
    """The server answered a command with a 4xx or 5xx reply."""

    def __init__(self, stage: str, reply: Reply, tls: TLSInfo | None) -> None:
        super().__init__(f"{stage}: {reply.code} {reply.text}")
        self.stage, self.reply, self.tls = stage, reply, tls

    @property
    def permanent(self) -> bool:
        return self.reply.code >= 500


class SMTPConnectionError(TemporaryError):
    """The server could not be reached or the connection broke."""


def dot_stuff(data: bytes) -> bytes:
    """The DATA payload: leading dots doubled, CRLF at the end, then ``.CRLF``."""
    body = data.replace(b"\r\n.", b"\r\n..")
    if body.startswith(b"."):
        body = b"." + body
    if not body.endswith(b"\r\n"):
        body += b"\r\n"
    return body + b".\r\n"


def client_context() -> ssl.SSLContext:
    """Opportunistic TLS: encrypt, record the certificate, do not verify it."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    return ctx


_CONTEXT: ssl.SSLContext | None = None


class _Conn:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 timeout: float) -> None:
        self.reader, self.writer, self.timeout = reader, writer, timeout
        self.tls: TLSInfo | None = None

    async def reply(self) -> Reply:
        lines: list[str] = []
        code = 0
        while len(lines) < MAX_REPLY_LINES:
            raw = await asyncio.wait_for(self.reader.readline(), self.timeout)
            if not raw.endswith(b"\n"):
                raise SMTPConnectionError("the server closed the connection")
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            if len(line) < 3 or not line[:3].isdigit():
                raise SMTPConnectionError(f"malformed reply line {line[:80]!r}")
            code = int(line[:3])
            lines.append(line[4:])
            if len(line) == 3 or line[3] != "-":
                return Reply(code, "\n".join(lines))
        raise SMTPConnectionError("reply too long")

    async def command(self, stage: str, line: bytes, ok: tuple[int, ...] = (250,)) -> Reply:
        self.writer.write(line + b"\r\n")
        r = await self.reply()
        if r.code not in ok:
            raise SMTPRejected(stage, r, self.tls)
        return r


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

    async def send(self, host: str, port: int, *, mail_from: str, recipient: str, data: bytes,
                   helo: str, timeout: float = 60.0, starttls: bool = True) -> Sent:
        """Like :func:`send`, over a kept session when there is one."""
        loop = asyncio.get_running_loop()
        idle = self._idle.setdefault((host, port), [])
        while idle:
            sess = idle.pop()
            if loop.time() - sess.last_used > self.idle_seconds:
                await _close(sess.conn, quit_first=True)
                continue
            try:
                sent = await _transaction(sess.conn, mail_from, recipient, data)
            except (SMTPConnectionError, OSError, TimeoutError, ssl.SSLError, SMTPRejected) as e:
                await _close(sess.conn, quit_first=False)
                if isinstance(e, SMTPRejected) and e.stage != "MAIL":
                    raise
                continue  # a stale session: the server closed it; open a new one
            self._keep(host, port, sess.conn)
            return sent
        conn = await _open(host, port, helo, timeout, starttls)
        try:
            sent = await _transaction(conn, mail_from, recipient, data)
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
    global _CONTEXT
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(host, port, limit=1 << 16), timeout
        )
    except (OSError, TimeoutError) as e:
        raise SMTPConnectionError(f"cannot connect to {host}:{port}: {e}") from None
    conn = _Conn(reader, writer, timeout)
    try:
        greeting = await conn.reply()
        if greeting.code != 220:
            raise SMTPRejected("connect", greeting, None)
        ehlo = await conn.command("EHLO", b"EHLO " + helo.encode("ascii"))
        exts = {ln.split(" ", 1)[0].upper() for ln in ehlo.text.split("\n")[1:]}
        if starttls and "STARTTLS" in exts:
            await conn.command("STARTTLS", b"STARTTLS", (220,))
            if _CONTEXT is None:
                _CONTEXT = client_context()
            await asyncio.wait_for(writer.start_tls(_CONTEXT, server_hostname=None), timeout)
            sslobj = writer.get_extra_info("ssl_object")
            der = sslobj.getpeercert(binary_form=True) if sslobj is not None else None
            conn.tls = TLSInfo(
                sslobj.version() or "unknown" if sslobj is not None else "unknown",
                hashlib.sha256(der).hexdigest() if der else None,
            )
            await conn.command("EHLO", b"EHLO " + helo.encode("ascii"))
    except (OSError, TimeoutError, ssl.SSLError, UnicodeEncodeError) as e:
        await _close(conn, quit_first=False)
        raise SMTPConnectionError(f"{host}:{port}: {e.__class__.__name__}: {e}") from None
    except BaseException:
        await _close(conn, quit_first=False)
        raise
    return conn


async def _transaction(conn: _Conn, mail_from: str, recipient: str, data: bytes) -> Sent:
    try:
        await conn.command("MAIL", b"MAIL FROM:<" + mail_from.encode("utf-8") + b">")
        try:
            await conn.command("RCPT", b"RCPT TO:<" + recipient.encode("utf-8") + b">",
                               (250, 251))
            await conn.command("DATA", b"DATA", (354,))
        except SMTPRejected:
            conn.writer.write(b"RSET\r\n")
            await conn.reply()
            raise
        conn.writer.write(dot_stuff(data))
        await asyncio.wait_for(conn.writer.drain(), conn.timeout)
        final = await conn.reply()
    except (OSError, TimeoutError, ssl.SSLError, UnicodeEncodeError) as e:
        raise SMTPConnectionError(f"{e.__class__.__name__}: {e}") from None
    if final.code != 250:
        raise SMTPRejected("DATA", final, conn.tls)
    return Sent(final, conn.tls)


async def _close(conn: _Conn, *, quit_first: bool) -> None:
    try:
        if quit_first:
            conn.writer.write(b"QUIT\r\n")
            await asyncio.wait_for(conn.reply(), 2.0)
    except (OSError, TimeoutError, SMTPConnectionError, ssl.SSLError):
        pass
    conn.writer.close()
    try:
        await asyncio.wait_for(conn.writer.wait_closed(), 2.0)
    except (OSError, TimeoutError, ssl.SSLError):
        pass


async def send(
    host: str,
    port: int,
    *,
    mail_from: str,
    recipient: str,
    data: bytes,
    helo: str,
    timeout: float = 60.0,
    starttls: bool = True,
) -> Sent:
    """Deliver ``data`` to ``recipient`` via ``host:port`` on a new connection.

    Raises SMTPRejected (4xx/5xx) or SMTPConnectionError.
    """
    conn = await _open(host, port, helo, timeout, starttls)
    try:
        return await _transaction(conn, mail_from, recipient, data)
    finally:
        await _close(conn, quit_first=True)
