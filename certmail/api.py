"""The Python API for scripts: send, open and verify certified mail (docs/python-api.md).

The CLI is a thin layer over this module. Nothing here prints: results carry
``warnings`` for people, and failures raise :class:`keys.errors.Error`
subclasses with a hint and a documented exit code.

>>> from certmail.api import Certmail
>>> with Certmail() as cm:                                  # doctest: +SKIP
...     r = cm.send(to=["bob@example.net"], subject="Contract", body="Signed copy attached.",
...                 attachments=["contract.pdf"])
...     print(r.sha256, r.receipts)
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tempfile
import unicodedata
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from keys.errors import (
    ConflictError,
    Error,
    InfectedError,
    MalformedError,
    NotFoundError,
    TemporaryError,
    VerificationError,
)

from .compose import (
    NOT_SCANNED,
    Headers,
    Progress,
    ScanRecord,
    check_address,
    date_from,
    new_message_id,
    now_date,
)
from .ledger import Entry, Ledger
from .mime import parse_entity
from .notary_client import NotaryClient, NotaryError
from .rfc3156 import signed_parts
from .seal import seal
from .smtp import DeliveryError, UncertainDeliveryError, parse_smtp_url, send_file
from .unseal import Unsealed, check_manifest, check_sender, unseal

if TYPE_CHECKING:  # keeps the imports of the other modules lazy
    from keys.gpg import Keyring, SignatureInfo

    from .config import Settings
    from .relay_client import RelayEndpoint
    from .scan import Scanner

MAX_OPEN_SIZE = 1 << 30
NOTARY_HEADER = "Certmail-Notary"


# ------------------------------------------------------------------ results


@dataclass
class SendResult:
    """One message handed to the SMTP server (and notarized, unless told not to)."""

    sha256: str
    message_id: str
    recipients: list[str]
    receipts: list[dict[str, Any]]
    status: str  # sent | queued | notarizing | uncertain
    size: int
    path: str  # the stored copy of the exact bytes
    signed: bool
    encrypted: bool
    smtp_reply: str | None = None
    warnings: list[str] = field(default_factory=list)
    via: str = "smtp"  # smtp: your own server (direct mode); relay: the notary's relay

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


class QueuedError(TemporaryError):
    """The message is safe in the outbox but a step failed transiently; ``result`` says where."""

    def __init__(self, message: str, result: SendResult, *, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.result = result


@dataclass
class AttachmentInfo:
    """An attachment of an opened message."""

    filename: str | None  # as declared by the sender (untrusted)
    content_type: str
    size: int
    sha256: str
    scan: str  # "clean", "not scanned"
    saved_as: str | None = None


@dataclass
class OpenResult:
    """What :meth:`Certmail.open` found and did."""

    sha256: str
    encrypted: bool
    signed: bool
    signer: str | None
    signer_fingerprint: str | None
    signer_primary_fingerprint: str | None
    trust: str | None  # the key's validity: full, ultimate, marginal, unknown, ...
    trusted: bool
    signed_at: str | None
    header_protection: str | None
    headers: dict[str, str]
    body: str
    manifest: str  # "verified" or "absent"
    attachments: list[AttachmentInfo]
    notary: str | None
    receipts: list[dict[str, Any]]
    warnings: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class VerifyResult:
    """What could be checked without decrypting."""

    sha256: str
    pgp: str  # "valid", "encrypted" (inside the encryption), "unsigned"
    signer: str | None
    signer_fingerprint: str | None
    trust: str | None
    dkim: str  # "valid", "absent"
    dkim_domain: str | None
    headers: dict[str, str]
    warnings: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class FlushItem:
    """The outcome of one outbox message in :meth:`Certmail.flush`."""

    sha256: str
    message_id: str
    status: str
    error: str | None = None
    exit_code: int = 0

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


# ------------------------------------------------------------------ the client


def _domain(addr: str) -> str:
    return addr.rpartition("@")[2].lower()


def _sig_json(sig: SignatureInfo | None) -> dict[str, Any]:
    if sig is None:
        return {"signer": None, "signer_fingerprint": None, "signer_primary_fingerprint": None,
                "trust": None, "trusted": False, "signed_at": None}
    return {"signer": sig.signer_email, "signer_fingerprint": sig.fingerprint,
            "signer_primary_fingerprint": sig.primary_fingerprint, "trust": sig.validity,
            "trusted": sig.trusted, "signed_at": sig.created.isoformat()}


class Certmail:
    """One certmail identity (a ``CERTMAIL_HOME``): keyring, ledger, scanner, notary.

    Reuse one instance for bulk sends. ``clock`` (returning an aware datetime)
    makes Date fields deterministic in tests.
    """

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        passphrase: str | None = None,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        if settings is None:
            from .config import load_settings

            settings = load_settings()
        self.settings = settings
        self.passphrase = passphrase if passphrase is not None else settings.passphrase()
        self.clock = clock
        self._keyring: Keyring | None = None
        self._cached: _KeyCache | None = None
        self._ledger: Ledger | None = None
        self._notary: NotaryClient | None = None
        self._relay: RelayEndpoint | None = None
        self._scanner: Scanner | None = None
        self._scanner_looked_up = False

    def close(self) -> None:
        if self._ledger is not None:
            self._ledger.close()
            self._ledger = None
        if self._notary is not None:
            self._notary.close()
            self._notary = None

    def __enter__(self) -> Certmail:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- parts -------------------------------------------------------------------

    @property
    def keyring(self) -> Keyring:
        if self._keyring is None:
            from keys.gpg import Keyring

            self._keyring = Keyring(self.settings.gnupghome, passphrase=self.passphrase)
        return self._keyring

    def _sealing_keyring(self) -> Keyring:
        """The keyring with key lookups remembered for this instance (bulk sends)."""
        if self._cached is None:
            self._cached = _KeyCache(self.keyring)
        return cast("Keyring", self._cached)

    @property
    def ledger(self) -> Ledger:
        if self._ledger is None:
            s = self.settings
            self._ledger = Ledger(s.ledger_path, s.outbox_dir, s.sent_dir)
        return self._ledger

    def notary(self) -> NotaryClient:
        if self._notary is None:
            url = self.settings.notary_url
            if not url:
                raise Error("no notary configured",
                            hint="set CERTMAIL_NOTARY_URL, or send with --no-notarize")
            self._notary = NotaryClient(url, self.settings.notary_token)
        return self._notary

    def scanner(self) -> Scanner | None:
        """The configured ClamAV scanner, or None when there is none."""
        if not self._scanner_looked_up:
            from .scan import Scanner

            self._scanner = Scanner.from_settings(self.settings.clamd)
            self._scanner_looked_up = True
        return self._scanner

    @contextlib.contextmanager
    def _workdir(self) -> Iterator[Path]:
        base = self.settings.home / "tmp"
        base.mkdir(parents=True, exist_ok=True, mode=0o700)
        d = Path(tempfile.mkdtemp(prefix="w", dir=base))
        try:
            yield d
        finally:
            shutil.rmtree(d, ignore_errors=True)

    # -- send --------------------------------------------------------------------

    def scan_attachments(self, paths: Sequence[Path], *, require_scan: bool,
                         warnings: list[str]) -> list[tuple[Path, ScanRecord]]:
        """Scan every file; refuse infected ones (InfectedError) before anything else."""
        for p in paths:
            if not p.is_file():
                raise NotFoundError(f"no such file: {p}", hint="check the --attach path")
        if not paths:
            return []
        scanner = self.scanner()
        if scanner is None:
            if require_scan:
                raise Error("no virus scanner is available and --require-scan was given",
                            hint="start clamd or set CERTMAIL_CLAMD=unix:///path/to/clamd.ctl")
            warnings.append("no virus scanner available: attachments are marked 'not scanned'")
            return [(p, ScanRecord(NOT_SCANNED)) for p in paths]
        engine = scanner.version()
        out = []
        for p in paths:
            verdict = scanner.scan_file(p)
            if not verdict.clean:
                raise InfectedError(
                    f"{p.name} is infected ({verdict.signature}); nothing was sent",
                    hint="remove the file from --attach",
                )
            out.append((p, ScanRecord("clean", verdict.engine or engine)))
        return out

    def send(
        self,
        *,
        to: Sequence[str],
        subject: str,
        body: str | bytes,
        cc: Sequence[str] = (),
        attachments: Sequence[str | os.PathLike[str]] = (),
        via: str | None = None,
        encrypt: bool = True,
        sign: bool = True,
        notarize: bool = True,
        require_scan: bool | None = None,
        progress: Progress | None = None,
        track_open: bool = False,
        request_mdn: bool = False,
    ) -> SendResult:
        """Scan, compose, sign, encrypt, submit over SMTP and notarize one message.

        ``track_open`` adds a tracking link per recipient, registered
        with the notary before sending (docs/ack.md). ``request_mdn`` asks for an
        RFC 8098 read receipt (``Disposition-Notification-To:`` the sender).

        Raises InfectedError (nothing sent), QueuedError (kept in the outbox, a
        transient failure), UncertainDeliveryError, DeliveryError, NotaryError,
        NotFoundError (keys, files), Error.
        """
        s = self.settings
        warnings: list[str] = []
        via = self._choose_via(via, notarize, warnings)
        if not s.email:
            raise Error("no sender identity", hint="certmail init --email ADDR --name NAME")
        if not to:
            raise Error("no recipients", hint="give --to ADDR")
        for a in (s.email, *to, *cc):
            check_address(a)
        if via == "smtp":
            if not s.smtp_url:
                raise Error("no SMTP server configured",
                            hint="set CERTMAIL_SMTP_URL=smtp://user:pass@host:587")
            parse_smtp_url(s.smtp_url)
        notary = self.notary() if notarize or via == "relay" else None
        if require_scan is None:
            require_scan = bool(s.require_scan)
        scanned = self.scan_attachments([Path(a) for a in attachments],
                                        require_scan=require_scan, warnings=warnings)
        date = date_from(self.clock()) if self.clock else now_date()
        headers = Headers(
            from_addr=s.email, to=tuple(to), cc=tuple(cc), subject=subject,
            message_id=new_message_id(_domain(s.email)), date=date, from_name=s.name or None,
        )
        extra = [f"{NOTARY_HEADER}: {notary.url}"] if notary else []
        if request_mdn:
            extra.append(f"Disposition-Notification-To: {s.email}")
        dkim = self._dkim_signer(_domain(s.email))
        data = body.encode("utf-8") if isinstance(body, str) else body
        with self._workdir() as work:
            tracking = None
            if track_open:
                from .tracking import prepare_tracking, register_tracking

                if notary is None:
                    raise Error("--track-open needs a notary", hint="set CERTMAIL_NOTARY_URL")
                tracking = prepare_tracking(notary.url, headers.recipients, work)
                scanned = [*scanned, (tracking.html_path, ScanRecord(NOT_SCANNED))]
            sealed = seal(self._sealing_keyring(), work, headers, data, scanned, sign=sign,
                          encrypt=encrypt, extra_outer=extra, dkim=dkim, progress=progress)
            if dkim is not None:
                self._dkim_check(sealed.path)
            if tracking is not None and notary is not None:
                register_tracking(notary, sealed.sha256, headers.message_id, tracking)
            entry = self.ledger.enqueue(
                sealed.path, sha256=sealed.sha256, message_id=headers.message_id,
                mail_from=s.email, recipients=headers.recipients, via=via,
                notarize=notary is not None, move=True,
            )
        result = SendResult(
            sha256=entry.sha256, message_id=entry.message_id, recipients=list(entry.recipients),
            receipts=[], status=entry.status, size=entry.size,
            path=str(self.ledger.message_path(entry.sha256)), signed=sign, encrypted=encrypt,
            warnings=warnings, via=via,
        )
        if via == "relay":
            self._deliver_relay(entry, result=result)
        else:
            self._deliver(entry, target_url=s.smtp_url or "", result=result, progress=progress)
        return result

    def _dkim_signer(self, domain: str) -> Callable[[Path], bytes] | None:
        from keys.dkim import dkim_sign_file, find_dkim_key

        key = find_dkim_key(self.settings.dkim_dir, domain)
        if key is None:
            return None

        def sign(path: Path) -> bytes:  # streams the body: memory does not grow with it
            return dkim_sign_file(path, key)

        return sign

    def _dkim_check(self, path: Path) -> None:
        """DKIM-verify the finished bytes against our own key's public record."""
        from keys.dkim import dkim_verify_file, dns_record, find_dkim_key

        key = find_dkim_key(self.settings.dkim_dir, _domain(self.settings.email or ""))
        if key is None:
            return
        name, record = dns_record(key)

        def dnsfunc(qname: bytes) -> bytes:
            return record.encode() if qname.decode().rstrip(".") == name else b""

        try:
            dkim_verify_file(path, dnsfunc=dnsfunc)
        except VerificationError as e:
            raise Error(f"refusing to send: the DKIM signature does not verify ({e.message})",
                        hint="certmail keys dkim record (check the DKIM key)") from e

    def _deliver(self, entry: Entry, *, target_url: str, result: SendResult | None = None,
                 progress: Progress | None = None, include_uncertain: bool = False) -> Entry:
        """Run the pending steps of one ledger entry, recording each durably."""
        ledger = self.ledger
        sha = entry.sha256
        res = result
        if entry.smtp in ("pending", "uncertain", "sending"):
            if not ledger.claim_send(sha, include_uncertain=include_uncertain):
                raise ConflictError(f"message {sha[:12]} is being sent by another process"
                                    if entry.smtp == "pending" else
                                    f"message {sha[:12]} may already have been sent",
                                    hint="certmail outbox list")
            target = parse_smtp_url(target_url)

            def bar(done: int, total: int) -> None:
                if progress is not None:
                    progress("smtp", done, total)

            try:
                reply = send_file(target, entry.mail_from, entry.recipients,
                                  ledger.message_path(sha), progress=bar)
            except UncertainDeliveryError as e:
                ledger.mark_send_failed(sha, e.message, permanent=False, uncertain=True)
                raise
            except TemporaryError as e:
                ledger.mark_send_failed(sha, e.message, permanent=False)
                if res is not None:
                    res.status = "queued"
                    raise QueuedError(f"{e.message}; the message is queued in the outbox", res,
                                      hint="certmail outbox flush") from None
                raise
            except Error as e:
                ledger.mark_send_failed(sha, e.message, permanent=True)
                raise
            ledger.mark_sent(sha, f"{reply.code} {reply.reply}")
            if res is not None:
                res.smtp_reply = f"{reply.code} {reply.reply}"
        entry = ledger.get(sha)
        if entry.notary == "pending":
            try:
                receipt = self.notary().notarize(sha, entry.message_id)
            except TemporaryError as e:
                ledger.mark_notary_failed(sha, e.message, permanent=False)
                if res is not None:
                    res.status = ledger.get(sha).status
                    raise QueuedError(
                        f"sent, but not yet notarized: {e.message}", res,
                        hint="certmail outbox flush (only notarizes; it does not resend)",
                    ) from None
                raise
            except (NotaryError, VerificationError, Error) as e:
                ledger.mark_notary_failed(sha, e.message, permanent=True)
                raise Error(f"sent, but the notary refused to notarize it: {e.message}",
                            hint=e.hint) from None
            ledger.add_receipt(sha, receipt)
        entry = ledger.get(sha)
        if res is not None:
            res.status = entry.status
            res.receipts = ledger.receipts(sha)
            res.path = str(ledger.message_path(sha))
        return entry

    # -- relay mode ----------------------------------------------------------------

    def _choose_via(self, via: str | None, notarize: bool, warnings: list[str]) -> str:
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
        if not s.notary_url:
            raise Error("relay mode (--via relay) needs a notary, and none is configured",
                        hint="set CERTMAIL_NOTARY_URL and CERTMAIL_NOTARY_TOKEN, "
                             "or send with --via smtp")
        if not notarize:
            raise Error("--no-notarize does not go with --via relay: the relay logs every "
                        "message it accepts", hint="certmail send --via smtp --no-notarize ...")
        if not s.notary_token:
            raise Error("relay mode needs your account's token at the notary",
                        hint="set CERTMAIL_NOTARY_TOKEN (ask the notary operator for a token)")
        try:
            self._relay_endpoint()
        except NoRelayError as e:
            if explicit or not s.smtp_url:
                raise
            warnings.append(f"{e.message}: sending directly through CERTMAIL_SMTP_URL")
            return "smtp"
        except TemporaryError:
            pass  # the notary is unreachable: the message is queued for the relay
        return chosen

    def _relay_endpoint(self) -> RelayEndpoint:
        """Where the notary's relay listens and its certificate (remembered per instance)."""
        if self._relay is None:
            from .relay_client import relay_endpoint

            self._relay = relay_endpoint(self.notary().url)
        return self._relay

    def _relay_acceptance(self, entry: Entry) -> dict[str, Any] | None:
        """The notary's verified SubmissionAcceptance receipt for ``entry``, or None."""
        import base64
        import json

        from .notary_client import NotaryNotFoundError

        notary = self.notary()
        try:
            got = notary.receipts(entry.sha256)
        except NotaryNotFoundError:
            return None
        for r in got:
            try:
                event = json.loads(base64.b64decode(r["entry"])).get("event")
            except (KeyError, TypeError, ValueError):
                continue
            if event == "SubmissionAcceptance":
                notary.check_receipt(r, entry.sha256, entry.message_id)
                return r
        return None

    def _deliver_relay(self, entry: Entry, *, result: SendResult | None = None,
                       include_uncertain: bool = False) -> Entry:
        """Relay mode: submit the stored bytes through the notary's relay, keep its receipt.

        Each step is recorded durably (as in :meth:`_deliver`). A submission
        that may or may not have reached the relay (``uncertain``) is settled
        by the notary's log: an acceptance there means sent, and nothing is
        resubmitted; without one it is resubmitted only with
        ``include_uncertain``.
        """
        from .relay_client import HashMismatchError, NoRelayError, RelayLoginError, submit

        ledger = self.ledger
        sha = entry.sha256
        res = result
        accepted: dict[str, Any] | None = None
        if entry.smtp in ("uncertain", "sending"):
            accepted = self._relay_acceptance(entry)
            if accepted is not None:
                ledger.mark_sent(sha, "250 accepted (its SubmissionAcceptance is in the log)")
                entry = ledger.get(sha)
            elif not include_uncertain:
                return entry
        if entry.smtp in ("pending", "uncertain", "sending"):
            notary_url = self.notary().url
            token = self.settings.notary_token
            if not token:
                raise Error("relay mode needs your account's token at the notary",
                            hint="set CERTMAIL_NOTARY_TOKEN, then: certmail outbox flush")
            if not ledger.claim_send(sha, include_uncertain=include_uncertain):
                raise ConflictError(f"message {sha[:12]} is being sent by another process",
                                    hint="certmail outbox list")
            data = ledger.message_path(sha).read_bytes()
            if hashlib.sha256(data).hexdigest() != sha:
                ledger.mark_send_failed(sha, "the stored copy does not hash to its sha256",
                                        permanent=True)
                raise VerificationError(f"the stored copy of message {sha[:12]} has changed; "
                                        "nothing was submitted")
            try:
                got = submit(data, mail_from=entry.mail_from, recipients=entry.recipients,
                             notary_url=notary_url, token=token,
                             endpoint=self._relay_endpoint())
            except UncertainDeliveryError as e:
                ledger.mark_send_failed(sha, e.message, permanent=False, uncertain=True)
                raise
            except TemporaryError as e:
                self._relay = None  # ask the notary again where its relay is
                ledger.mark_send_failed(sha, e.message, permanent=False)
                if res is not None:
                    res.status = "queued"
                    raise QueuedError(f"{e.message}; the message is queued in the outbox", res,
                                      hint="certmail outbox flush (resubmits it through the "
                                           "relay)") from None
                raise
            except HashMismatchError as e:
                ledger.mark_send_failed(sha, e.message, permanent=True)
                raise
            except (RelayLoginError, NoRelayError, VerificationError) as e:
                # Nothing was sent (refused login, no relay, certificate not the pinned
                # one): the message stays queued until the cause is fixed.
                self._relay = None
                ledger.mark_send_failed(sha, e.message, permanent=False)
                e.hint = (f"{e.hint}; then: certmail outbox flush" if e.hint
                          else "certmail outbox flush")
                raise
            except Error as e:
                ledger.mark_send_failed(sha, e.message, permanent=True)
                raise
            reply = f"250 Accepted sha256={got}"
            ledger.mark_sent(sha, reply)
            if res is not None:
                res.smtp_reply = reply
        entry = ledger.get(sha)
        if entry.notary == "pending":
            try:
                receipt = accepted or self._relay_acceptance(entry)
                if receipt is None:
                    raise TemporaryError("the notary shows no acceptance receipt for it yet")
            except TemporaryError as e:
                ledger.mark_notary_failed(sha, e.message, permanent=False)
                if res is not None:
                    res.status = ledger.get(sha).status
                    raise QueuedError(
                        f"accepted by the notary relay, but its receipt is not here yet: "
                        f"{e.message}", res,
                        hint="certmail outbox flush (fetches the receipt; never resubmits)",
                    ) from None
                raise
            except VerificationError as e:
                ledger.mark_notary_failed(sha, e.message, permanent=True)
                raise VerificationError(f"accepted by the notary relay, but its receipt does "
                                        f"not verify: {e.message}", hint=e.hint) from None
            except Error as e:
                ledger.mark_notary_failed(sha, e.message, permanent=True)
                raise Error(f"accepted by the notary relay, but its receipt could not be "
                            f"fetched: {e.message}", hint=e.hint) from None
            ledger.add_receipt(sha, receipt)
        entry = ledger.get(sha)
        if res is not None:
            res.status = entry.status
            res.receipts = ledger.receipts(sha)
            res.path = str(ledger.message_path(sha))
        return entry

    # -- outbox ------------------------------------------------------------------

    def outbox(self) -> list[Entry]:
        """Messages with a step still to do (queued, uncertain, awaiting notarization)."""
        return self.ledger.outbox()

    def flush(self, *, include_uncertain: bool = False) -> list[FlushItem]:
        """Retry every outbox message: send what is queued, notarize what was sent.

        Messages whose delivery is uncertain are left alone unless
        ``include_uncertain`` (they may reach the recipient twice).
        """
        items = []
        for entry in self.ledger.outbox():
            if entry.via == "relay":  # the notary's log tells whether it was accepted
                try:
                    done = self._deliver_relay(entry, include_uncertain=include_uncertain)
                    items.append(FlushItem(done.sha256, done.message_id, done.status,
                                           done.last_error if done.status == "uncertain"
                                           else None))
                except Error as e:
                    status = self.ledger.get(entry.sha256).status
                    items.append(FlushItem(entry.sha256, entry.message_id, status, e.message,
                                           e.exit_code))
                continue
            if entry.status == "uncertain" and not include_uncertain:
                items.append(FlushItem(entry.sha256, entry.message_id, "uncertain",
                                       "delivery uncertain: not resent", 0))
                continue
            try:
                done = self._deliver(entry, target_url=self.settings.smtp_url or "",
                                     include_uncertain=include_uncertain)
                items.append(FlushItem(done.sha256, done.message_id, done.status))
            except Error as e:
                status = self.ledger.get(entry.sha256).status
                items.append(FlushItem(entry.sha256, entry.message_id, status, e.message,
                                       e.exit_code))
        return items

    # -- open --------------------------------------------------------------------

    def open(
        self,
        path: str | os.PathLike[str],
        *,
        save_dir: str | os.PathLike[str] | None = None,
        force: bool = False,
        allow_unsigned: bool = False,
        require_scan: bool | None = None,
    ) -> OpenResult:
        """Decrypt, verify, check the manifest, scan and (with ``save_dir``) save attachments.

        Raises VerificationError (bad or missing signature, manifest mismatch),
        MalformedError, InfectedError (nothing saved), ConflictError (would
        overwrite; nothing saved).
        """
        p = Path(path)
        raw = _read_message(p)
        sha = hashlib.sha256(raw).hexdigest()
        warnings: list[str] = []
        with self._workdir() as work:
            u = unseal(self.keyring, raw, work, allow_unsigned=allow_unsigned)
            check_manifest(u)
            atts = self._scan_parts(u, work, require_scan, warnings)
            if save_dir is not None:
                _save_all(u, atts, Path(save_dir), force, warnings)
        if u.signature is None:
            warnings.append("the message is NOT signed: its sender is not proven")
        elif not u.signature.trusted:
            warnings.append(
                f"the signer's key is not certified (validity {u.signature.validity}); "
                "check the fingerprint, then: "
                f"certmail keys trust {u.signature.primary_fingerprint}"
            )
        if u.encrypted and u.header_protection != "cipher":
            warnings.append("the header fields are not protected (no RFC 9788 hp=cipher)")
        notary = u.outer_fields.get(NOTARY_HEADER) or u.fields.get(NOTARY_HEADER)
        receipts: list[dict[str, Any]] = []
        with contextlib.suppress(Error):
            if self.settings.ledger_path.exists():
                receipts = self.ledger.receipts(sha)
        body = (u.body or b"").decode("utf-8", "replace").replace("\r\n", "\n")
        return OpenResult(
            sha256=sha, encrypted=u.encrypted, signed=u.signature is not None,
            **_sig_json(u.signature), header_protection=u.header_protection,
            headers=u.fields, body=body, manifest="verified" if u.manifest else "absent",
            attachments=atts, notary=notary, receipts=receipts, warnings=warnings,
        )

    def _scan_parts(self, u: Unsealed, work: Path, require_scan: bool | None,
                    warnings: list[str]) -> list[AttachmentInfo]:
        if require_scan is None:
            require_scan = bool(self.settings.require_scan)
        infos = [
            AttachmentInfo(part.filename, part.content_type, len(part.data),
                           hashlib.sha256(part.data).hexdigest(), NOT_SCANNED)
            for part in u.parts
        ]
        if not u.parts:
            return infos
        scanner = self.scanner()
        if scanner is None:
            if require_scan:
                raise Error("no virus scanner is available and --require-scan was given",
                            hint="start clamd or set CERTMAIL_CLAMD=unix:///path/to/clamd.ctl")
            warnings.append("no virus scanner available: attachments were not scanned")
            return infos
        for i, (part, info) in enumerate(zip(u.parts, infos, strict=True)):
            tmp = work / f"scan-{i}"
            tmp.write_bytes(part.data)
            verdict = scanner.scan_file(tmp)
            tmp.unlink()
            if not verdict.clean:
                raise InfectedError(
                    f"attachment {part.filename!r} is infected ({verdict.signature}); "
                    "nothing was saved")
            info.scan = "clean"
        return infos

    # -- verify ------------------------------------------------------------------

    def verify(self, path: str | os.PathLike[str], *,
               dnsfunc: Callable[[bytes], bytes] | None = None) -> VerifyResult:
        """Check the PGP signature (when not encrypted) and any DKIM signature.

        Raises VerificationError when a signature present does not verify, or
        when there is nothing that can be verified at all.
        """
        p = Path(path)
        raw = _read_message(p)
        from .mime import canonicalize, header_fields

        top = parse_entity(canonicalize(raw))
        fields = header_fields(top.headers)
        warnings: list[str] = []
        pgp, sig = "unsigned", None
        if top.content_type == "multipart/encrypted":
            pgp = "encrypted"
            warnings.append("the PGP signature is inside the encryption: certmail open FILE "
                            "checks it")
        elif top.content_type == "multipart/signed":
            sp = signed_parts(top)
            sig = self.keyring.verify_detached(sp.signed, sp.signature)
            pgp = "valid"
            inner = parse_entity(sp.signed)
            check_sender(self.keyring, sig, inner.headers.get("From", top.headers.get("From")))
            if not sig.trusted:
                warnings.append(f"the signer's key is not certified (validity {sig.validity})")
        dkim_state, dkim_domain = "absent", None
        if top.headers.get("DKIM-Signature") is not None:
            from keys.dkim import dkim_verify, signing_domain

            dkim_verify(raw, dnsfunc=dnsfunc)
            dkim_state = "valid"
            dkim_domain = signing_domain(str(top.headers["DKIM-Signature"]))
        if pgp != "valid" and dkim_state != "valid":
            if pgp == "encrypted":
                warnings.append("no DKIM signature: nothing can be checked without decrypting")
            else:
                raise VerificationError("the message carries no PGP or DKIM signature",
                                        hint="certmail open FILE")
        return VerifyResult(
            sha256=hashlib.sha256(raw).hexdigest(), pgp=pgp,
            signer=sig.signer_email if sig else None,
            signer_fingerprint=sig.primary_fingerprint if sig else None,
            trust=sig.validity if sig else None, dkim=dkim_state, dkim_domain=dkim_domain,
            headers=fields, warnings=warnings,
        )


