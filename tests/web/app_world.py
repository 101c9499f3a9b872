"""The sender's view's world for the web tests: ``app_world`` (a real notary process with
three of alice's notarized messages and one of mallory's) and the helpers that drive
``/app`` over HTTP (sign-in form, `certmail web-login` link, listing rows)."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.fixtures.cli import clean_env, cli
from tests.fixtures.notary import NotaryProcess, init_notary_dir

ALICE, MALLORY = "alice@example.org", "mallory@example.net"


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass
class AppWorld:
    notary: NotaryProcess
    alice: str
    mallory: str
    alice_shas: list[str]
    mallory_sha: str

    @property
    def url(self) -> str:
        return self.notary.url


def notarize(url: str, token: str, digest: str, mid: str) -> None:
    r = httpx.post(
        url + "/v1/notarize",
        json={"sha256": digest, "message_id": mid},
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )
    assert r.status_code == 200, r.text


@pytest.fixture(scope="module")
def app_world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AppWorld]:
    d = init_notary_dir(tmp_path_factory.mktemp("app") / "notary")
    notary = NotaryProcess(d)
    notary.start()
    try:
        alice, mallory = notary.token_for(ALICE), notary.token_for(MALLORY)
        shas = []
        for i in range(3):
            shas.append(sha(f"alice-{i}"))
            notarize(notary.url, alice, shas[-1], f"<letter-{i}@example.org>")
        notarize(notary.url, mallory, sha("mallory-0"), "<secret@example.net>")
        yield AppWorld(notary, alice, mallory, shas, sha("mallory-0"))
    finally:
        notary.stop()


def form_csrf(html: str) -> str:
    m = re.search(r'name="csrf" value="([^"]+)"', html)
    assert m, html
    return m.group(1)


def sign_in(url: str, token: str) -> httpx.Client:
    """A client signed in through the sign-in form (the session cookie in its jar)."""
    c = httpx.Client(base_url=url, timeout=120)
    page = c.get("/app")
    r = c.post("/app/signin", data={"token": token, "csrf": form_csrf(page.text)})
    assert r.status_code == 303 and r.headers["location"] == "/app", r.text
    return c


def web_login(url: str, token: str, home: Path) -> str:
    """The link `certmail web-login` prints (the real CLI, the account's token)."""
    env = clean_env(home, CERTMAIL_NOTARY_URL=url, CERTMAIL_NOTARY_TOKEN=token)
    p = cli("web-login", env=env)
    assert p.returncode == 0, p.stderr
    link = p.stdout.strip()
    assert link.startswith(url + "/app/login/") and "10 minutes" in p.stderr
    return link


def rows(html: str) -> list[str]:
    return re.findall(r'<tr data-sha256="([0-9a-f]{64})"', html)
