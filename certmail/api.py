"""The Python API for scripts: send, open and verify certified mail (docs/python-api.md).

This module is the facade: :class:`Certmail` wires one identity's pieces
(keyring, ledger, scanner, notary) to the modules that do the work —
composing and sealing (:mod:`certmail.signer`, the identity's keys and DKIM
key, over :mod:`certmail.seal`), the outbox's delivery state machine
(:mod:`certmail.outbox`), scanning and safe saving of attachments
(:mod:`certmail.attachments`). Results are the dataclasses of
:mod:`certmail.results`; errors are those of :mod:`certmail.errors`. The CLI
is a thin layer over this module. Nothing here prints: results carry
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
import os
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from keys.errors import Error

from .attachments import safe_name, scan_files
from .compose import (
    NOT_SCANNED,
    Headers,
    Progress,
    ScanRecord,
)
from .errors import DeliveryError, QueuedError, UncertainDeliveryError
from .ledger import Entry, Ledger
from .notary_client import NotaryClient
from .outbox import Outbox
from .results import AttachmentInfo, FlushItem, OpenResult, SendResult, VerifyResult
from .sendcheck import (
    check_send_settings,
    check_size,
    make_headers,
    relay_limit,
    should_compress,
    too_large,
)
from .signer import Sealer

if TYPE_CHECKING:  # keeps the imports of the other modules lazy
    from keys.gpg import Ask, Keyring

    from .config import Settings
    from .scan import Scanner
    from .sealed.opening import SealedOpening
    from .sealed.pickup_sending import PickupOptions, PickupPrepared
    from .sealed.sending import Prepared
    from .smime.opening import SmimeContext
    from .tracking import Tracking


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
        ask: Ask | None = None,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        if settings is None:
            from .config import load_settings

            settings = load_settings()
        self.settings = settings
        self.ask = ask  # asked when gpg needs the passphrase (certmail.passphrase)
        self.passphrase = passphrase if passphrase is not None or ask else settings.passphrase()
        self.clock = clock
        self._keyring: Keyring | None = None
        self._ledger: Ledger | None = None
        self._notary: NotaryClient | None = None
        self._scanner: Scanner | None = None
        self._scanner_looked_up = False
        self._outbox = Outbox(settings, lambda: self.ledger, self.notary)
        self._sealer = Sealer(lambda: self.keyring, settings.dkim_dir)
        self._smime: SmimeContext | None = None

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

            self._keyring = Keyring(
                self.settings.gnupghome, passphrase=self.passphrase, ask=self.ask
            )
        return self._keyring

    @property
    def ledger(self) -> Ledger:
        if self._ledger is None:
            s = self.settings
            self._ledger = Ledger(s.ledger_path, s.outbox_dir, s.sent_dir)
        return self._ledger

    def use_smime(self, context: SmimeContext) -> None:
        """Use ``context`` as this home's S/MIME keys (one already opened and unlocked,
        e.g. by ``campaign send`` before its worker processes forked), not open them again."""
        self._smime = context

    @property
    def smime(self) -> SmimeContext:
        """The S/MIME keys and CA bundle of this home (docs/smime.md)."""
        if self._smime is None:
            from .smime.opening import smime_context

            self._smime = smime_context(self.settings, self.ask, self.passphrase)
        return self._smime

    def notary(self) -> NotaryClient:
        if self._notary is None:
            url = self.settings.notary_url
            if not url:
                raise Error(
                    "no notary configured",
                    hint="set CERTMAIL_NOTARY_URL, or send with --no-notarize",
                )
            self._notary = NotaryClient(url, self.settings.notary_token)
        return self._notary

    def scanner(self) -> Scanner | None:
        """The configured ClamAV scanner, or None when there is none."""
        if not self._scanner_looked_up:
            from .scan import Scanner

            self._scanner = Scanner.from_settings(self.settings.clamd)
            self._scanner_looked_up = True
        return self._scanner

    def _workdir(self) -> contextlib.AbstractContextManager[Path]:
        from .fileio import private_dir

        return private_dir("w", self.settings.home / "tmp")

    def _require_scan(self, require_scan: bool | None) -> bool:
        return bool(self.settings.require_scan) if require_scan is None else require_scan

    # -- send --------------------------------------------------------------------

    def scan_attachments(
        self, paths: Sequence[Path], *, require_scan: bool, warnings: list[str]
    ) -> list[tuple[Path, ScanRecord]]:
        """Scan every file; refuse infected ones (InfectedError) before anything else."""
        return scan_files(self.scanner, paths, require_scan=require_scan, warnings=warnings)

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
        smime: bool = False,
        seal_until: datetime | None = None,
        pickup: PickupOptions | None = None,
    ) -> SendResult:
        """Scan, compose, sign, encrypt, submit over SMTP and notarize one message.

        ``track_open`` adds a tracking link per recipient, registered
        with the notary before sending (docs/ack.md). ``request_mdn`` asks for an
        RFC 8098 read receipt (``Disposition-Notification-To:`` the sender).
        ``smime`` signs and encrypts with S/MIME instead of OpenPGP (docs/smime.md).
        ``seal_until`` (the expiry) seals the content: readable only once the
        recipient's acknowledgement is logged (certmail/sealed/, docs/sealed.md).
        ``pickup`` sends a recipient without a key a link to the notary's pickup
        page instead of the content (docs/sealed.md "Pickup").

        Raises InfectedError (nothing sent), QueuedError (kept in the outbox, a
        transient failure), UncertainDeliveryError, DeliveryError,
        NotaryRequestError, NotFoundError (keys, files), Error (see certmail.errors).
        """
        warnings: list[str] = []
        via = self._outbox.choose_via(via, notarize, warnings)
        check_send_settings(self.settings, via, to, cc)
        notary = self.notary() if notarize or via == "relay" else None
        data = body.encode("utf-8") if isinstance(body, str) else body
        limit = relay_limit(self._outbox, via)
        paths = [Path(a) for a in attachments]
        scanned = self._checked_parts(paths, len(data), limit, encrypt, require_scan, warnings)
        headers = make_headers(self.settings, self.clock, to, cc, subject)
        with self._workdir() as work:
            tracking = None
            if track_open:
                tracking = self._prepare_tracking(notary, headers, work)
                scanned = [*scanned, (tracking.html_path, ScanRecord(NOT_SCANNED))]
            seal, html = self._seal_layer(
                seal_until, pickup, work, headers, data, scanned, notary, encrypt, smime
            )
            if seal is not None:  # issue 12: the PGP/MIME (or S/MIME) layer carries K_r and C
                data, scanned = seal.body, seal.parts
            sealed = self._sealer_for(smime).seal(
                work,
                headers,
                data,
                scanned,
                notary_url=notary.url if notary else None,
                sign=sign,
                encrypt=encrypt,
                request_mdn=request_mdn,
                progress=progress,
                compress=encrypt and should_compress(len(data), paths, limit),
                **html,  # the pickup notice's HTML alternative (docs/sealed.md)
            )
            self._before_it_leaves(sealed, limit, seal, tracking, notary, headers.message_id)
            entry = self._enqueue(sealed, headers, via, notarized=notary is not None)
        result = self._queued_result(entry, signed=sign, encrypted=encrypt, warnings=warnings)
        self._outbox.deliver(entry, result=result, progress=progress)
        return result

    def _seal_layer(
        self,
        seal_until: datetime | None,
        pickup: PickupOptions | None,
        work: Path,
        headers: Headers,
        data: bytes,
        scanned: list[tuple[Path, ScanRecord]],
        notary: NotaryClient | None,
        encrypt: bool,
        smime: bool,
    ) -> tuple[Prepared | PickupPrepared | None, dict[str, bytes]]:
        """A sealed send's or pickup's layer (their modules imported only then), its HTML."""
        if seal_until is not None:
            from .sealed.sending import prepare_for_send

            seal = prepare_for_send(
                seal_until, work, self.keyring, headers, data, scanned, notary, encrypt, smime
            )
            if seal is not None:
                return seal, {}
        if pickup is None:
            return None, {}
        from .sealed.pickup_sending import PickupPrepared, prepare_pickup

        ready = prepare_pickup(pickup, headers, data, scanned, notary, encrypt)
        return ready, {"html": ready.html} if isinstance(ready, PickupPrepared) else {}

    def _enqueue(self, sealed: Any, headers: Headers, via: str, *, notarized: bool) -> Entry:
        """Move the sealed message into the ledger's outbox, queued for delivery."""
        return self.ledger.enqueue(
            sealed.path,
            sha256=sealed.sha256,
            message_id=headers.message_id,
            mail_from=headers.from_addr,
            recipients=headers.recipients,
            via=via,
            notarize=notarized,
            move=True,
        )

    def _checked_parts(
        self,
        paths: list[Path],
        body_size: int,
        limit: int | None,
        encrypt: bool,
        require_scan: bool | None,
        warnings: list[str],
    ) -> list[tuple[Path, ScanRecord]]:
        """The relay's size limit checked before any work (an encrypted message is about
        the size of its parts), then every file scanned (InfectedError: nothing sent)."""
        if limit is not None and encrypt:
            check_size(limit, body_size, paths)
        return self.scan_attachments(
            paths, require_scan=self._require_scan(require_scan), warnings=warnings
        )

    def _sealer_for(self, smime: bool) -> Any:
        """The OpenPGP sealer, or with ``smime`` the S/MIME one (docs/smime.md)."""
        if not smime:
            return self._sealer
        from .smime.sealing import SmimeSealer

        return SmimeSealer(lambda: self.keyring, self.settings.dkim_dir, self.smime)

    @staticmethod
    def _before_it_leaves(
        sealed: Any,
        limit: int | None,
        seal: Any,
        tracking: Any,
        notary: Any,
        message_id: str,
    ) -> None:
        """The sealed message checked against the relay's limit, then what the notary
        must hold before it leaves: the sealed share K_n, the tracking links."""
        if limit is not None and sealed.size > limit:
            raise too_large(sealed.size, limit)  # nothing stored: no copy is left behind
        if seal is not None:  # K_n with the notary before anything leaves
            seal.register(sealed.sha256, message_id)
        if tracking is not None and notary is not None:
            from .tracking import register_tracking

            register_tracking(notary, sealed.sha256, message_id, tracking)

    def _queued_result(
        self, entry: Entry, *, signed: bool, encrypted: bool, warnings: list[str]
    ) -> SendResult:
        """The result of a message just stored in the outbox (delivery updates it)."""
        return SendResult(
            sha256=entry.sha256,
            message_id=entry.message_id,
            recipients=list(entry.recipients),
            receipts=[],
            status=entry.status,
            size=entry.size,
            path=str(self.ledger.message_path(entry.sha256)),
            signed=signed,
            encrypted=encrypted,
            warnings=warnings,
            via=entry.via,
        )

    def _prepare_tracking(
        self, notary: NotaryClient | None, headers: Headers, work: Path
    ) -> Tracking:
        from .tracking import prepare_tracking

        if notary is None:
            raise Error("--track-open needs a notary", hint="set CERTMAIL_NOTARY_URL")
        return prepare_tracking(notary.url, headers.recipients, work)

    # -- outbox ------------------------------------------------------------------

    def outbox(self) -> list[Entry]:
        """Messages with a step still to do (queued, uncertain, awaiting notarization)."""
        return self.ledger.outbox()

    def flush(self, *, include_uncertain: bool = False) -> list[FlushItem]:
        """Retry every outbox message: send what is queued, notarize what was sent.

        Messages whose delivery is uncertain are left alone unless
        ``include_uncertain`` (they may reach the recipient twice).
        """
        return self._outbox.flush(include_uncertain=include_uncertain)

    # -- open --------------------------------------------------------------------

    def open(
        self,
        path: str | os.PathLike[str],
        *,
        save_dir: str | os.PathLike[str] | None = None,
        force: bool = False,
        allow_unsigned: bool = False,
        require_scan: bool | None = None,
        progress: Progress | None = None,
        sealed: SealedOpening | None = None,
    ) -> OpenResult:
        """Decrypt, verify, check the manifest, scan and (with ``save_dir``) save attachments.

        The file is read as a stream (big messages are never held in memory);
        ``progress`` is told (stage, bytes done, bytes total).
        Raises VerificationError (bad or missing signature, manifest mismatch),
        MalformedError, InfectedError (nothing saved), ConflictError (would
        overwrite; nothing saved). A sealed message (docs/sealed.md) is opened
        as ``sealed`` decides (acknowledge or refuse; none: AckNeeded).
        """
        from .attachments import save_all, scan_parts
        from .inbox.notarized import notarized_file
        from .opened import open_result
        from .sealed.opening import SealedOpening, is_sealed, open_sealed
        from .unseal import check_manifest, unseal_file

        warnings: list[str] = []
        with self._workdir() as work:
            u = unseal_file(
                self.keyring,
                Path(path),
                work,
                allow_unsigned=allow_unsigned,
                progress=progress,
                smime=self.smime,
            )
            # The bytes the notary saw (certmail/inbox/notarized.py), read as a
            # stream; the whole file's hash, taken while unsealing, is reused.
            sha = notarized_file(
                Path(path), whole_sha256=u.sha256, whole_canonical=u.canonical
            ).sha256
            if is_sealed(u):  # issue 12: handed over only against a logged acknowledgement
                check_manifest(u)  # the outer layer's, over K_r and the sealed content
                u = open_sealed(self, u, sha, work, sealed or SealedOpening())
            check_manifest(u)
            atts = scan_parts(
                self.scanner,
                u,
                work,
                require_scan=self._require_scan(require_scan),
                warnings=warnings,
            )
            if save_dir is not None:
                save_all(u, atts, Path(save_dir), force, warnings)
        receipts: list[dict[str, Any]] = []
        with contextlib.suppress(Error):
            if self.settings.ledger_path.exists():
                receipts = self.ledger.receipts(sha)
        return open_result(u, sha, atts, receipts, warnings)

    # -- verify ------------------------------------------------------------------

    def verify(
        self, path: str | os.PathLike[str], *, dnsfunc: Callable[[bytes], bytes] | None = None
    ) -> VerifyResult:
        """Check the PGP signature (when not encrypted) and any DKIM signature.

        Raises VerificationError when a signature present does not verify, or
        when there is nothing that can be verified at all.
        """
        from .mailfile import read_message
        from .signatures import verify_signatures

        raw = read_message(Path(path))
        return verify_signatures(lambda: self.keyring, raw, dnsfunc=dnsfunc, smime=self.smime)


# ------------------------------------------------------------------ module-level verbs


def send(settings: Settings | None = None, **kwargs: Any) -> SendResult:
    """One-shot :meth:`Certmail.send`."""
    with Certmail(settings) as cm:
        return cm.send(**kwargs)


def open_message(
    path: str | os.PathLike[str], settings: Settings | None = None, **kwargs: Any
) -> OpenResult:
    """One-shot :meth:`Certmail.open`."""
    with Certmail(settings) as cm:
        return cm.open(path, **kwargs)


def verify_message(
    path: str | os.PathLike[str], settings: Settings | None = None, **kwargs: Any
) -> VerifyResult:
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
