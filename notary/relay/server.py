"""The submission server: an aiosmtpd handler in front of the notary (RFC 6409 style).

Rules (docs/relay.md): every command but EHLO/HELO/NOOP/QUIT/STARTTLS needs
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
import hashlib
import logging
from typing import TYPE_CHECKING, Any

from aiosmtpd.smtp import AuthResult, LoginPassword

from keys.errors import TemporaryError
from notary.relay.content import (
    RelayRefusal,
    check_sender,
    inspect,
    scan_input,
)
from notary.relay.session import RelaySMTP
from notary.sequencer import Submission
from notary.storage import Account, SpoolItem

if TYPE_CHECKING:
    from notary.relay.runtime import Relay

log = logging.getLogger("certmail.notary.relay")

MAX_RECIPIENTS = 1000
SEQUENCER_TIMEOUT = 120.0


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
                account, envelope.mail_from, list(envelope.rcpt_tos), envelope.original_content
            )
        except RelayRefusal as r:
            return r.reply
        except Exception:
            log.exception("submission failed")
            return "451 4.3.0 Internal error; nothing was stored, try again later"


async def accept(
    relay: Relay, account: Account, mail_from: str, rcpt_tos: list[str], data: bytes
) -> str:
    """Accept one submission (see the module docstring); the SMTP reply to give."""
    info = inspect(data)
    own = frozenset(account.addresses)
    check_sender(info, own)
    sha256 = hashlib.sha256(data).hexdigest()
    svc = relay.service
    content: dict[str, Any]
    if relay.scanner is not None:
        try:
            verdict = await asyncio.to_thread(relay.scanner.scan_bytes, scan_input(data, info))
        except TemporaryError as e:
            log.error("virus scan failed: %s", e.message)
            raise RelayRefusal(
                "451 4.7.0 The virus scanner is unavailable; try again later"
            ) from None
        if not verdict.clean:
            await svc.sequencer.submit(
                [
                    Submission(
                        "VirusDetected",
                        sha256,
                        info.message_id,
                        account.id,
                        {
                            "submitter": mail_from,
                            "channel": "smtp",
                            "recipients": rcpt_tos,
                            "size": len(data),
                            "signature": verdict.signature,
                            "engine": verdict.engine,
                        },
                    )
                ]
            )
            raise RelayRefusal(f"554 5.7.1 Message refused: virus found ({verdict.signature})")
        content = {"encrypted": False, "scan": {"result": "clean", "engine": verdict.engine}}
    if info.encrypted:
        content = {"encrypted": True}
    elif relay.scanner is None:
        content = {"encrypted": False, "scan": None}
    received = svc.clock()
    item = SpoolItem(
        sha256,
        info.message_id,
        account.id,
        mail_from,
        tuple(rcpt_tos),
        data,
        received,
        relay.node,
        relay.log_size_hint(),
    )
    try:
        spool_id = await relay.writer.spool(item)
    except Exception as e:
        log.error("cannot spool %s: %s", sha256, e)
        raise RelayRefusal("451 4.3.0 Cannot store the message now; try again later") from None
    relay.in_flight.add(spool_id)
    relay.worker.cache(spool_id, data, len(rcpt_tos))
    try:
        try:
            await asyncio.wait_for(
                svc.sequencer.submit(
                    [
                        Submission(
                            "SubmissionAcceptance",
                            sha256,
                            info.message_id,
                            account.id,
                            {
                                "submitter": mail_from,
                                "channel": "smtp",
                                "recipients": rcpt_tos,
                                "size": len(data),
                                "content": content,
                            },
                            timestamp=True,
                        )
                    ]
                ),
                SEQUENCER_TIMEOUT,
            )
        except Exception as e:
            log.error("cannot log the acceptance of %s: %s", sha256, e)
            relay.worker.uncache(spool_id)
            try:
                await relay.writer.discard(spool_id)
            except Exception as e2:  # recovery discards it later (no acceptance in the log)
                log.error("cannot discard spooled message %d: %s", spool_id, e2)
            raise RelayRefusal(
                "451 4.3.0 The log cannot take entries now; try again later"
            ) from None
        # Accepted and durable (spooled, acceptance logged): the release rides
        # with the next queue batch; if it never commits, recovery queues it.
        relay.writer.release_soon(spool_id)
    finally:
        relay.in_flight.discard(spool_id)
    relay.worker.wake()
    return f"250 2.0.0 Accepted sha256={sha256}"
