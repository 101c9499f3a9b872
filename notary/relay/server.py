"""The submission server: an aiosmtpd handler in front of the notary (RFC 6409 style).

EHLO offers SIZE, 8BITMIME, SMTPUTF8, STARTTLS, AUTH (after STARTTLS) and
PIPELINING (RFC 2920). Rules (docs/relay.md): every command but EHLO/HELO/NOOP/QUIT/STARTTLS needs
STARTTLS first (530); AUTH PLAIN or LOGIN only over TLS (538 otherwise), with
the account's address as user name and its API token as password (535 when
wrong; throttled per peer, :mod:`notary.relay.session`); MAIL FROM must be one
of the account's addresses (553). Envelope recipients not named in To:/Cc:
are blind copies, each delivered (and evidenced) on its own.

On DATA (:mod:`notary.relay.content`): refuse a bare CR or LF (550 5.5.2),
read the header section strictly (554 5.6.0 where it is ambiguous) and
check every originator field against the account (550 5.7.1); hash the exact
bytes, scan with ClamAV all but real ciphertext (infected: VirusDetected
evidence and 554), spool them durably (held), log SubmissionAcceptance with
an RFC 3161 token, queue them, and only then answer
``250 2.0.0 accepted sha256=<hex>``. A failure before that answers 451 and
leaves nothing behind.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from aiosmtpd.smtp import AuthResult, LoginPassword

from keys.errors import TemporaryError
from notary.relay.content import (
    MessageInfo,
    RelayRefusal,
    check_sender,
    inspect_header,
    locate_ciphertext,
    scan_input,
)
from notary.relay.incoming import Incoming
from notary.relay.session import RelaySMTP
from notary.sequencer import Submission
from notary.storage import Account, SpoolItem

if TYPE_CHECKING:
    from notary.relay.runtime import Relay

log = logging.getLogger("certmail.notary.relay")

MAX_RECIPIENTS = 1000
SEQUENCER_TIMEOUT = 120.0
#: Messages up to this size stay in memory for their first delivery attempts.
CACHE_BYTES = 1024 * 1024


class Authenticator:
    """aiosmtpd authenticator: user name = an address of the account, password = its token."""

    def __init__(self, relay: Relay) -> None:
        self.relay = relay

    def __call__(
        self, server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any
    ) -> AuthResult:
        if not isinstance(auth_data, LoginPassword):
            return AuthResult(success=False, handled=False)
        try:
            user = auth_data.login.decode("utf-8").strip().lower()
            token = auth_data.password.decode("utf-8")
        except UnicodeDecodeError:
            return AuthResult(success=False, handled=False)
        try:
            account = self.relay.service.authenticate(token)
        except Exception as e:  # the database is unreachable: say so, temporarily
            log.error("authentication lookup failed: %s", e)
            return AuthResult(
                success=False, handled=False, message="454 4.7.0 Temporary authentication failure"
            )
        if account is None or user not in account.addresses:
            return AuthResult(success=False, handled=False)
        return AuthResult(success=True, auth_data=account)


class SubmissionHandler:
    """The aiosmtpd handler (see the module docstring)."""

    def __init__(self, relay: Relay) -> None:
        self.relay = relay

    async def handle_EHLO(
        self, server: Any, session: Any, envelope: Any, hostname: str, responses: list[str]
    ) -> list[str]:
        """Also advertise PIPELINING (RFC 2920): the relay reads commands and DATA in
        order from one stream, so a client may send MAIL, RCPT and DATA (and the next
        transaction after the final dot) without waiting for each reply."""
        session.host_name = hostname
        return [*responses[:-1], "250-PIPELINING", responses[-1]]

    async def handle_MAIL(
        self, server: Any, session: Any, envelope: Any, address: str, mail_options: list[str]
    ) -> str:
        account = session.auth_data
        if not isinstance(account, Account):
            return "530 5.7.0 Authentication required"
        if address.lower() not in account.addresses:
            return f"553 5.7.1 <{address}>: sender address is not an address of this account"
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 2.1.0 OK"

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: list[str]
    ) -> str:
        local, at, domain = address.rpartition("@")
        if not at or not local or not domain or len(address) > 254:
            return f"553 5.1.3 <{address}>: not a valid recipient address"
        if len(envelope.rcpt_tos) >= MAX_RECIPIENTS:
            return "452 4.5.3 Too many recipients"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if isinstance(server, RelaySMTP):
            server.suspend_deadline()  # the message is in; what follows is the relay's time
        account = session.auth_data
        if not isinstance(account, Account):
            return "530 5.7.0 Authentication required"
        try:
            return await self.relay.accept(
                account, envelope.mail_from, list(envelope.rcpt_tos), envelope.incoming
            )
        except RelayRefusal as r:
            return r.reply
        except Exception:
            log.exception("submission failed")
            return "451 4.3.0 Internal error; nothing was stored, try again later"


@dataclass(frozen=True)
class _Submission:
    """One submission being accepted: who, to whom, what."""

    account: Account
    mail_from: str
    #: Envelope recipients named in To:/Cc:, and the blind copies (the others).
    named: tuple[str, ...]
    blind: tuple[str, ...]
    incoming: Incoming
    info: MessageInfo

    @property
    def recipients(self) -> tuple[str, ...]:
        return self.named + self.blind


def _received(incoming: Incoming) -> None:
    """Refuse what the DATA reader saw on the way: bare CR or LF, NUL (SMTP smuggling)."""
    if incoming.bare:
        raise RelayRefusal(f"550 5.5.2 Error: bare <{incoming.bare}> received")
    if incoming.nul:
        raise RelayRefusal("550 5.6.0 Error: NUL in message data")


async def accept(
    relay: Relay, account: Account, mail_from: str, rcpt_tos: list[str], incoming: Incoming
) -> str:
    """Accept one submission (see the module docstring); the SMTP reply to give."""
    _received(incoming)
    info = inspect_header(incoming.head)  # before the body is read back
    check_sender(info, frozenset(account.addresses))
    named = tuple(r for r in rcpt_tos if r.lower() in info.recipients)
    blind = tuple(r for r in rcpt_tos if r.lower() not in info.recipients)
    sub = _Submission(account, mail_from, named, blind, incoming, info)
    async with relay.budget.hold(incoming.size):
        data = await asyncio.to_thread(incoming.read)
        sub = replace(sub, info=locate_ciphertext(info, data))
        content = await _scan(relay, sub, data)
        spool_id = await _spool(relay, sub, data)
        if incoming.size <= CACHE_BYTES:
            relay.worker.cache(spool_id, data, len(rcpt_tos))
        del data
    relay.in_flight.add(spool_id)
    try:
        await _log_acceptance(relay, sub, spool_id, content)
        # Accepted and durable (spooled, acceptance logged): the release rides
        # with the next queue batch; if it never commits, recovery queues it.
        relay.writer.release_soon(spool_id)
    finally:
        relay.in_flight.discard(spool_id)
    relay.worker.wake()
    return f"250 2.0.0 Accepted sha256={incoming.sha256}"


async def _scan(relay: Relay, sub: _Submission, data: bytes) -> dict[str, Any]:
    """Scan all but real ciphertext; the evidence's ``content`` member. Infected: refuse."""
    if sub.info.encrypted:
        content: dict[str, Any] = {"encrypted": True}
    else:
        content = {"encrypted": False, "scan": None}
    if relay.scanner is None:
        return content
    try:
        verdict = await asyncio.to_thread(relay.scanner.scan_bytes, scan_input(data, sub.info))
    except TemporaryError as e:
        log.error("virus scan failed: %s", e.message)
        raise RelayRefusal("451 4.7.0 The virus scanner is unavailable; try again later") from None
    if not verdict.clean:
        extra = {
            "submitter": sub.mail_from,
            "channel": "smtp",
            "recipients": list(sub.named),  # never a blind copy (docs/relay.md)
            "size": sub.incoming.size,
            "signature": verdict.signature,
            "engine": verdict.engine,
        }
        await relay.service.sequencer.submit(
            [
                Submission(
                    "VirusDetected",
                    sub.incoming.sha256,
                    sub.info.message_id,
                    sub.account.id,
                    extra,
                )
            ]
        )
        raise RelayRefusal(f"554 5.7.1 Message refused: virus found ({verdict.signature})")
    if sub.info.encrypted:
        return content
    return {"encrypted": False, "scan": {"result": "clean", "engine": verdict.engine}}


