"""The campaign tables (certmail/campaign/store.py): a ledger made before sealed campaigns
gains the ``seal`` column when opened, its rows intact; ``create --sealed`` without a
notary is refused before anything is recorded."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from certmail.campaign.store import CAMPAIGN_SCHEMA, CampaignStore
from tests.fixtures.campaign import write_csv
from tests.fixtures.cli import one_line_error, run

OLD_SCHEMA = "\n".join(
    line for line in CAMPAIGN_SCHEMA.splitlines() if not line.lstrip().startswith("seal ")
)


def test_an_older_ledger_gains_the_seal_column(tmp_path: Path) -> None:
    assert "seal " not in OLD_SCHEMA.split("campaign_recipients")[1]
    path = tmp_path / "ledger.db"
    with sqlite3.connect(path) as db:
        db.executescript(OLD_SCHEMA)
    with CampaignStore(path) as store:
        store.create("old", {"via": "relay"}, [(2, "a@example.net", {"email": "a"}, "<m1@x>")])
        store.update("old", "a@example.net", "accepted", sha256="ab" * 32, seal="registered")
        (r,) = store.recipients("old")
    assert (r.state, r.sha256, r.seal) == ("accepted", "ab" * 32, "registered")
    with CampaignStore(path) as store:  # opened again: nothing to add, the row kept
        assert store.recipient("old", "a@example.net").seal == "registered"


def test_a_ledger_before_pickup_keys_gains_them_and_a_later_column_is_ignored(
    tmp_path: Path,
) -> None:
    """A ledger from before own pickup passphrases gains ``pickup_key``, a key kept is erased
    once the message is stored; a column a later version adds does not stop the reading."""
    older = "\n".join(
        line
        for line in CAMPAIGN_SCHEMA.splitlines()
        if not line.lstrip().startswith(("seal ", "pickup_key "))
    )
    path = tmp_path / "ledger.db"
    with sqlite3.connect(path) as db:
        db.executescript(older)
    db.close()
    rows = [(2, "a@example.net", {"email": "a"}, "<m1@x>"), (3, "b@example.net", {}, "<m2@x>")]
    with CampaignStore(path) as store:
        store.create("c", {"via": "relay"}, rows, pickup_keys={"a@example.net": '{"p": 1}'})
        assert [r.pickup_key for r in store.recipients("c")] == ['{"p": 1}', None]
        store.update("c", "a@example.net", "queued", error="notary away")  # nothing stored
        assert store.recipient("c", "a@example.net").pickup_key == '{"p": 1}'
        store.update("c", "a@example.net", "accepted", sha256="ab" * 32)
        assert store.recipient("c", "a@example.net").pickup_key is None
    db = sqlite3.connect(path)
    db.execute("ALTER TABLE campaign_recipients ADD COLUMN from_the_future TEXT")
    db.commit()
    db.close()
    with CampaignStore(path) as store:
        assert [r.email for r in store.recipients("c")] == ["a@example.net", "b@example.net"]


def test_sealed_needs_a_notary(correspondents: Any, tmp_path: Path) -> None:
    c = correspondents
    csv_path = write_csv(tmp_path / "r.csv", [{"email": c.bob.email}])
    body = tmp_path / "body.txt"
    body.write_text("Dear tenant.\n")
    p = run(
        c.alice, *("campaign", "create", "rent", "--recipients", str(csv_path)),
        *("--subject", "Notice", "--body-file", str(body), "--sealed"),
    )  # fmt: skip
    assert p.returncode == 1 and "--sealed needs a notary" in one_line_error(p)
    assert "certmail: hint: set CERTMAIL_NOTARY_URL" in p.stderr
    assert run(c.alice, "campaign", "list", "--json").stdout.count("rent") == 0


def test_pages_walk_the_campaign_a_page_at_a_time(tmp_path: Path) -> None:
    """``campaign send`` reads its recipients through ``pages``: every one still to
    send exactly once, in row order, ``size`` at a time, even while the walk's own
    results move rows out of the states asked for (or back into them)."""
    rows = [(k + 2, f"r{k}@example.net", {"email": f"r{k}"}, f"<m{k}@x>") for k in range(23)]
    with CampaignStore(tmp_path / "ledger.db") as store:
        store.create("big", {"via": "relay"}, rows)
        store.update("big", "r3@example.net", "accepted")
        seen, sizes = [], []
        for page in store.pages("big", ("pending", "queued"), size=5):
            sizes.append(len(page))
            seen += [r.row_no for r in page]
            for r in page:  # sent, or a transient failure: queued again for the next run
                store.update("big", r.email, "queued" if r.row_no % 2 else "accepted")
        assert store.state("big") == "created"
    assert seen == [k + 2 for k in range(23) if k != 3]
    assert sizes == [5, 5, 5, 5, 2]
