"""The outbox: the delivery state machine of a stored message (docs/send-open.md).

Every message is first stored in the ledger (:mod:`certmail.ledger`); each step
after that is recorded durably before the next one starts, so a crash or a
transient failure leaves the message queued and ``certmail outbox flush``
resumes where it stopped, never resending what was sent.

Direct mode (``via == "smtp"``): submit over SMTP to the user's own server
(:func:`certmail.smtp.send_file`), then notarize the hash (``POST
/v1/notarize``). Relay mode (``via == "relay"``): submit the exact bytes
through the notary's relay (:func:`certmail.relay_client.submit`), then keep
the relay's SubmissionAcceptance receipt. A submission whose outcome is
unknown (``uncertain``) is settled by the notary's log in relay mode, and
resent only when asked (``include_uncertain``) in either mode.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from keys.errors import ConflictError, Error, TemporaryError, VerificationError

from .errors import NotaryRequestError, QueuedError
from .notary_client import TOKEN_HINT
from .results import FlushItem, SendResult
from .smtp import UncertainDeliveryError, parse_smtp_url, send_file
from .smtpdata import chunks
from .timeline import statement_of

if TYPE_CHECKING:
    from pathlib import Path

    from .compose import Progress
    from .config import Settings
    from .ledger import Entry, Ledger
    from .notary_client import NotaryClient
    from .relay_client import RelayEndpoint

__all__ = ["Outbox"]

_RETRYABLE = ("pending", "uncertain", "sending")


class Outbox:
    """The outbox of one certmail home: its ledger, its notary and the way out.

    ``ledger`` and ``notary`` are called when first needed (the notary may be
    unconfigured for a message sent without notarization).
    """

    def __init__(
        self, settings: Settings, ledger: Callable[[], Ledger], notary: Callable[[], NotaryClient]
    ) -> None:
        self.settings = settings
        self._ledger = ledger
        self._notary = notary
        self._relay: RelayEndpoint | None = None

    @property
    def ledger(self) -> Ledger:
        return self._ledger()

    def notary(self) -> NotaryClient:
        return self._notary()

    # -- choosing the way ------------------------------------------------------------

    def choose_via(self, via: str | None, notarize: bool, warnings: list[str]) -> str:
        """``via``, else the configured one, else ``relay`` whenever a notary is configured.

        A notary that runs no relay makes the default fall back to direct mode
        (with a warning) when an SMTP server is configured.
        """
        from .relay_client import NoRelayError

        s = self.settings
        chosen = via or s.via
        explicit = chosen is not None
        if chosen is None:
            chosen = "relay" if s.notary_url and notarize else "smtp"
        if chosen not in ("smtp", "relay"):
            raise Error(f"unknown --via {chosen!r}", hint="use --via relay or --via smtp")
        if chosen == "smtp":
            return chosen
        self._check_relay_settings(notarize)
        try:
            self.relay_endpoint()
        except NoRelayError as e:
            if explicit or not s.smtp_url:
                raise
            warnings.append(f"{e.message}: sending directly through CERTMAIL_SMTP_URL")
            return "smtp"
        except TemporaryError:
            pass  # the notary is unreachable: the message is queued for the relay
        return chosen

    def _check_relay_settings(self, notarize: bool) -> None:
        s = self.settings
        if not s.notary_url:
            raise Error(
                "relay mode (--via relay) needs a notary, and none is configured",
                hint="set CERTMAIL_NOTARY_URL and CERTMAIL_NOTARY_TOKEN, or send with --via smtp",
            )
        if not notarize:
            raise Error(
                "--no-notarize does not go with --via relay: the relay logs every "
                "message it accepts",
                hint="certmail send --via smtp --no-notarize ...",
            )
        if not s.notary_token:
            raise Error("relay mode needs your account's token at the notary", hint=TOKEN_HINT)

    def relay_endpoint(self) -> RelayEndpoint:
        """Where the notary's relay listens and its certificate (remembered per instance)."""
        if self._relay is None:
            from .relay_client import relay_endpoint

            client = self.notary()
            self._relay = relay_endpoint(client.url, http=client.http)
        return self._relay

    # -- running the steps -------------------------------------------------------------

    def deliver(
        self,
        entry: Entry,
        *,
        result: SendResult | None = None,
        progress: Progress | None = None,
        include_uncertain: bool = False,
        receipt: bool = True,
    ) -> Entry:
        """Run the pending steps of one ledger entry; update ``result`` when given.

        A transient failure with a ``result`` raises QueuedError (the message
        stays queued); without one, the TemporaryError itself. ``receipt`` False:
        stop after the hand-over, its notarization left ``pending`` for the caller
        to do for many messages at once (``campaign send``,
        :mod:`certmail.campaign.receipts`).
        """
        if entry.via == "relay":
            return self.deliver_relay(
                entry, result=result, include_uncertain=include_uncertain, receipt=receipt
            )
        return self.deliver_smtp(
            entry,
            target_url=self.settings.smtp_url or "",
            result=result,
            progress=progress,
            include_uncertain=include_uncertain,
            receipt=receipt,
        )

    def deliver_smtp(
        self,
        entry: Entry,
        *,
        target_url: str,
        result: SendResult | None = None,
        progress: Progress | None = None,
        include_uncertain: bool = False,
        receipt: bool = True,
    ) -> Entry:
        """Direct mode: send over SMTP, then notarize the hash; each step recorded durably."""
        if entry.smtp in _RETRYABLE:
            self._send_smtp(entry, target_url, result, progress, include_uncertain)
        entry = self.ledger.get(entry.sha256)
        if entry.notary == "pending" and receipt:
            self._notarize(entry, result)
        return self._finish(entry.sha256, result)

    def _claim(self, entry: Entry, include_uncertain: bool, busy: str) -> None:
        if not self.ledger.claim_send(entry.sha256, include_uncertain=include_uncertain):
            raise ConflictError(busy, hint="certmail outbox list")

    def _send_smtp(
        self,
        entry: Entry,
        target_url: str,
        res: SendResult | None,
        progress: Progress | None,
        include_uncertain: bool,
    ) -> None:
        ledger, sha = self.ledger, entry.sha256
        self._claim(
            entry,
            include_uncertain,
            f"message {sha[:12]} is being sent by another process"
            if entry.smtp == "pending"
            else f"message {sha[:12]} may already have been sent",
        )
        target = parse_smtp_url(target_url)

        def bar(done: int, total: int) -> None:
            if progress is not None:
                progress("smtp", done, total)

        try:
            reply = send_file(
                target, entry.mail_from, entry.recipients, ledger.message_path(sha), progress=bar
            )
        except UncertainDeliveryError as e:
            ledger.mark_send_failed(sha, e.message, permanent=False, uncertain=True)
            raise
        except TemporaryError as e:
            ledger.mark_send_failed(sha, e.message, permanent=False)
            self._queued(
                res, f"{e.message}; the message is queued in the outbox", "certmail outbox flush"
            )
            raise
        except Error as e:
            ledger.mark_send_failed(sha, e.message, permanent=True)
            raise
        ledger.mark_sent(sha, f"{reply.code} {reply.reply}")
        if res is not None:
            res.smtp_reply = f"{reply.code} {reply.reply}"

    def _notarize(self, entry: Entry, res: SendResult | None) -> None:
        ledger, sha = self.ledger, entry.sha256
        try:
            receipt = self.notary().notarize(sha, entry.message_id)
        except TemporaryError as e:
            ledger.mark_notary_failed(sha, e.message, permanent=False)
            self._queued(
                res,
                f"sent, but not yet notarized: {e.message}",
                "certmail outbox flush (only notarizes; it does not resend)",
                status=True,
            )
            raise
        except (NotaryRequestError, VerificationError, Error) as e:
            ledger.mark_notary_failed(sha, e.message, permanent=True)
            raise Error(
                f"sent, but the notary refused to notarize it: {e.message}", hint=e.hint
            ) from None
        ledger.add_receipt(sha, receipt)

    def _queued(
        self, res: SendResult | None, message: str, hint: str, *, status: bool = False
    ) -> None:
        """With a result (a send in progress), raise QueuedError; else let the caller raise."""
        if res is None:
            return
        res.status = self.ledger.get(res.sha256).status if status else "queued"
        raise QueuedError(message, res, hint=hint) from None

    def _finish(self, sha: str, res: SendResult | None) -> Entry:
        entry = self.ledger.get(sha)
        if res is not None:
            res.status = entry.status
            res.receipts = self.ledger.receipts(sha)
            res.path = str(self.ledger.message_path(sha))
        return entry

    # -- relay mode ----------------------------------------------------------------------

    def relay_acceptance(self, entry: Entry) -> dict[str, Any] | None:
        """The notary's verified SubmissionAcceptance receipt for ``entry``, or None."""
        from .notary_client import NotaryNotFoundError

        notary = self.notary()
        try:
            got = notary.receipts(entry.sha256)
        except NotaryNotFoundError:
            return None
        for r in got:
            stmt = statement_of(r)
            if stmt is not None and stmt.get("event") == "SubmissionAcceptance":
                notary.check_receipt(r, entry.sha256, entry.message_id)
                return r
        return None

    def deliver_relay(
        self,
        entry: Entry,
        *,
        result: SendResult | None = None,
        include_uncertain: bool = False,
        receipt: bool = True,
    ) -> Entry:
        """Relay mode: submit the stored bytes through the notary's relay, keep its receipt.

        A submission that may or may not have reached the relay (``uncertain``)
        is settled by the notary's log: an acceptance there means sent, and
        nothing is resubmitted; without one it is resubmitted only with
        ``include_uncertain``.
        """
        sha = entry.sha256
        accepted: dict[str, Any] | None = None
        if entry.smtp in ("uncertain", "sending"):
            accepted = self.relay_acceptance(entry)
            if accepted is not None:
                self.ledger.mark_sent(sha, "250 accepted (its SubmissionAcceptance is in the log)")
                entry = self.ledger.get(sha)
            elif not include_uncertain:
                return entry
        if entry.smtp in _RETRYABLE:
            self._submit_relay(entry, result, include_uncertain)
        entry = self.ledger.get(sha)
        if entry.notary == "pending" and (receipt or accepted is not None):
            self._keep_acceptance(entry, accepted, result)
        return self._finish(sha, result)

    def _stored_path(self, sha: str) -> Path:
        """The stored message file, after checking it still hashes to ``sha`` (read in
        pieces: the relay is sent the file as it is read, never a copy in memory; should
        it change after this, the relay's 250 names another hash: HashMismatchError)."""
        path = self.ledger.message_path(sha)
        digest = hashlib.sha256()
        for chunk in chunks(path):
            digest.update(chunk)
        if digest.hexdigest() != sha:
            self.ledger.mark_send_failed(
                sha, "the stored copy does not hash to its sha256", permanent=True
            )
            raise VerificationError(
                f"the stored copy of message {sha[:12]} has changed; nothing was submitted"
            )
        return path

    def _submit_relay(self, entry: Entry, res: SendResult | None, include_uncertain: bool) -> None:
        from .relay_client import HashMismatchError, NoRelayError, RelayLoginError, submit

        ledger, sha = self.ledger, entry.sha256
        notary_url = self.notary().url
        token = self.settings.notary_token
        if not token:
            raise Error(
                "relay mode needs your account's token at the notary",
                hint="set CERTMAIL_NOTARY_TOKEN, then: certmail outbox flush",
            )
        self._claim(
            entry, include_uncertain, f"message {sha[:12]} is being sent by another process"
        )
        data = self._stored_path(sha)
        try:
            got = submit(
                data,
                mail_from=entry.mail_from,
                recipients=entry.recipients,
                notary_url=notary_url,
                token=token,
                endpoint=self.relay_endpoint(),
            )
        except UncertainDeliveryError as e:
            ledger.mark_send_failed(sha, e.message, permanent=False, uncertain=True)
            raise
        except TemporaryError as e:
            self._relay = None  # ask the notary again where its relay is
            ledger.mark_send_failed(sha, e.message, permanent=False)
            self._queued(
                res,
                f"{e.message}; the message is queued in the outbox",
                "certmail outbox flush (resubmits it through the relay)",
            )
            raise
        except HashMismatchError as e:
            ledger.mark_send_failed(sha, e.message, permanent=True)
            raise
        except (RelayLoginError, NoRelayError, VerificationError) as e:
            # Nothing was sent (refused login, no relay, certificate not the pinned
            # one): the message stays queued until the cause is fixed.
            self._relay = None
            ledger.mark_send_failed(sha, e.message, permanent=False)
            e.hint = f"{e.hint}; then: certmail outbox flush" if e.hint else "certmail outbox flush"
            raise
        except Error as e:
            ledger.mark_send_failed(sha, e.message, permanent=True)
            raise
        reply = f"250 Accepted sha256={got}"
        ledger.mark_sent(sha, reply)
        if res is not None:
            res.smtp_reply = reply

    def _keep_acceptance(
        self, entry: Entry, accepted: dict[str, Any] | None, res: SendResult | None
    ) -> None:
        ledger, sha = self.ledger, entry.sha256
        try:
            receipt = accepted or self.relay_acceptance(entry)
            if receipt is None:
                raise TemporaryError("the notary shows no acceptance receipt for it yet")
        except TemporaryError as e:
            ledger.mark_notary_failed(sha, e.message, permanent=False)
            self._queued(
                res,
                f"accepted by the notary relay, but its receipt is not here yet: {e.message}",
                "certmail outbox flush (fetches the receipt; never resubmits)",
                status=True,
            )
            raise
        except VerificationError as e:
            ledger.mark_notary_failed(sha, e.message, permanent=True)
            raise VerificationError(
                f"accepted by the notary relay, but its receipt does not verify: {e.message}",
                hint=e.hint,
            ) from None
        except Error as e:
            ledger.mark_notary_failed(sha, e.message, permanent=True)
            raise Error(
                f"accepted by the notary relay, but its receipt could not be fetched: {e.message}",
                hint=e.hint,
            ) from None
        ledger.add_receipt(sha, receipt)

    # -- flush ---------------------------------------------------------------------------

    def flush(self, *, include_uncertain: bool = False) -> list[FlushItem]:
        """Retry every outbox message: send what is queued, notarize what was sent.

        Messages whose delivery is uncertain are left alone unless
        ``include_uncertain`` (they may reach the recipient twice).
        """
        sent = [self._flush_one(e, include_uncertain) for e in self.ledger.outbox()]
        return sent + self.flush_acks()

    def flush_acks(self) -> list[FlushItem]:
        """Post every queued acknowledgement of receipt (``open --ack`` while the notary was down).

        Posting one twice is harmless: the notary answers an acknowledgement it
        already logged with its existing receipt.
        """
        from .ack import post_body

        ledger, out = self.ledger, []
        for a in ledger.pending_acks():
            try:
                receipt = post_body(a.notary, a.body)
            except TemporaryError as e:
                ledger.mark_ack_failed(a.id, e.message, permanent=False)
                out.append(FlushItem(a.sha256, a.message_id, "ack queued", e.message, e.exit_code))
                continue
            except Error as e:
                ledger.mark_ack_failed(a.id, e.message, permanent=True)
                out.append(FlushItem(a.sha256, a.message_id, "ack failed", e.message, e.exit_code))
                continue
            ledger.mark_ack_sent(a.id, receipt)
            out.append(FlushItem(a.sha256, a.message_id, "ack sent"))
        return out

    def _flush_one(self, entry: Entry, include_uncertain: bool) -> FlushItem:
        relay = entry.via == "relay"  # the notary's log tells whether it was accepted
        if not relay and entry.status == "uncertain" and not include_uncertain:
            return FlushItem(
                entry.sha256, entry.message_id, "uncertain", "delivery uncertain: not resent", 0
            )
        try:
            done = self.deliver(entry, include_uncertain=include_uncertain)
        except Error as e:
            status = self.ledger.get(entry.sha256).status
            return FlushItem(entry.sha256, entry.message_id, status, e.message, e.exit_code)
        error = done.last_error if relay and done.status == "uncertain" else None
        return FlushItem(done.sha256, done.message_id, done.status, error)