async def _spool(relay: Relay, sub: _Submission, data: bytes) -> int:
    """Spool the bytes and one held delivery per recipient, durably; the spool id."""
    item = SpoolItem(
        sub.incoming.sha256,
        sub.info.message_id,
        sub.account.id,
        sub.mail_from,
        sub.recipients,
        data,
        relay.service.clock(),
        relay.node,
        relay.log_size_hint(),
    )
    try:
        return await relay.writer.spool(item)
    except Exception as e:
        log.error("cannot spool %s: %s", sub.incoming.sha256, e)
        raise RelayRefusal("451 4.3.0 Cannot store the message now; try again later") from None


def acceptances(sub: _Submission, content: dict[str, Any]) -> list[Submission]:
    """The SubmissionAcceptance statements (docs/relay.md, "Blind copies").

    One names the recipients in To:/Cc:; each blind copy gets its own, naming
    only it (``"blind": true``), so no statement shows a blind copy to anyone else.
    """

    def one(recipients: tuple[str, ...], blind: bool) -> Submission:
        extra: dict[str, Any] = {
            "submitter": sub.mail_from,
            "channel": "smtp",
            "recipients": list(recipients),
            "size": sub.incoming.size,
            "content": content,
        }
        if blind:
            extra["blind"] = True
        return Submission(
            "SubmissionAcceptance",
            sub.incoming.sha256,
            sub.info.message_id,
            sub.account.id,
            extra,
            timestamp=True,
        )

    return [one(sub.named, False), *(one((r,), True) for r in sub.blind)]


async def _log_acceptance(
    relay: Relay, sub: _Submission, spool_id: int, content: dict[str, Any]
) -> None:
    """Log the acceptance statements (one sequencer batch); undo the spool when that fails."""
    try:
        await asyncio.wait_for(
            relay.service.sequencer.submit(acceptances(sub, content)), SEQUENCER_TIMEOUT
        )
    except Exception as e:
        log.error("cannot log the acceptance of %s: %s", sub.incoming.sha256, e)
        relay.worker.uncache(spool_id)
        try:
            await relay.writer.discard(spool_id)
        except Exception as e2:  # recovery discards it later (no acceptance in the log)
            log.error("cannot discard spooled message %d: %s", spool_id, e2)
        raise RelayRefusal("451 4.3.0 The log cannot take entries now; try again later") from None
