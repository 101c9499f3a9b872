"""``campaign send``: every recipient its own message, through a pool of worker processes.

One sender at a time per campaign (a lock file); before anything new is sent,
recipients a killed run left mid-way are settled (:func:`settle`): a message
the ledger shows ``sending`` or ``uncertain`` is looked up in the notary's log
(relay mode): its SubmissionAcceptance there means it was handed over, and it
is never sent again; none after ``settle_timeout`` seconds (longer than the
relay takes to log or refuse what it received) means the relay did not take
it, and it is submitted again. In direct mode (``--via smtp``) nobody can tell,
so such a recipient stays ``uncertain`` and is reported, not resent
(docs/campaigns.md#crash-safety). The workers hand messages over; their
receipts are asked for here, many per request (:mod:`.receipts`).
"""

from __future__ import annotations

import contextlib
import fcntl
import multiprocessing
import os
import time
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from keys.errors import ConflictError, Error, NotFoundError

from .create import campaign_dir
from .receipts import Receipts, acceptances
from .store import PAGE, CampaignStore, Recipient
from .templates import parse
from .worker import init_worker, run_one

if TYPE_CHECKING:
    from ..api import Certmail
    from ..ledger import Entry as LedgerEntry
    from ..ledger import Ledger

__all__ = ["SendSummary", "cancel_campaign", "send_campaign", "settle"]

TODO = ("pending", "queued", "submitted")  # submitted: the receipt is still to fetch
Event = Callable[[dict[str, Any]], None]


@dataclass
class SendSummary:
    name: str
    total: int
    todo: int
    counts: dict[str, int] = field(default_factory=dict)
    settled: list[dict[str, Any]] = field(default_factory=list)
    elapsed: float = 0.0
    dry_run: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "campaign": self.name,
            "total": self.total,
            "to_send": self.todo,
            "counts": self.counts,
            "settled": self.settled,
            "elapsed_s": round(self.elapsed, 3),
            "dry_run": self.dry_run,
        }


@contextlib.contextmanager
def _locked(directory: Path, name: str) -> Iterator[None]:
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(directory / "send.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ConflictError(
                f"campaign {name} is being sent by another process",
                hint="certmail campaign status " + name,
            ) from None
        yield
    finally:
        os.close(fd)


def _entry(ledger: Ledger, store: CampaignStore, message_id: str) -> LedgerEntry:
    """The ledger's message for a recipient (NotFoundError: none stored yet)."""
    sha = store.ledger_sha256(message_id)
    if sha is None:
        raise NotFoundError(f"no message {message_id} in the ledger")
    return ledger.get(sha)


#: Unsettled messages asked about in one ``POST /v1/receipts/batch`` (a page of the
#: campaign's recipients; the notary's bound is 1,000).
SETTLE_PAGE = PAGE


def settle(
    cm: Certmail, store: CampaignStore, name: str, via: str, settle_timeout: float
) -> list[dict[str, Any]]:
    """Settle recipients whose hand-over a killed run left unknown (module docstring).

    Relay mode: the notary's log is asked about all of them in one request per page of
    :data:`SETTLE_PAGE` unsettled messages a round (``POST /v1/receipts/batch``), not
    one request a message; each acceptance found is checked before it is believed.
    A round every 0.5 s asks again about those still not found, until
    ``settle_timeout``."""
    ledger = cm.ledger
    unsure = []
    for page in store.pages(name, ("pending", "queued", "uncertain")):
        for r in page:
            try:
                entry = _entry(ledger, store, r.message_id)
            except NotFoundError:
                continue
            if entry.smtp in ("sending", "uncertain"):
                unsure.append((r, entry))
    out: list[dict[str, Any]] = []
    deadline = time.monotonic() + settle_timeout
    while unsure and via == "relay":
        found = acceptances(cm, [e.sha256 for _, e in unsure], per=SETTLE_PAGE)
        still = []
        for r, entry in unsure:
            if (got := found.get(entry.sha256)) is None:
                still.append((r, entry))
                continue
            cm.notary().check_receipt(got, entry.sha256, entry.message_id)
            _settle_accepted(cm, store, name, r, entry, got)
            out.append({"email": r.email, "settled": "accepted (in the notary's log)"})
        unsure = still
        if not unsure or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    for r, entry in unsure:
        out.append(_settle_unknown(cm, store, name, via, r, entry))
    return out