# ------------------------------------------------------------------ helpers


class _KeyCache:
    """Delegates to a Keyring, remembering which key serves which address.

    Each lookup runs gpg; a bulk send would otherwise repeat the same four
    lookups per message. The cache lives as long as one :class:`Certmail`.
    """

    def __init__(self, keyring: Keyring) -> None:
        self._keyring = keyring
        self._memo: dict[tuple[str, str], str] = {}

    def _memoized(self, kind: str, addr: str) -> str:
        key = (kind, addr.lower())
        if key not in self._memo:
            self._memo[key] = str(getattr(self._keyring, kind)(addr))
        return self._memo[key]

    def encryption_key(self, addr: str) -> str:
        return self._memoized("encryption_key", addr)

    def signing_key(self, addr: str) -> str:
        return self._memoized("signing_key", addr)

    def export_public(self, addr: str) -> str:
        return self._memoized("export_public", addr)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._keyring, name)


def _read_message(p: Path) -> bytes:
    try:
        size = p.stat().st_size
    except FileNotFoundError:
        raise NotFoundError(f"no such file: {p}") from None
    if size == 0:
        raise MalformedError(f"{p} is empty (0 bytes): not a message")
    if size > MAX_OPEN_SIZE:
        raise MalformedError(f"{p} is larger than {MAX_OPEN_SIZE >> 20} MB")
    return p.read_bytes()


