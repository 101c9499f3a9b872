"""Submitting exact bytes over SMTP: the one client submitter of certmail.

RFC 5321 (SMTP), RFC 3207 (STARTTLS), RFC 8314 (implicit TLS), RFC 4954
(AUTH), RFC 1870 (SIZE), RFC 6531 (SMTPUTF8 for UTF-8 addresses).

Both ways certmail sends use it: direct sending to the user's server or
smarthost (:func:`certmail.smtp.send_file`) and AUTH submission to the
notary's relay (:func:`certmail.relay_client.submit`). A :class:`Peer` says
where to connect and whom to trust: the system's CAs (or ``ca_file``), or a
certificate pin (the SHA-256 of the server's certificate, checked right after
the TLS handshake, before EHLO and any credential). Opening the session
(connection, EHLO, STARTTLS, AUTH) is :mod:`certmail.smtpsession`'s; this module
holds the mail transactions over it (RFC 5321 §3.3) and the sessions kept
between messages; :class:`Peer` and the errors are importable from here.

The message is streamed from its file (or bytes) to the DATA command in 1 MiB
chunks with dot-stuffing (RFC 5321 §4.5.2): it is never parsed or
re-serialised, so the recipient gets the bytes that were signed and hashed,
and a 100 MB file costs no more than a few MiB of memory. (aiosmtplib, which
the relay's delivery client uses, needs the whole message in memory: 614 MiB
peak RSS for 100 MB against 28 MiB streamed, measured on loopback; so this
module stays on the standard library's smtplib.) The transaction is
all-or-nothing: if any recipient is refused, RSET is sent before DATA.

When the server offers PIPELINING (RFC 2920; the notary's relay does), the
envelope goes in one write: MAIL, every RCPT and DATA (after NOOP on a kept
session), and the replies are read after it; the message follows the 354.
Two round trips a message instead of four or five.

One connection per message by default; a process that sends many (a campaign
worker) calls :func:`keep_sessions` and then reuses one session per peer and
login: no TLS handshake and AUTH per message. A kept session is checked with
NOOP before it carries a message; if it was closed (the server's idle timeout,
a restart), a new one is opened and the message goes over it, but never once
the final dot of that message was written (that stays
:class:`UncertainDeliveryError`).

Failures are classified: :class:`keys.errors.TemporaryError` for what a retry
may fix (connection refused, timeouts, 4xx replies), :class:`DeliveryError`
for permanent refusals (5xx), :class:`LoginError` (a :class:`DeliveryError`)
for a refused AUTH, :class:`keys.errors.VerificationError` when the pinned
certificate does not match or a pinned peer offers no TLS (nothing was sent),
:class:`UncertainDeliveryError` when the connection broke after the final dot
and before the reply (the server may or may not have taken the message, so it
is not retried on its own).
"""

from __future__ import annotations

import atexit
import smtplib
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from keys.errors import Error, TemporaryError

from .smtpdata import DotStuffer, chunks
from .smtpdata import dot_stuff as dot_stuff  # importable from here, as smtp.py does
from .smtpsession import (
    DeliveryError,
    LoginError,
    Peer,
    Session,
    failed,
    open_session,
    quit_session,
    reason,
    reply_error,
    reply_text,
)

__all__ = [
    "IDLE_REUSE",
    "DeliveryError",
    "LoginError",
    "Peer",
    "SmtpResult",
    "UncertainDeliveryError",
    "close_sessions",
    "dot_stuff",
    "keep_sessions",
    "submit",
]


class UncertainDeliveryError(TemporaryError):
    """The connection broke after the message was handed over, before the server replied."""


@dataclass(frozen=True)
class SmtpResult:
    """The server's final reply to the message, and the TLS the session used."""

    code: int
    reply: str
    tls: bool
    cert_sha256: str | None = None