def _settle_accepted(
    cm: Certmail,
    store: CampaignStore,
    name: str,
    r: Recipient,
    entry: LedgerEntry,
    receipt: dict[str, Any],
) -> None:
    """Its SubmissionAcceptance is in the log (checked): sent, never again."""
    ledger = cm.ledger
    ledger.mark_sent(entry.sha256, "250 accepted (its SubmissionAcceptance is in the log)")
    ledger.add_receipt(entry.sha256, receipt)
    store.update(
        name,
        r.email,
        "accepted",
        sha256=entry.sha256,
        queued_at=r.queued_at or entry.created,
        reply="250 accepted (found in the log)",
        submitted_at=ledger.get(entry.sha256).updated,
        error=None,
    )


def _settle_unknown(
    cm: Certmail, store: CampaignStore, name: str, via: str, r: Recipient, entry: LedgerEntry
) -> dict[str, Any]:
    """Not in the log after the relay's deadline: it was not taken, submitted again
    (relay mode); direct mode: nobody can tell, ``uncertain``, not resent."""
    ledger = cm.ledger
    if via == "relay":
        why = "interrupted before the relay took it"
        ledger.mark_send_failed(entry.sha256, why, permanent=False)
        state, settled = "queued", "not accepted: submitted again"
    else:
        ledger.mark_send_failed(
            entry.sha256, "interrupted while sending", permanent=False, uncertain=True
        )
        why = "interrupted while sending: it may or may not have gone out (not resent)"
        state, settled = "uncertain", "uncertain (direct mode: not resent)"
    store.update(
        name,
        r.email,
        state,
        sha256=entry.sha256,
        queued_at=r.queued_at or entry.created,
        error=why,
    )
    return {"email": r.email, "settled": settled}


def _dry_run(
    store: CampaignStore,
    name: str,
    spec: dict[str, Any],
    on_event: Event | None,
) -> None:
    subject = parse(spec["subject"], "subject")
    body = parse(Path(spec["body"]).read_text(encoding="utf-8"), "body")
    for page in store.pages(name, TODO):
        for r in page:
            body.render(r.fields)
            if on_event:
                on_event(
                    {
                        "row": r.row_no,
                        "email": r.email,
                        "state": "would send",
                        "subject": subject.render(r.fields),
                    }
                )


def send_campaign(
    cm: Certmail,
    name: str,
    *,
    concurrency: int | None = None,
    rate: float | None = None,
    dry_run: bool = False,
    settle_timeout: float = 150.0,
    on_start: Callable[[int, int], None] | None = None,
    on_event: Event | None = None,
    pickup_passphrase: bytes | None = None,
) -> SendSummary:
    """Send (or resume) campaign ``name``; ``on_event`` gets one dict per recipient done.

    ``pickup_passphrase``: a campaign created with one needs it again (checked
    against what ``create`` kept, before anything is sent); it goes to the workers
    in memory only.

    Memory does not grow with the campaign: the recipients are read a page at a
    time (:meth:`CampaignStore.pages`), at most two per worker are in the pool at
    once, and each result is recorded and reported, then dropped."""
    settings = cm.settings
    t0 = time.monotonic()
    with (
        CampaignStore(settings.ledger_path) as store,
        _locked(campaign_dir(settings.home, name), name),
    ):
        c = store.get(name)
        if c.state == "cancelled":
            raise Error(f"campaign {name} was cancelled", hint=f"certmail campaign status {name}")
        if not dry_run:
            _check_pickup_passphrase(name, c.spec, pickup_passphrase)
        if not dry_run and c.spec.get("smime"):  # the CA bundle and CRL it checks with
            from .smime_trust import use_campaign_trust

            use_campaign_trust(cm, name, c.spec)
        total = sum(store.counts(name).values())
        settled = [] if dry_run else settle(cm, store, name, c.spec["via"], settle_timeout)
        todo = sum(store.counts(name).get(s, 0) for s in TODO)
        summary = SendSummary(name, total, todo, settled=settled, dry_run=dry_run)
        if on_start:
            on_start(total, todo)
        if dry_run:
            _dry_run(store, name, c.spec, on_event)
        elif todo:
            store.set_state(name, "sending")
            spec = {k: v for k, v in c.spec.items() if k != "keys"}  # looked up again
            window = Window(concurrency, rate)
            _run_pool(cm, store, name, spec, window, on_event, pickup_passphrase)
        counts = store.counts(name)
        store.checkpoint()  # erased pickup keys (.passphrases) out of the WAL too
        if not dry_run and store.get(name).state != "cancelled":
            left = sum(counts.get(s, 0) for s in (*TODO, "uncertain"))
            store.set_state(name, "sending" if left else "done")
        summary.counts = counts
    summary.elapsed = time.monotonic() - t0
    return summary


