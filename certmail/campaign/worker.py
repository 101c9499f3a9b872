"""One recipient's message, in a worker process: seal it, store it, hand it over.

Each worker process holds one :class:`certmail.api.Certmail` (its keyring with
key lookups remembered, its ledger connection, its notary client) for the
whole campaign, keeps one SMTP session open across its submissions
(:func:`certmail.submitter.keep_sessions`), and dies with the process that
started it (``PR_SET_PDEATHSIG``), so a SIGKILL of ``campaign send`` leaves no worker running on.

Per recipient (:func:`run_one`), every step is durable before the next starts:
the sealed bytes go into the ledger under the Message-ID chosen at create time
(:meth:`certmail.ledger.Ledger.enqueue`), then the ledger's own outbox state
machine (:class:`certmail.outbox.Outbox`) hands them over, writing ``sending``
before the DATA command; the receipt of the hand-over (the relay's acceptance, or
the notarization in direct mode) is the parent's to get, for many messages in
one request (:mod:`certmail.campaign.receipts`). The campaign row follows the ledger. A sealed
campaign's message (``--sealed``, docs/sealed.md) and a pickup's have their
key share registered with the notary before the ledger stores them.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import hashlib
import signal
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from keys.errors import Error, NotFoundError, TemporaryError

from ..compose import Headers, ScanRecord, now_date
from ..fileio import private_dir
from ..pipeline import GpgOptions
from ..sealed.pickup import DerivedPassphrase
from ..sealed.pickup_sending import PickupOptions, PickupPrepared, prepare_pickup
from ..sealed.sending import Prepared, prepare_for_send
from .receipts import HANDED
from .store import CampaignStore, Recipient
from .templates import parse

if TYPE_CHECKING:
    from keys.gpg import Keyring

    from ..api import Certmail
    from ..config import Settings
    from ..ledger import Entry
    from ..smime.opening import SmimeContext

__all__ = ["init_worker", "run_one"]

_W: dict[str, Any] = {}
PR_SET_PDEATHSIG = 1
#: Attachments (together) below this size are base64-encoded in the worker itself.
SMALL = 4 << 20


class CampaignKeys:
    """The sender's keyring with the recipient's encryption key already looked up.

    ``campaign send`` looks each recipient's key up again once per run (a page of
    recipients at a time, in the parent) and hands it to the worker with the
    recipient (:func:`run_one`): ``keys`` holds the one of the message being
    sealed. Everything else is the keyring's own (the encryption itself still
    checks the key is valid).
    """

    def __init__(self, keyring: Any, keys: dict[str, str]) -> None:
        self._keyring = keyring
        self._keys = keys

    def encryption_key(self, addr: str) -> str:
        fpr = self._keys.get(addr.lower())
        if fpr is not None:
            return fpr
        # The sender's own key: only its keys listed, not the whole keyring (issue 15).
        return str(self._keyring.encryption_key(addr, only=True))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._keyring, name)


def _die_with_parent() -> None:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):  # not Linux: the lock file still guards resumes
        pass


def _trim() -> None:
    """Hand the freed heap back to the kernel (glibc ``malloc_trim``) between steps.

    A message's 1 MiB pieces are allocated by the pipeline's threads, each in its
    own malloc arena, and what they free stays in the arena; trimmed after the seal
    and after the hand-over, a worker's resident set is set by one step at a time,
    not the sum of them (docs/campaigns.md, "Memory and 10,000 recipients").
    """
    with contextlib.suppress(OSError, AttributeError):  # not glibc: nothing to trim
        _libc().malloc_trim(0)


@functools.cache
def _libc() -> Any:
    return ctypes.CDLL(None, use_errno=True)


def external_base64(spec: dict[str, Any]) -> bool:
    """Whether this campaign's messages go through GNU ``base64`` processes.

    Small messages: binascii and gpg's own armor in the worker process cost less
    than the three GNU base64 processes per message the large-message fast path
    starts (:func:`certmail.compose.gnu_base64`).
    """
    return sum(int(a.get("size", SMALL)) for a in spec["attachments"]) >= SMALL


def init_worker(
    settings: Settings,
    passphrase: str | None,
    name: str,
    spec: dict[str, Any],
    pickup_passphrase: bytes | None = None,
    smime: SmimeContext | None = None,
) -> None:
    """Process-pool initializer: one Certmail and one campaign store per worker.

    ``pickup_passphrase``: the campaign's, for its pickup messages; in memory only.
    ``smime``: an S/MIME campaign's context (docs/smime.md), its key unlocked once by
    ``campaign send`` before the pool forked (a fork pool: it is inherited, not pickled),
    so no worker asks for the passphrase."""
    from multiprocessing.util import Finalize

    from ..api import Certmail
    from ..outbox import Outbox
    from ..submitter import close_sessions, keep_sessions

    _die_with_parent()
    # One SMTP session per worker for the whole campaign (QUIT when the pool ends:
    # a pool worker leaves through multiprocessing's exit, not atexit).
    keep_sessions()
    Finalize(None, close_sessions, exitpriority=10)
    cm = Certmail(settings, passphrase=passphrase)
    if smime is not None:  # unlocked once, before the fork (else cm.smime opens it here)
        cm.use_smime(smime)
    keys: dict[str, str] = {}  # the key of the recipient being sealed (run_one)
    body_text = Path(spec["body"]).read_text(encoding="utf-8")
    scanned = []
    for a in spec["attachments"]:
        p = Path(a["path"])
        with p.open("rb") as f:  # in pieces: a worker never holds the attachment whole
            sha256 = hashlib.file_digest(f, "sha256").hexdigest()
        if sha256 != a["sha256"]:
            raise Error(
                f"the campaign's copy of {a['name']} changed since it was scanned",
                hint="create the campaign again",
            )
        scanned.append((p, ScanRecord(a["scan"]["status"], a["scan"]["engine"])))
    _W.update(
        cm=cm,
        name=name,
        spec=spec,
        store=CampaignStore(settings.ledger_path),
        outbox=Outbox(settings, lambda: cm.ledger, cm.notary),
        keys=keys,
        sealer=_sealer(cm, settings, spec, keys),
        subject=parse(spec["subject"], "subject"),
        body=parse(body_text, "body"),
        scanned=scanned,
        pickup=frozenset(spec.get("pickup", ())),
        pickup_passphrase=pickup_passphrase,
    )


def _sealer(cm: Certmail, settings: Settings, spec: dict[str, Any], keys: dict[str, str]) -> Any:
    """The campaign's sealer: S/MIME (``send --smime``'s, which looks each recipient's
    certificate up and checks it again per message), else OpenPGP with the recipient's
    key as ``campaign send`` found it."""
    from ..signer import Sealer

    if spec.get("smime"):
        from ..smime.sealing import SmimeSealer

        return SmimeSealer(lambda: cm.keyring, settings.dkim_dir, cm.smime, _checked_certificate)
    return Sealer(
        lambda: cast("Keyring", CampaignKeys(cm.keyring, keys)),
        settings.dkim_dir,
        # RFC 3156 §6.2: signed and encrypted by one gpg run, re-verified by one
        # decryption that checks the signature (two gpg processes, not four).
        gpg=GpgOptions(combined=True, external_base64=external_base64(spec)),
    )


def _checked_certificate(ctx: SmimeContext, addrs: Any, work: Path) -> list[Any]:
    """An S/MIME campaign's recipient certificate: the one ``campaign send`` checked this
    run (chain included, :func:`certmail.campaign.smime_checks.smime_checks`) and handed over
    by its SHA-256 (``run_one``), read by that name, not by parsing every certificate
    of the store for each message; its validity and key usage checked again here."""
    from ..smime.certs import check_certificate, load_certificates
    from ..smime.sealing import recipient_certificates

    out = []
    for addr in addrs:
        fpr = _W["keys"].get(addr.lower())
        if fpr is None:  # not handed over: looked up and checked as send --smime does
            return recipient_certificates(ctx, addrs, work)
        path = ctx.store.certs_dir / f"{fpr}.pem"
        if not path.is_file():
            raise NotFoundError(
                f"no S/MIME certificate for {addr} (removed since it was checked)",
                hint="certmail keys smime import-cert FILE.pem (the recipient's certificate)",
            )
        cert = load_certificates(path.read_bytes(), str(path))[0]
        check_certificate(cert, "encrypt", address=addr)
        out.append(cert)
    return out


def _find(cm: Certmail, message_id: str) -> Entry | None:
    sha = _W["store"].ledger_sha256(message_id)
    if sha is None:
        return None
    try:
        return cm.ledger.get(sha)
    except NotFoundError:
        return None


def _seal(r: Recipient) -> Entry:
    cm: Certmail = _W["cm"]
    spec, s = _W["spec"], cm.settings
    headers = Headers(
        from_addr=s.email or "",
        to=(r.email,),
        subject=_W["subject"].render(r.fields),
        message_id=r.message_id,
        date=now_date(),
        from_name=s.name or None,
    )
    data = _W["body"].render(r.fields).encode("utf-8")
    notary = cm.notary() if s.notary_url else None
    with private_dir("c", s.home / "tmp") as work:
        scanned = list(_W["scanned"])
        tracking = None
        if spec.get("track_open") and notary is not None:
            from ..tracking import prepare_tracking

            tracking = prepare_tracking(notary.url, headers.recipients, work)
            scanned.append((tracking.html_path, ScanRecord("not scanned")))
        pickup = _pickup(r, headers, data, scanned, notary)
        if pickup is not None:  # no key: the email carries a link, the notary the content
            data, scanned = pickup.body, pickup.parts
        seal = _sealed(headers, data, scanned, notary, work) if pickup is None else None
        if seal is not None:  # sealed: the PGP/MIME layer carries K_r and the ciphertext
            data, scanned = seal.body, seal.parts
        sealed = _W["sealer"].seal(
            work,
            headers,
            data,
            scanned,
            notary_url=notary.url if notary else None,
            sign=True,
            encrypt=pickup is None,
            request_mdn=bool(spec.get("request_mdn")),
            progress=None,
            **({"html": pickup.html} if pickup is not None else {}),
        )
        # K_n (and a pickup's ciphertext) with the notary before the ledger may send it
        for share in (pickup, seal):
            if share is not None:
                share.register(sealed.sha256, headers.message_id)
        if tracking is not None and notary is not None:
            from ..tracking import register_tracking

            register_tracking(notary, sealed.sha256, headers.message_id, tracking)
        entry = cm.ledger.enqueue(
            sealed.path,
            sha256=sealed.sha256,
            message_id=headers.message_id,
            mail_from=headers.from_addr,
            recipients=headers.recipients,
            via=spec["via"],
            notarize=notary is not None,
            move=True,
        )
    if r.pickup_key is not None:  # stored: the recipient's derived passphrase is not needed
        _W["store"].forget_pickup_key(_W["name"], r.email)
    return entry


def _pickup(
    r: Recipient, headers: Headers, data: bytes, scanned: list[Any], notary: Any
) -> PickupPrepared | None:
    """The pickup of a recipient ``campaign create`` found no key for, else None."""
    if r.email.lower() not in _W["pickup"]:
        return None
    from datetime import UTC, datetime, timedelta

    expires = datetime.now(UTC) + timedelta(seconds=int(_W["spec"]["pickup_expires"]))
    own = DerivedPassphrase.from_json(r.pickup_key) if r.pickup_key else None
    options = PickupOptions(expires, own or _W["pickup_passphrase"])
    return prepare_pickup(options, headers, data, scanned, notary, False)


def _sealed(
    headers: Headers, data: bytes, scanned: list[Any], notary: Any, work: Path
) -> Prepared | None:
    """The sealed content of a ``--sealed`` campaign's message (docs/sealed.md), else None."""
    spec = _W["spec"]
    if not spec.get("sealed"):
        return None
    from datetime import UTC, datetime, timedelta

    expires = datetime.now(UTC) + timedelta(seconds=int(spec["seal_expires"]))
    return prepare_for_send(
        expires, work, _W["cm"].keyring, headers, data, scanned, notary,
        smime=bool(spec.get("smime")),
    )  # fmt: skip