_RESERVED_NAMES = {"", ".", ".."}


def safe_name(declared: str | None, index: int) -> str:
    """A file name that stays inside the save directory.

    Keeps the last path component of the declared name (``/`` and ``\\``
    separators both count), drops control characters and leading dots, turns
    undecodable bytes into ``_``, caps the length at 200 UTF-8 bytes, and
    falls back to ``attachment-N.bin``.
    """
    name = declared or ""
    name = name.replace("\\", "/").rsplit("/", 1)[-1]
    name = unicodedata.normalize("NFC", name)
    name = "".join("_" if (not c.isprintable() or c in "\ufffd\x00:") else c for c in name)
    name = name.encode("utf-8", "replace").decode("utf-8")
    name = name.strip().lstrip(".").strip()
    while len(name.encode("utf-8")) > 200:
        stem, dot, ext = name.rpartition(".")
        name = (stem[:-1] + dot + ext) if dot and len(ext) < 16 and stem else name[:-1]
    if name in _RESERVED_NAMES:
        name = f"attachment-{index + 1}.bin"
    return name


def _save_all(u: Unsealed, infos: list[AttachmentInfo], save_dir: Path, force: bool,
              warnings: list[str]) -> None:
    """Save every attachment inside ``save_dir``; refuse (save nothing) if one would clash."""
    save_dir.mkdir(parents=True, exist_ok=True)
    names: list[str] = []
    for i, part in enumerate(u.parts):
        name = safe_name(part.filename, i)
        base, n = name, 1
        while name in names:
            stem, dot, ext = base.rpartition(".")
            name = f"{stem}-{n}.{ext}" if dot and stem else f"{base}-{n}"
            n += 1
        if part.filename is not None and name != part.filename:
            warnings.append(f"attachment name {part.filename!r} is unsafe; saved as {name!r}")
        names.append(name)
    dfd = os.open(save_dir, os.O_RDONLY | os.O_DIRECTORY)
    try:
        if not force:
            clash = [n for n in names if _exists_at(dfd, n)]
            if clash:
                raise ConflictError(f"{save_dir / clash[0]} exists; nothing was saved",
                                    hint="add --force to overwrite, or choose another --save-dir")
        for part, name, info in zip(u.parts, names, infos, strict=True):
            flags = os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
            flags |= os.O_TRUNC if force else os.O_EXCL
            try:
                fd = os.open(name, flags, 0o600, dir_fd=dfd)
            except FileExistsError:
                raise ConflictError(f"{save_dir / name} exists",
                                    hint="add --force to overwrite") from None
            except OSError as e:
                raise Error(f"cannot write {save_dir / name}: {e.strerror}") from None
            with os.fdopen(fd, "wb") as f:
                f.write(part.data)
            info.saved_as = str(save_dir / name)
    finally:
        os.close(dfd)


