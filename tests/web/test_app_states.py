"""The sender's view's states from evidence logged through the notary's real API: an open
seen through a tracking link (``POST /v1/tracking``, ``GET /r/{token}``) turns the
recipient to ``opened`` in the list, the state filter and the timeline; two accounts that
notarized one SHA-256 each see only their own entries; a revoked account's session ends."""

from __future__ import annotations

import hashlib
import secrets
import subprocess

import httpx

from tests.fixtures.notary import CERTMAIL
from tests.web.app_world import AppWorld, notarize, rows, sha, sign_in


def test_an_open_through_a_tracking_link_shows_as_opened(app_world: AppWorld) -> None:
    url, token = app_world.url, app_world.notary.token_for("tracker@example.org")
    digest, mid = sha("tracked"), "<tracked@example.org>"
    notarize(url, token, digest, mid)
    link = secrets.token_urlsafe(24)
    reg = {
        "sha256": digest,
        "message_id": mid,
        "tokens": [
            {
                "recipient": "bob@example.net",
                "token_sha256": hashlib.sha256(link.encode()).hexdigest(),
            }
        ],
    }
    r = httpx.post(url + "/v1/tracking", json=reg, headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 200, r.text
    c = sign_in(url, token)
    assert rows(c.get("/app", params={"state": "opened"}).text) == []
    assert httpx.get(f"{url}/r/{link}").status_code == 200  # the recipient's client fetches it
    assert rows(c.get("/app", params={"state": "opened"}).text) == [digest]
    assert rows(c.get("/app", params={"recipient": "BOB@example.net"}).text) == [digest]
    live = c.get("/app/list.json").json()["html"]
    assert "bob@example.net" in live and 'class="state opened"' in live
    tl = c.get(f"/app/messages/{digest}/timeline.json").json()
    assert "opened" in tl["html"] and "weak evidence" in tl["html"] and tl["live"] is False


def test_one_hash_notarized_by_two_accounts_is_two_messages(app_world: AppWorld) -> None:
    shared = app_world.alice_shas[0]
    other = app_world.notary.token_for("eve@example.org")
    notarize(app_world.url, other, shared, "<eves-copy@example.org>")
    eve = sign_in(app_world.url, other)
    assert rows(eve.get("/app").text) == [shared]
    page = eve.get(f"/app/messages/{shared}").text
    assert "eves-copy" in page and "letter-0" not in page
    alice = sign_in(app_world.url, app_world.alice)
    page = alice.get(f"/app/messages/{shared}").text
    assert "letter-0" in page and "eves-copy" not in page
    assert rows(alice.get("/app", params={"q": "<eves-copy@example.org>"}).text) == []


def test_a_revoked_accounts_session_ends(app_world: AppWorld) -> None:
    token = app_world.notary.token_for("leaver@example.org")
    c = sign_in(app_world.url, token)
    assert "leaver@example.org" in c.get("/app").text
    subprocess.run(
        [
            *CERTMAIL,
            "notary",
            "accounts",
            "revoke",
            "leaver@example.org",
            "--dir",
            str(app_world.notary.directory),
        ],
        check=True,
        capture_output=True,
    )
    assert 'id="token"' in c.get("/app").text
    assert c.get("/app/list.json").status_code == 401