def _seal_state(r: Recipient) -> dict[str, str]:
    """The campaign row's ``seal``: a sealed message is stored only after its K_n was
    registered, so any stored one of a sealed campaign (not a pickup) has it registered."""
    sealed = _W["spec"].get("sealed") and r.email.lower() not in _W["pickup"]
    return {"seal": "registered"} if sealed else {}


def run_one(r: Recipient, key: str | None = None) -> dict[str, Any]:
    """Seal (unless the ledger has it) and hand over one recipient's message, encrypted
    to ``key`` (the fingerprint ``campaign send`` found for them; None: a pickup).

    Returns the recipient's new state (``state``, ``sha256``, ``reply``,
    ``error``, timings); the parent records it. The ledger is already durable
    about it: a lost answer is found again there by Message-ID.
    """
    from ..smtp import UncertainDeliveryError

    cm: Certmail = _W["cm"]
    store: CampaignStore = _W["store"]
    t0 = time.perf_counter()
    out: dict[str, Any] = {
        "row": r.row_no,
        "email": r.email,
        "message_id": r.message_id,
        "started_at": round(time.time(), 6),  # wall clock: latency to "delivered"
    }
    if store.recipient(_W["name"], r.email).state == "cancelled":
        return {**out, "state": "cancelled"}
    _W["keys"].clear()
    if key is not None:
        _W["keys"][r.email.lower()] = key
    try:
        entry = _find(cm, r.message_id)
        if entry is None:
            entry = _seal(r)
            _trim()
        t1 = time.perf_counter()
        out.update(sha256=entry.sha256, queued_at=r.queued_at or entry.created, seal_s=t1 - t0)
        out.update(_seal_state(r))
        try:
            done = _W["outbox"].deliver(entry, receipt=False)  # the parent gets it, batched
        finally:
            _trim()
        out["submit_s"] = time.perf_counter() - t1
    except UncertainDeliveryError as e:
        return {**out, "state": "uncertain", "error": e.message}
    except TemporaryError as e:
        sent = (got := _find(cm, r.message_id)) is not None and got.smtp == "sent"
        return {**out, "state": "submitted" if sent else "queued", "error": e.message}
    except Error as e:
        return {**out, "state": "failed", "error": e.message}
    if done.smtp in ("uncertain", "sending"):
        return {**out, "state": "uncertain", "error": done.last_error}
    state = {"done": "accepted", "pending": HANDED}.get(done.notary, "submitted")
    return {
        **out,
        "state": state,
        "reply": done.smtp_reply,
        "error": None,
        "submitted_at": done.updated,
    }