def _exists_at(dfd: int, name: str) -> bool:
    try:
        os.stat(name, dir_fd=dfd, follow_symlinks=False)
    except FileNotFoundError:
        return False
    return True


# ------------------------------------------------------------------ module-level verbs


def send(settings: Settings | None = None, **kwargs: Any) -> SendResult:
    """One-shot :meth:`Certmail.send`."""
    with Certmail(settings) as cm:
        return cm.send(**kwargs)


def open_message(path: str | os.PathLike[str], settings: Settings | None = None,
                 **kwargs: Any) -> OpenResult:
    """One-shot :meth:`Certmail.open`."""
    with Certmail(settings) as cm:
        return cm.open(path, **kwargs)


def verify_message(path: str | os.PathLike[str], settings: Settings | None = None,
                   **kwargs: Any) -> VerifyResult:
    """One-shot :meth:`Certmail.verify`."""
    with Certmail(settings) as cm:
        return cm.verify(path, **kwargs)


__all__ = [
    "AttachmentInfo",
    "Certmail",
    "DeliveryError",
    "FlushItem",
    "OpenResult",
    "QueuedError",
    "SendResult",
    "UncertainDeliveryError",
    "VerifyResult",
    "open_message",
    "safe_name",
    "send",
    "verify_message",
]