def _mail_options(
    peer: Peer, client: smtplib.SMTP, mail_from: str, recipients: Sequence[str], size: int
) -> list[str]:
    """MAIL FROM's parameters (SIZE, SMTPUTF8); raise if the server cannot take the message."""
    opts: list[str] = []
    if client.has_extn("size"):
        limit = client.esmtp_features.get("size", "").strip()
        if limit.isdigit() and 0 < int(limit) < size:
            raise DeliveryError(
                f"the message ({size} bytes) is larger than {peer.name} accepts ({limit} bytes)",
                hint="send smaller attachments, or through another server",
            )
        opts.append(f"SIZE={size}")
    if not all(a.isascii() for a in (mail_from, *recipients)):
        if not client.has_extn("smtputf8"):
            raise DeliveryError(
                f"{peer.name} does not offer SMTPUTF8, needed for the "
                "UTF-8 addresses of this message"
            )
        opts.append("SMTPUTF8")
    return opts


def _envelope(
    peer: Peer, client: smtplib.SMTP, mail_from: str, recipients: Sequence[str], size: int
) -> None:
    """MAIL and RCPT, one command at a time: every recipient accepted, or RSET and raise
    (5xx before 4xx)."""
    opts = _mail_options(peer, client, mail_from, recipients, size)
    code, text = client.mail(mail_from, opts)
    if code != 250:
        client.rset()
        raise reply_error(peer, code, text, f"the sender {mail_from}")
    deferred: Error | None = None
    for rcpt in recipients:
        code, text = client.rcpt(rcpt)
        if code not in (250, 251):
            err = reply_error(peer, code, text, f"the recipient {rcpt}")
            if isinstance(err, DeliveryError):
                client.rset()
                raise err
            deferred = deferred or err
    if deferred is not None:
        client.rset()
        raise deferred


def _pipelined_envelope(
    peer: Peer,
    client: smtplib.SMTP,
    mail_from: str,
    recipients: Sequence[str],
    size: int,
    reused: bool,
) -> None:
    """RFC 2920: (NOOP on a reused session,) MAIL, every RCPT and DATA in one write, then
    their replies in order; return at the 354, ready for the message.

    All-or-nothing as :func:`_envelope`: a refused sender or recipient is raised (the
    sender's first, then 5xx before 4xx). Had the server still answered DATA with 354
    (it need not, with a recipient refused), the connection is closed instead of
    sending the final dot: a transaction cut off before its dot delivers nothing
    (RFC 5321 §4.1.1.4), where a lone dot would deliver an empty message."""
    opts = _mail_options(peer, client, mail_from, recipients, size)
    if "SMTPUTF8" in opts:
        client.command_encoding = "utf-8"  # as smtplib's own mail() does
    params = "".join(" " + o for o in opts)
    lines = [f"mail FROM:{smtplib.quoteaddr(mail_from)}{params}"]
    lines += [f"rcpt TO:{smtplib.quoteaddr(r)}" for r in recipients]
    lines.append("data")
    if reused:
        lines.insert(0, "noop")  # the server's liveness check travels with the rest
    client.send("".join(line + "\r\n" for line in lines))
    replies = [client.getreply() for _ in lines]
    if reused and replies.pop(0)[0] != 250:  # closed or closing while kept
        client.close()
        raise _Stale()
    (mail_code, mail_text), *rcpts, (data_code, data_text) = replies
    err: Error | None = None
    if mail_code != 250:
        err = reply_error(peer, mail_code, mail_text, f"the sender {mail_from}")
    else:
        refused = [
            reply_error(peer, code, text, f"the recipient {rcpt}")
            for rcpt, (code, text) in zip(recipients, rcpts, strict=True)
            if code not in (250, 251)
        ]
        refused.sort(key=lambda e: not isinstance(e, DeliveryError))
        err = refused[0] if refused else None
    if err is None and data_code != 354:
        err = reply_error(peer, data_code, data_text, "DATA")
    if err is None:
        return
    if data_code == 354:
        client.close()  # in DATA with a refused envelope: abort without the dot
    else:
        client.rset()
    raise err


#: Seconds a kept session may have been idle and still be reused (the notary's relay
#: closes an idle session after 60 s by default).
IDLE_REUSE = 30.0
_SessionKey = tuple[Peer, tuple[str, str] | None, str]
_kept: dict[_SessionKey, Session] | None = None


