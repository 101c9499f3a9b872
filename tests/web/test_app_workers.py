"""``/app`` under ``notary serve --workers 2``: a session made by one worker process is good
in the other, the index is caught up once whichever worker asks, and signing out ends the
session in both (the old cookie refused by every worker)."""

from __future__ import annotations

from pathlib import Path

import httpx

from tests.fixtures.notary import NotaryProcess, init_notary_dir
from tests.web.app_world import form_csrf, notarize, rows, sha, sign_in


def test_sessions_hold_across_workers_and_die_in_all(tmp_path: Path) -> None:
    notary = NotaryProcess(init_notary_dir(tmp_path / "notary"))
    notary.start(extra=["--workers", "2"])
    try:
        token = notary.token_for("alice@example.org")
        digests = [sha(f"w-{i}") for i in range(5)]
        for i, d in enumerate(digests):
            notarize(notary.url, token, d, f"<w-{i}@example.org>")
        c = sign_in(notary.url, token)
        cookie = c.cookies["certmail_session"]

        def fresh() -> httpx.Client:  # a new connection each time: either worker answers
            return httpx.Client(
                base_url=notary.url, cookies={"certmail_session": cookie}, timeout=60
            )

        for _ in range(16):
            with fresh() as f:
                assert rows(f.get("/app").text) == digests[::-1]
        listing = c.get("/app")
        assert c.post("/app/signout", data={"csrf": form_csrf(listing.text)}).status_code == 303
        for _ in range(16):
            with fresh() as f:
                assert 'id="token"' in f.get("/app").text
                assert f.get("/app/list.json").status_code == 401
    finally:
        notary.stop()