def _check_pickup_passphrase(name: str, spec: dict[str, Any], given: bytes | None) -> None:
    """The campaign's pickup passphrase must be given, and be the one ``create`` had."""
    from ..sealed.pickup_sending import check_passphrase

    check = spec.get("pickup_passphrase")
    if check is None and given is not None:
        raise Error(
            f"campaign {name} was created without a pickup passphrase; nothing was sent",
            hint=f"certmail campaign send {name} (without --pickup-passphrase-file)",
        )
    if check is not None and given is None:
        raise Error(
            f"campaign {name}'s pickup messages need the passphrase it was created with; "
            "nothing was sent",
            hint=f"certmail campaign send {name} --pickup-passphrase-file FILE",
        )
    if check is not None and given is not None and not check_passphrase(given, check):
        raise Error(
            f"that is not the pickup passphrase campaign {name} was created with; nothing was sent",
            hint="give --pickup-passphrase-file the file used at campaign create",
        )


def _recheck_keys(
    cm: Certmail, store: CampaignStore, name: str, spec: dict[str, Any], page: list[Recipient]
) -> tuple[list[tuple[Recipient, str | None]], list[dict[str, Any]]]:
    """Look a page of recipients' keys up again (one may have been revoked or expired
    since ``create``): each sendable recipient with its key's fingerprint (None: one
    ``create`` listed for pickup, who needs none), and those without a key now, failed
    with the reason (recorded)."""
    from .keychecks import key_checks
    from .recipients import Row

    pickup = set(spec.get("pickup", ()))
    rows = [Row(r.row_no, r.email, r.fields) for r in page if r.email.lower() not in pickup]
    smime = bool(spec.get("smime"))
    keys, problems, _ = key_checks(cm, rows, smime=smime, sealed=smime and bool(spec.get("sealed")))
    bad = {p.line: p for p in problems}
    failed = [
        {"email": r.email, "state": "failed", "error": bad[r.row_no].message, "row": r.row_no}
        for r in page
        if r.row_no in bad
    ]
    store.record(name, failed)
    return [(r, keys.get(r.email.lower())) for r in page if r.row_no not in bad], failed


@dataclass
class Window:
    """How many recipients are in the pool at once (two per worker) and how fast they
    are handed to it (``rate`` messages/s, None: as fast as the workers go)."""

    concurrency: int | None
    rate: float | None
    start: float = 0.0
    sent: int = 0

    @property
    def workers(self) -> int:
        return max(1, self.concurrency or os.cpu_count() or 2)

    def wait(self, pending: int) -> bool:
        """Whether one more may be submitted now (sleeping for the rate if the pool is idle)."""
        if pending >= self.workers * 2:
            return False
        if self.rate:
            delay = self.start + self.sent / self.rate - time.monotonic()
            if delay > 0:
                if pending:
                    return False
                time.sleep(delay)
        self.sent += 1
        return True


