"""The sender's expiry notice is queued exactly once (notary/seal_notices.py, issue 12).

Two notary processes' worth of :class:`~notary.seals.Seals` (two services, one
notary directory) sweep at once; a sweep interrupted on either side of the
spool commit is run again. Real storage and sequencer; the clock is moved past
the expiry. Delivery to a mailbox is tests/notary/test_seal_notices_relay.py.
"""

from __future__ import annotations

import asyncio
import email
import hashlib
import multiprocessing
import os
import sqlite3
from datetime import UTC, datetime, timedelta
from email.message import Message
from pathlib import Path

from notary.seal_notices import notice_key
from notary.sealformat import SealRegistration
from notary.seals import Seals
from notary.sequencer import Submission
from notary.service import NotaryService
from tests.fixtures.notary import init_notary_dir

ALICE = "alice@example.org"
RCPTS = ("bob@example.net", "carol@example.net")


class Clock:
    """The real time (checkpoints need it to move forward), moved on by ``shift``."""

    def __init__(self) -> None:
        self.shift = timedelta(0)

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.shift


def _registration(n: int) -> SealRegistration:
    sha = hashlib.sha256(f"sealed message {n}".encode()).hexdigest()
    return SealRegistration(
        sha,
        f"<m{n}@example.org>",
        os.urandom(32),
        ("AB" * 20,),
        datetime.now(UTC) + timedelta(minutes=5),
        RCPTS,
    )


async def _accepted(svc: NotaryService, reg: SealRegistration, account_id: int) -> None:
    extra = {"submitter": ALICE, "channel": "smtp", "recipients": list(RCPTS)}
    sub = Submission("SubmissionAcceptance", reg.sha256, reg.message_id, account_id, extra)
    await svc.sequencer.submit([sub])


def _notices(directory: Path, reg: SealRegistration) -> list[str]:
    """The recipients of the notices spooled for ``reg`` (the relay's queue, notary.db)."""
    with sqlite3.connect(directory / "notary.db") as db:
        rows = db.execute(
            "SELECT d.recipient FROM spool s JOIN deliveries d ON d.spool_id = s.id"
            " WHERE s.sha256 = ? AND s.kind = 'notice'",
            (notice_key(reg.sha256),),
        ).fetchall()
    return [r[0] for r in rows]


def _notice(directory: Path, reg: SealRegistration) -> Message:
    with sqlite3.connect(directory / "notary.db") as db:
        (data,) = db.execute(
            "SELECT data FROM spool WHERE sha256 = ?", (notice_key(reg.sha256),)
        ).fetchone()
    return email.message_from_bytes(data)


def _failures(svc: NotaryService, reg: SealRegistration) -> list[str]:
    entries = svc.storage.entries_for_message(reg.sha256)
    return [e.event for e in entries if e.event.endswith("Failure")]


def _undo_destroy(directory: Path, sha: str) -> None:
    """As if the sweep had died after the notice's spool commit, before destroying the share."""
    with sqlite3.connect(directory / "seals.db") as db:
        db.execute("UPDATE seals SET wrapped = x'00', state = 'sealed' WHERE sha256 = ?", (sha,))


def sweep_in_a_process(directory: Path) -> int:
    """One notary worker process: open the notary (its clock past the expiry) and sweep."""
    clock = Clock()
    clock.shift = timedelta(minutes=10)
    svc = NotaryService.open(directory, clock=clock)

    async def sweep() -> int:
        await svc.sequencer.start()
        seals = Seals(svc, directory)
        try:
            return await seals.sweep()
        finally:
            seals.close()
            await svc.sequencer.stop()

    try:
        return asyncio.run(sweep())
    finally:
        svc.close()


def test_one_notice_from_two_sweeping_workers_and_after_interrupted_sweeps(
    tmp_path: Path,
) -> None:
    d = init_notary_dir(tmp_path / "notary")
    svc = NotaryService.open(d, clock=Clock())
    seals = Seals(svc, d)
    first, second = _registration(1), _registration(2)

    async def before() -> None:
        await svc.sequencer.start()
        account, _ = svc.add_account([ALICE])
        for reg in (first, second):
            seals.register(account.id, reg)
            await _accepted(svc, reg, account.id)
        # the second's sweep died after logging its failures, before its notice was spooled
        extra = {"mode": "sealed", "reason": "expired", "expires": "2026-01-01T00:00:00Z"}
        failures = [
            Submission(
                "ContentHandoverFailure", second.sha256, second.message_id, account.id,
                {**extra, "recipient": r},
            )
            for r in RCPTS
        ]  # fmt: skip
        await svc.sequencer.submit(failures)
        await svc.sequencer.stop()

    try:
        asyncio.run(before())
        with multiprocessing.get_context("spawn").Pool(2) as pool:
            logged = pool.map(sweep_in_a_process, [d, d])
        assert sum(logged) == 2  # first's two recipients, logged by one of the two
        for reg in (first, second):
            assert _notices(d, reg) == [ALICE]
            assert _failures(svc, reg) == ["ContentHandoverFailure"] * 2
            assert seals.get(reg.sha256).wrapped is None  # type: ignore[union-attr]

        notice = _notice(d, first)  # both recipients named, a receipt for each attached
        text = notice.get_payload(0).get_payload(decode=True).decode()  # type: ignore[union-attr]
        assert all(r in text for r in RCPTS) and first.message_id in notice["Subject"]
        names = [p.get_filename() for p in notice.walk() if p.get_filename()]
        assert names == [f"receipt-ContentHandoverFailure-{i}.json" for i in (1, 2)]

        _undo_destroy(d, first.sha256)  # died after the spool commit: nothing is sent again
        assert sweep_in_a_process(d) == 0
        assert _notices(d, first) == [ALICE]
        assert seals.get(first.sha256).state == "expired"  # type: ignore[union-attr]
    finally:
        seals.close()
        svc.close()


def test_no_notice_for_a_refused_or_never_sent_seal(tmp_path: Path) -> None:
    d = init_notary_dir(tmp_path / "notary")
    clock = Clock()
    svc = NotaryService.open(d, clock=clock)

    async def scenario() -> None:
        await svc.sequencer.start()
        seals = Seals(svc, d)
        account, _ = svc.add_account([ALICE])
        unsent = _registration(3)
        seals.register(account.id, unsent)  # registered, never submitted
        clock.shift = timedelta(minutes=10)
        assert await seals.sweep() == 0
        assert _notices(d, unsent) == [] and _failures(svc, unsent) == []
        assert seals.get(unsent.sha256).wrapped is None  # type: ignore[union-attr]
        seals.close()
        await svc.sequencer.stop()

    try:
        asyncio.run(scenario())
    finally:
        svc.close()
