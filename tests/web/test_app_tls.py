"""The sender's view in process (the notary's ASGI app, its clock injected): over TLS every
cookie is ``Secure``; a sign-in link from ``POST /v1/web/login`` stops working 10 minutes
later and a session after 8 hours, by the notary's own clock."""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from notary.api import create_app
from notary.service import NotaryService, token_hash
from tests.fixtures.notary import init_notary_dir


class Clock:
    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[TestClient, Clock, str]]:
    clock = Clock()
    svc = NotaryService.open(init_notary_dir(tmp_path / "notary"), clock=clock)
    token = secrets.token_urlsafe(32)
    svc.storage.add_account(["alice@example.org"], token_hash(token), clock())
    try:
        with TestClient(create_app(svc), base_url="https://notary.test") as c:
            yield c, clock, token
    finally:
        svc.close()


def _csrf(html: str) -> str:
    m = re.search(r'name="csrf" value="([^"]+)"', html)
    assert m
    return m.group(1)


def test_over_tls_every_cookie_is_secure(served: tuple[TestClient, Clock, str]) -> None:
    c, _, token = served
    page = c.get("/app")
    pre = page.headers["set-cookie"]
    assert pre.startswith("certmail_presign=") and "; Secure" in pre and "HttpOnly" in pre
    r = c.post(
        "/app/signin", data={"token": token, "csrf": _csrf(page.text)}, follow_redirects=False
    )
    assert r.status_code == 303
    cookie = r.headers["set-cookie"]
    assert cookie.startswith("certmail_session=") and "Secure" in cookie and "HttpOnly" in cookie


def test_a_link_expires_after_ten_minutes(served: tuple[TestClient, Clock, str]) -> None:
    c, clock, token = served
    auth = {"Authorization": f"Bearer {token}"}
    late = c.post("/v1/web/login", headers=auth).json()
    assert late["url"].startswith("https://notary.test/app/login/")
    clock.now += timedelta(minutes=10, seconds=1)
    page = c.get(late["url"])
    link = late["url"].rsplit("/", 1)[1]
    r = c.post("/app/login", data={"link": link, "csrf": _csrf(page.text)}, follow_redirects=False)
    assert r.status_code == 403 and "expired" in r.text
    fresh = c.post("/v1/web/login", headers=auth).json()
    clock.now += timedelta(minutes=9)
    page = c.get(fresh["url"])
    link = fresh["url"].rsplit("/", 1)[1]
    r = c.post("/app/login", data={"link": link, "csrf": _csrf(page.text)}, follow_redirects=False)
    assert r.status_code == 303
    assert "alice@example.org" in c.get("/app").text
    clock.now += timedelta(hours=8, seconds=1)
    assert 'id="token"' in c.get("/app").text  # the session expired
