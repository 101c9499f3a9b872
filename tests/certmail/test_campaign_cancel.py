"""``campaign cancel`` over a large campaign (issue 15): a page at a time.

The campaign tables and the ledger are the real ones (one SQLite file, a real
outbox directory); the messages are recorded straight into the ledger's table in
each of the states a cancel can meet, so a few thousand rows take a second:
nothing stored yet, stored and not yet claimed (``pending``), being handed over
(``sending``), handed over (``sent``, with or without its receipt).
"""

from __future__ import annotations

import sqlite3
import tracemalloc
from pathlib import Path
from typing import Any

from certmail.api import Certmail
from certmail.campaign.runner import cancel_campaign
from certmail.campaign.store import CampaignStore
from certmail.config import Settings
from certmail.ledger_rows import now_text

SMTP_OF = {0: None, 1: "pending", 2: "sending", 3: "sent", 4: "sent"}  # by row % 8, else None


def _campaign(cm: Certmail, name: str, n: int) -> dict[str, tuple[str | None, str | None]]:
    """``n`` recipients, ``email -> (smtp, notary)`` of their ledger entry (None: none)."""
    ledger = cm.ledger  # the ledger's tables first
    rows = [(k + 2, f"{name}-{k}@example.net", {"email": "x"}, f"<{name}.{k}@x>") for k in range(n)]
    with CampaignStore(cm.settings.ledger_path) as store:
        store.create(name, {"via": "relay"}, rows)
    want: dict[str, tuple[str | None, str | None]] = {}
    inserts = []
    now = now_text()
    for k, (_, email, _, mid) in enumerate(rows):
        smtp = SMTP_OF.get(k % 8) if k % 8 != 2 or k < 40 else None  # a few in flight
        notary = "done" if k % 8 == 3 else "pending"
        want[email] = (smtp, notary if smtp else None)
        if smtp is None:
            continue
        sha = f"{name}{k:060d}"[-64:]
        if smtp == "pending":
            (ledger.outbox_dir / f"{sha}.eml").write_bytes(b"x")
        inserts.append(
            (sha, mid, "alice@example.org", f'["{email}"]', "relay", 1, now, now, smtp, notary)
        )
    with sqlite3.connect(cm.settings.ledger_path) as db:
        db.executemany(
            "INSERT INTO messages (sha256, message_id, mail_from, recipients, via, size,"
            " created, updated, smtp, notary, smtp_reply) VALUES (?,?,?,?,?,?,?,?,?,?,'250 ok')",
            inserts,
        )
    return want


def _ledger_rows(path: Path) -> dict[str, tuple[Any, ...]]:
    """Every ledger message, ``sha256 -> (smtp, the whole row)``."""
    with sqlite3.connect(path) as db:
        return {r[0]: (r[1], r) for r in db.execute("SELECT sha256, smtp, * FROM messages")}


def test_cancel_pages_through_thousands_cancels_the_rest_and_reports_the_handed_over(
    tmp_path: Path,
) -> None:
    cm = Certmail(Settings(home=tmp_path / "home"))
    want = _campaign(cm, "big", 4000)
    small = _campaign(cm, "small", 600)
    before = _ledger_rows(cm.settings.ledger_path)

    tracemalloc.start()
    out_small = cancel_campaign(cm, "small")
    peak_small = tracemalloc.get_traced_memory()[1]
    tracemalloc.reset_peak()
    out = cancel_campaign(cm, "big")
    peak_big = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    # A page in memory at a time: 4,000 recipients cost what 600 (two pages) do,
    # not 6.7 times as much (the whole campaign read at once).
    assert peak_big < 2 * peak_small, (peak_small, peak_big)

    after = _ledger_rows(cm.settings.ledger_path)
    with CampaignStore(cm.settings.ledger_path) as store:
        assert store.state("big") == "cancelled"
        states = {r.email: r for page in store.pages("big", _ALL) for r in page}
    assert len(states) == 4000
    in_flight = []
    for email, (smtp, notary) in want.items():
        r = states[email]
        sha = r.sha256
        if smtp in (None, "pending"):  # not handed over: cancelled, nothing left to go out
            assert r.state == "cancelled", (email, r.state)
        elif smtp == "sent":  # handed over: reported with the ledger's truth, not touched
            assert r.state == ("accepted" if notary == "done" else "submitted"), email
            assert sha is not None and after[sha] == before[sha]
            assert r.reply == "250 ok"
        else:  # being handed over: listed, its row and its message unchanged
            assert r.state == "pending" and r.sha256 is None
            in_flight.append(email)
    stored = {s for s, (smtp, _) in before.items() if smtp == "pending" and s.startswith("big")}
    assert len(stored) == 500 and not stored & after.keys()  # forgotten by the ledger
    assert not [p for p in cm.ledger.outbox_dir.iterdir() if p.name.startswith("big")]
    assert sorted(out["in_flight"]) == sorted(in_flight) and len(in_flight) == 5
    n_sent = sum(1 for s, _ in want.values() if s == "sent")
    assert out["handed_over"] == n_sent
    assert out["cancelled"] == sum(1 for s, _ in want.values() if s in (None, "pending"))
    assert out["counts"] == {
        "cancelled": out["cancelled"],
        "accepted": sum(1 for s, n in want.values() if s == "sent" and n == "done"),
        "submitted": sum(1 for s, n in want.values() if s == "sent" and n == "pending"),
        "pending": 5,
    }
    assert out_small["cancelled"] == sum(1 for s, _ in small.values() if s in (None, "pending"))


_ALL = ("pending", "queued", "submitted", "accepted", "cancelled", "failed", "uncertain")
