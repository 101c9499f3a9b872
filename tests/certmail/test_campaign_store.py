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