def keep_sessions() -> None:
    """From now on, this process keeps each SMTP session open after a message and
    submits the next message to the same peer and login over it (a campaign worker:
    no TLS handshake and AUTH per message). A kept session that broke or was closed
    is replaced by a new one, unless the message had already been handed over."""
    global _kept
    if _kept is None:
        _kept = {}
        atexit.register(close_sessions)


def close_sessions() -> None:
    """QUIT every kept session (and stop keeping them)."""
    global _kept
    kept, _kept = _kept, None
    for sess in (kept or {}).values():
        quit_session(sess.client)


class _Stale(Exception):
    """A reused session turned out closed before anything of the message was sent."""


def _transaction(
    peer: Peer,
    sess: Session,
    mail_from: str,
    recipients: Sequence[str],
    source: Path | bytes,
    size: int,
    progress: Callable[[int, int], None] | None,
    reused: bool,
) -> SmtpResult:
    """MAIL, RCPT, DATA and the bytes over ``sess``; raise on any failure."""
    client = sess.client
    handed_over = False
    try:
        if client.has_extn("pipelining"):
            _pipelined_envelope(peer, client, mail_from, recipients, size, reused)
        else:
            if reused and client.noop()[0] != 250:  # closed by the server while kept
                raise _Stale()
            _envelope(peer, client, mail_from, recipients, size)
            client.putcmd("data")
            code, text = client.getreply()
            if code != 354:
                client.rset()
                raise reply_error(peer, code, text, "DATA")
        sock = client.sock
        assert sock is not None
        stuffer = DotStuffer()
        done = 0
        pending = b""
        for chunk in chunks(source):
            if pending:
                sock.sendall(pending)
            pending = stuffer.feed(chunk)
            done += len(chunk)
            if progress is not None:
                progress(done, size)
        handed_over = True
        sock.sendall(pending + stuffer.end())  # the last chunk and the dot in one write
        code, text = client.getreply()
        if code != 250:
            raise reply_error(peer, code, text, "the message")
        return SmtpResult(code, reply_text(text), sess.tls, sess.cert)
    except smtplib.SMTPResponseException as e:
        if reused and not handed_over and e.smtp_code == 421:
            raise _Stale() from None
        raise reply_error(peer, e.smtp_code, e.smtp_error, "the connection") from None
    except (OSError, smtplib.SMTPException) as e:
        if handed_over:
            raise UncertainDeliveryError(
                f"the connection to {peer.host} broke after the message was sent, before "
                f"the server confirmed it ({reason(e)})",
                hint=peer.uncertain_hint,
            ) from None
        if reused:
            raise _Stale() from None
        raise failed(peer, e) from None


def submit(
    peer: Peer,
    mail_from: str,
    recipients: Sequence[str],
    source: Path | bytes,
    *,
    login: tuple[str, str] | None = None,
    timeout: float = 60.0,
    local_hostname: str | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> SmtpResult:
    """Submit ``source``'s bytes unchanged to ``recipients``; raise on any failure.

    After :func:`keep_sessions`, the session stays open for the next message."""
    if not recipients:
        raise Error("no recipients")
    size = len(source) if isinstance(source, bytes) else source.stat().st_size
    # smtplib would call socket.getfqdn(), a reverse DNS lookup per connection.
    hostname = local_hostname or socket.gethostname() or "localhost"
    key: _SessionKey = (peer, login, hostname)
    sess = _kept.pop(key, None) if _kept is not None else None
    if sess is not None and time.monotonic() - sess.used > IDLE_REUSE:
        quit_session(sess.client)
        sess = None
    ok = False
    try:
        if sess is not None:
            try:
                result = _transaction(
                    peer, sess, mail_from, recipients, source, size, progress, True
                )
                ok = True
                return result
            except _Stale:
                sess.client.close()
        sess = open_session(peer, login, timeout, hostname)
        result = _transaction(peer, sess, mail_from, recipients, source, size, progress, False)
        ok = True
        return result
    finally:
        if sess is not None:
            if ok and _kept is not None:
                sess.used = time.monotonic()
                _kept[key] = sess
            else:
                quit_session(sess.client)