def _run_pool(
    cm: Certmail,
    store: CampaignStore,
    name: str,
    spec: dict[str, Any],
    window: Window,
    on_event: Event | None,
    pickup_passphrase: bytes | None = None,
) -> None:
    """Run the campaign's recipients still to send through the pool.

    Every worker is forked first, from the lean command (before any page of
    recipients or the keyring's listing is read into it): the workers do not
    inherit them, and the parent has no other thread (a progress bar) when it
    forks; events are reported only after that."""
    n = window.workers
    ctx = multiprocessing.get_context("fork")
    cm.keyring.ensure_agent()  # once, before the workers fork
    smime = None
    if spec.get("smime"):  # the S/MIME key unlocked once, here: the workers inherit it
        smime = cm.smime
        smime.own()
    with ProcessPoolExecutor(
        n,
        mp_context=ctx,
        initializer=init_worker,
        initargs=(cm.settings, cm.passphrase, name, spec, pickup_passphrase, smime),
    ) as pool:
        pool.submit(os.getpid).result()  # a fork pool starts all its workers at once
        window.start = time.monotonic()
        pending: set[Future[dict[str, Any]]] = set()
        pages = store.pages(name, TODO)
        queue: list[tuple[Recipient, str | None]] = []
        receipts = Receipts(cm, spec["via"])  # the hand-overs' receipts, many per request
        cancelled = False
        while True:
            while not queue and not cancelled and (page := next(pages, None)) is not None:
                queue, failed = _recheck_keys(cm, store, name, spec, page)
                queue.reverse()
                _report(on_event, failed)
            if not queue and not pending and not receipts.waiting:
                break
            while queue and window.wait(len(pending)):
                pending.add(pool.submit(run_one, *queue.pop()))
            done, pending = wait(pending, timeout=0.2, return_when=FIRST_COMPLETED)
            results = receipts.add([f.result() for f in done])
            if receipts.due(idle=not pending):
                results += receipts.flush()
            store.record(name, [r for r in results if r["state"] != "cancelled"])
            _report(on_event, results)
            if done and store.state(name) == "cancelled":
                queue.clear()  # what was handed to the pool still finishes its step
                cancelled = True


def _report(on_event: Event | None, events: list[dict[str, Any]]) -> None:
    for ev in events:
        if on_event:
            on_event(ev)


def cancel_campaign(cm: Certmail, name: str) -> dict[str, Any]:
    """Stop what has not been handed over (nothing stored, or stored and not yet claimed
    for sending: removed from the outbox); report what has been, or may have been.

    The campaign is marked ``cancelled`` first (a running ``send`` stops taking new
    recipients), then its recipients still to send are walked a page at a time
    (:meth:`CampaignStore.pages`), each page recorded in one transaction: memory
    does not grow with the campaign, only with the list of those in flight."""
    ledger = cm.ledger
    with CampaignStore(cm.settings.ledger_path) as store:
        store.state(name)  # NotFoundError: no such campaign
        store.set_state(name, "cancelled")
        cancelled = handed_over = 0
        in_flight: list[str] = []
        for page in store.pages(name, TODO):
            results: list[dict[str, Any]] = []
            stored: list[tuple[Recipient, LedgerEntry]] = []
            for r in page:
                try:
                    stored.append((r, _entry(ledger, store, r.message_id)))
                except NotFoundError:  # nothing stored: nothing can go out
                    results.append({"email": r.email, "state": "cancelled"})
            removed = ledger.remove_unclaimed([e.sha256 for _, e in stored if e.smtp == "pending"])
            for r, entry in stored:
                if entry.sha256 in removed:
                    results.append({"email": r.email, "state": "cancelled"})
                    continue
                if entry.smtp == "pending":  # claimed for sending meanwhile
                    entry = ledger.get(entry.sha256)
                if entry.smtp == "sent":
                    done = "accepted" if entry.notary == "done" else "submitted"
                    results.append(
                        {
                            "email": r.email,
                            "state": done,
                            "sha256": entry.sha256,
                            "reply": entry.smtp_reply,
                        }
                    )
                    handed_over += 1
                else:  # being handed over (or uncertain): not changed, listed
                    in_flight.append(r.email)
            store.record(name, results)
            cancelled += sum(1 for x in results if x["state"] == "cancelled")
        return {
            "campaign": name,
            "cancelled": cancelled,
            "handed_over": handed_over,
            "in_flight": in_flight,
            "counts": store.counts(name),
        }
