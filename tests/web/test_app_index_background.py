"""``/app``'s message index is caught up in the background (notary/web/app_follow.py).

A backlog larger than one catch-up batch (the index rebuilt from the log at start-up,
``notary serve --workers 2``): the first list request answers the whole list, never a
partial page. The ``deferred`` filter: a real relay and recipient server that answers
451 to one message and takes the other.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from certmail.relay_client import submit
from notary.web.app_db import WEB_DB
from notary.web.app_index import CATCH_UP_LIMIT
from tests.fixtures.notary import NotaryProcess, init_notary_dir
from tests.fixtures.smtp import SmtpSink
from tests.notary.relay_helpers import ALICE, BOB, RelayNotary, configure, message, wait_for
from tests.web.app_world import rows, sign_in

BACKLOG = CATCH_UP_LIMIT + 700  # more than one request's worth in the old per-request catch-up


def _fill(url: str, token: str, n: int, tag: str) -> list[str]:
    """``n`` messages notarized by ``token``'s account (batches of 2,000); their SHA-256s."""
    shas = [hashlib.sha256(f"{tag}-{i}".encode()).hexdigest() for i in range(n)]
    with httpx.Client(base_url=url, timeout=600, headers={"Authorization": f"Bearer {token}"}) as c:
        for start in range(0, n, 2000):
            items = [
                {"sha256": shas[i], "message_id": f"<{tag}-{i}@example.org>"}
                for i in range(start, min(start + 2000, n))
            ]
            r = c.post("/v1/notarize/batch", json={"items": items, "tst": False})
            assert r.status_code == 200, r.text
    return shas


def test_the_first_list_after_a_backlog_is_whole(tmp_path: Path) -> None:
    d = init_notary_dir(tmp_path / "notary")
    notary = NotaryProcess(d)
    notary.start()
    try:
        token = notary.token_for("alice@example.org")
        shas = _fill(notary.url, token, BACKLOG, "alice")
        _fill(notary.url, notary.token_for("carol@example.org"), 300, "carol")
        notary.stop()
        for f in d.glob(WEB_DB + "*"):  # the index is rebuilt from the log at start-up
            f.unlink()
        notary.start(extra=["--workers", "2"])
        c = sign_in(notary.url, token)
        got = c.get("/app/list.json").json()
        assert got["total"] == BACKLOG
        assert rows(got["html"]) == shas[::-1][:50]
        last = c.get("/app", params={"page": str((BACKLOG + 49) // 50)}).text
        assert rows(last) == shas[::-1][(BACKLOG - 1) // 50 * 50 :]
    finally:
        notary.stop()


@pytest.fixture
def relay(tmp_path: Path) -> Iterator[tuple[RelayNotary, SmtpSink]]:
    sink = SmtpSink(tmp_path / "sink")
    sink.start()
    d = init_notary_dir(tmp_path / "notary")
    configure(d, relay_retry_initial=0.2)
    r = RelayNotary(d, sink.port)
    r.start()
    try:
        yield r, sink
    finally:
        r.proc.stop()
        sink.stop()


def test_the_deferred_filter(relay: tuple[RelayNotary, SmtpSink]) -> None:
    r, sink = relay

    def send(mid: str) -> str:
        return submit(
            message(mid), mail_from=ALICE, recipients=[BOB], notary_url=r.url, token=r.token
        )

    taken = send("taken")
    r.wait_events(taken, "RelayToNonERDS")
    sink.fail("rcpt", 451, "4.7.1 greylisted, come back later", sticky=True)
    waiting = send("waiting")
    auth = {"Authorization": f"Bearer {r.token}"}

    def deferred() -> bool:
        got = httpx.get(f"{r.url}/v1/messages/{waiting}/deliveries", headers=auth, timeout=10)
        return got.status_code == 200 and got.json()["deliveries"][0]["attempts"] >= 1

    wait_for(deferred, what="a first, deferred attempt")
    c = sign_in(r.url, r.token)

    def listed(**q: str) -> list[str]:
        got = c.get("/app/list.json", params=q)
        assert got.status_code == 200, got.text
        return rows(got.json()["html"])

    assert listed(state="deferred") == [waiting]
    assert listed(state="deferred", recipient=BOB) == [waiting]
    assert listed(state="deferred", recipient="carol@c.test") == []
    assert listed(state="delivered") == [taken]
    assert listed(state="accepted") == [waiting]  # in flight, deferred ones included
    page = c.get("/app", params={"state": "deferred"}).text
    assert rows(page) == [waiting] and '<option value="deferred" selected' in page
    sink.heal()
    r.wait_events(waiting, "RelayToNonERDS")
    assert listed(state="deferred") == []
