"""``GET /app``, the sender's view (issue 13 item 2), at the HTTP level against a real notary
process: sign-in by token and by a `certmail web-login` link (single use), sign-out kills
the session, CSRF refused, one account never reaches another's messages (IDOR), filters and
search, downloads, security headers, hostile input answered by a readable page."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from tests.fixtures.cli import clean_env, cli, one_line_error
from tests.fixtures.notary import free_port
from tests.web.app_world import ALICE, MALLORY, AppWorld, form_csrf, rows, sha, sign_in, web_login


def test_sign_in_by_token_lists_the_accounts_messages_newest_first(app_world: AppWorld) -> None:
    c = httpx.Client(base_url=app_world.url, timeout=60)
    page = c.get("/app")
    assert page.status_code == 200 and 'id="token"' in page.text  # the sign-in form
    pre = c.cookies.get("certmail_presign")
    cookie = page.headers["set-cookie"]
    assert pre and "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/app" in cookie
    assert "Secure" not in cookie  # served over plain HTTP here; Secure over TLS
    r = c.post("/app/signin", data={"token": app_world.alice, "csrf": form_csrf(page.text)})
    assert r.status_code == 303
    session_cookie = r.headers["set-cookie"]
    assert "certmail_session=" in session_cookie and "HttpOnly" in session_cookie
    assert "SameSite=strict" in session_cookie
    listing = c.get("/app")
    assert rows(listing.text) == app_world.alice_shas[::-1]
    assert "&lt;letter-2@example.org&gt;" in listing.text and ALICE in listing.text
    assert '<svg class="chart"' in listing.text and "3 messages" in listing.text
    assert app_world.mallory_sha not in listing.text and "secret@" not in listing.text


def test_a_wrong_token_is_refused_with_the_form_again(app_world: AppWorld) -> None:
    c = httpx.Client(base_url=app_world.url, timeout=60)
    page = c.get("/app")
    r = c.post("/app/signin", data={"token": "not-a-token", "csrf": form_csrf(page.text)})
    assert r.status_code == 401 and "unknown or revoked token" in r.text
    assert "certmail_session" not in r.headers.get("set-cookie", "")


def test_sign_in_link_works_once(app_world: AppWorld, tmp_path: Path) -> None:
    link = web_login(app_world.url, app_world.alice, tmp_path / "home")
    token = link.rsplit("/", 1)[1]
    assert len(token) >= 43  # 32 random bytes, base64url
    c = httpx.Client(base_url=app_world.url, timeout=60)
    page = c.get(link)  # opening (or previewing) the link signs nobody in
    assert page.status_code == 200 and 'id="use-link"' in page.text
    assert "certmail_session" not in page.headers.get("set-cookie", "")
    r = c.post("/app/login", data={"link": token, "csrf": form_csrf(page.text)})
    assert r.status_code == 303
    assert rows(c.get("/app").text) == app_world.alice_shas[::-1]
    # again, from another browser: used
    other = httpx.Client(base_url=app_world.url, timeout=60)
    again = other.get(link)
    r = other.post("/app/login", data={"link": token, "csrf": form_csrf(again.text)})
    assert r.status_code == 403 and "used, expired or unknown" in r.text
    assert "certmail_session" not in r.headers.get("set-cookie", "")
    assert 'id="token"' in other.get("/app").text  # still signed out


def test_web_login_refuses_a_bad_token_in_one_line(app_world: AppWorld, tmp_path: Path) -> None:
    env = clean_env(tmp_path, CERTMAIL_NOTARY_URL=app_world.url, CERTMAIL_NOTARY_TOKEN="nope")
    p = cli("web-login", env=env)
    assert p.returncode == 1 and "unknown or revoked token" in one_line_error(p)
    p = cli("web-login", env=clean_env(tmp_path))
    assert p.returncode == 1 and "no notary configured" in one_line_error(p)
    down = f"http://127.0.0.1:{free_port()}"
    p = cli(
        "web-login", env=clean_env(tmp_path, CERTMAIL_NOTARY_URL=down, CERTMAIL_NOTARY_TOKEN="t")
    )
    assert p.returncode == 5 and "cannot reach the notary" in one_line_error(p)
    r = httpx.post(app_world.url + "/v1/web/login")
    assert r.status_code == 401 and r.json()["error"] == "unauthorized"


def test_sign_out_kills_the_session(app_world: AppWorld) -> None:
    c = sign_in(app_world.url, app_world.alice)
    old = c.cookies["certmail_session"]
    listing = c.get("/app")
    r = c.post("/app/signout", data={"csrf": form_csrf(listing.text)})
    assert r.status_code == 303
    replay = httpx.Client(base_url=app_world.url, timeout=60, cookies={"certmail_session": old})
    assert 'id="token"' in replay.get("/app").text  # the old cookie is refused
    assert replay.get("/app/list.json").status_code == 401
    page = replay.get(f"/app/messages/{app_world.alice_shas[0]}")
    assert page.status_code == 401 and app_world.alice_shas[0] not in page.text


def test_csrf_is_refused_without_the_token(app_world: AppWorld) -> None:
    c = sign_in(app_world.url, app_world.alice)
    for data in ({}, {"csrf": "forged"}):
        r = c.post("/app/signout", data=data)
        assert r.status_code == 403 and "CSRF" in r.text
    assert rows(c.get("/app").text)  # still signed in: the forged sign-out did nothing
    # sign-in forms: the double-submit value must match its cookie (no login CSRF)
    fresh = httpx.Client(base_url=app_world.url, timeout=60)
    page = fresh.get("/app")
    r = fresh.post(
        "/app/signin", data={"token": app_world.alice, "csrf": "x" + form_csrf(page.text)}
    )
    assert r.status_code == 403 and "certmail_session" not in r.headers.get("set-cookie", "")
    bare = httpx.post(app_world.url + "/app/signin", data={"token": app_world.alice, "csrf": "a"})
    assert bare.status_code == 403


def test_one_account_never_reaches_anothers_message(app_world: AppWorld) -> None:
    c = sign_in(app_world.url, app_world.alice)
    theirs = app_world.mallory_sha
    for path in ("", "/timeline.json", "/receipts.json", "/certificate.pdf"):
        r = c.get(f"/app/messages/{theirs}{path}")
        assert r.status_code == 404, path
        assert (
            theirs not in r.text.replace(f"/app/messages/{theirs}", "") and "secret@" not in r.text
        )
        unknown = c.get(f"/app/messages/{sha('never-sent')}{path}")
        assert unknown.status_code == 404 and _body(unknown) == _body(r).replace(
            theirs, sha("never-sent")
        )
    for q in (theirs, "<secret@example.net>", "secret@example.net"):
        listing = c.get("/app", params={"q": q})
        assert rows(listing.text) == [] and "0 messages" in listing.text
    assert rows(c.get("/app", params={"recipient": MALLORY}).text) == []
    assert theirs not in c.get("/app/list.json").text
    # and the other way round
    m = sign_in(app_world.url, app_world.mallory)
    assert rows(m.get("/app").text) == [theirs]
    assert m.get(f"/app/messages/{app_world.alice_shas[0]}/receipts.json").status_code == 404


def _body(r: httpx.Response) -> str:
    return re.sub(r'name="csrf" value="[^"]+"', "", r.text)


def test_search_and_filters(app_world: AppWorld) -> None:
    c = sign_in(app_world.url, app_world.alice)
    first = app_world.alice_shas[0]
    assert rows(c.get("/app", params={"q": first}).text) == [first]
    assert rows(c.get("/app", params={"q": first.upper()}).text) == [first]
    assert rows(c.get("/app", params={"q": "<letter-1@example.org>"}).text) == [
        app_world.alice_shas[1]
    ]
    assert rows(c.get("/app", params={"q": "letter-1@example.org"}).text) == [
        app_world.alice_shas[1]
    ]
    today = datetime.now(UTC).date().isoformat()
    assert len(rows(c.get("/app", params={"since": today, "until": today}).text)) == 3
    assert rows(c.get("/app", params={"until": "2000-01-01"}).text) == []
    assert len(rows(c.get("/app", params={"state": "notarized"}).text)) == 3
    assert rows(c.get("/app", params={"state": "delivered"}).text) == []
    live = c.get("/app/list.json").json()
    assert live["total"] == 3 and live["live"] is False and first in live["html"]


def test_downloads_are_the_accounts_receipts_and_signed_certificate(app_world: AppWorld) -> None:
    c = sign_in(app_world.url, app_world.alice)
    first = app_world.alice_shas[0]
    page = c.get(f"/app/messages/{first}")
    assert page.status_code == 200 and "&lt;letter-0@example.org&gt;" in page.text
    assert 'id="dl-receipts"' in page.text and 'id="dl-pdf"' in page.text
    got = c.get(f"/app/messages/{first}/receipts.json")
    assert got.headers["content-disposition"].startswith("attachment;")
    api = httpx.get(
        f"{app_world.url}/v1/messages/{first}/receipts",
        headers={"Authorization": f"Bearer {app_world.alice}"},
    ).json()
    assert [r["entry"] for r in json.loads(got.text)["receipts"]] == [
        r["entry"] for r in api["receipts"]
    ]
    pdf = c.get(f"/app/messages/{first}/certificate.pdf")
    assert pdf.status_code == 200 and pdf.headers["content-type"] == "application/pdf"
    assert pdf.content.startswith(b"%PDF-") and b"/ByteRange" in pdf.content  # signed


def test_every_app_page_sends_the_security_headers(app_world: AppWorld) -> None:
    c = sign_in(app_world.url, app_world.alice)
    first = app_world.alice_shas[0]
    answers = [
        c.get("/app"),
        c.get("/app/list.json"),
        c.get(f"/app/messages/{first}"),
        c.get(f"/app/messages/{first}/timeline.json"),
        c.get(f"/app/messages/{first}/receipts.json"),
        c.get("/app", params={"since": "yesterday"}),
        c.get("/app/messages/nope"),
        httpx.get(app_world.url + "/app"),
        httpx.get(app_world.url + "/app/login/whatever"),
        httpx.post(app_world.url + "/app/signin"),
        httpx.get(app_world.url + "/log"),
    ]
    for r in answers:
        csp = r.headers["content-security-policy"]
        assert "frame-ancestors 'none'" in csp and "default-src 'none'" in csp, r.url
        assert "script-src 'self'" in csp and "'unsafe-inline'" not in csp
        assert (
            r.headers["x-frame-options"] == "DENY"
            and r.headers["x-content-type-options"] == "nosniff"
        )
        assert r.headers["referrer-policy"] == "no-referrer"
        if "/app" in str(r.url):
            assert r.headers["cache-control"] == "no-store"
    page = answers[0].text
    assert "<script>" not in page and "https://" not in page.replace("http://www.w3.org", "")
    assert re.findall(r"<script[^>]*>", page) == ['<script type="module" src="/web/static/app.js">']


@pytest.mark.parametrize(
    ("params", "says"),
    [
        ({"since": "yesterday"}, "From must be a date"),
        ({"until": "2026-13-45"}, "To must be a date"),
        ({"state": "exploded"}, "unknown state"),
        ({"page": "-1"}, "page must be a number"),
        ({"page": "1e9"}, "page must be a number"),
        ({"q": "x" * 2000}, "too long"),
    ],
)
def test_edited_query_fields_get_a_readable_400(
    app_world: AppWorld, params: dict[str, str], says: str
) -> None:
    c = sign_in(app_world.url, app_world.alice)
    r = c.get("/app", params=params)
    assert r.status_code == 400 and r.headers["content-type"].startswith("text/html")
    assert says in r.text and "Traceback" not in r.text
    j = c.get("/app/list.json", params=params)
    assert j.status_code == 400 and says in j.json()["message"]


def test_hostile_cookies_and_forms(app_world: AppWorld) -> None:
    for cookie in ("", "x", "A" * 5000, "%00%ff", "' OR 1=1 --"):
        r = httpx.get(app_world.url + "/app", cookies={"certmail_session": cookie})
        assert r.status_code == 200 and 'id="token"' in r.text  # just not signed in
    c = sign_in(app_world.url, app_world.alice)
    page = c.get("/app")
    big = c.post(
        "/app/signout",
        content=b"csrf=" + b"a" * 20000,
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert big.status_code == 413 and "too large" in big.text
    odd = c.post(
        "/app/signout",
        content=b"csrf=\xff\xfe",
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert odd.status_code == 400 and "could not be read" in odd.text
    assert rows(c.get("/app").text)  # none of it signed anyone out
    link = c.post("/app/login", data={"link": "A" * 300, "csrf": form_csrf(page.text)})
    assert link.status_code in (403,) and "Traceback" not in link.text
    for bad in ("ZZZ", "a" * 63, "A" * 64, "%2e%2e%2fetc%2fpasswd"):
        r = c.get(f"/app/messages/{bad}")
        assert r.status_code == 404 and "no such " in r.text
    nowhere = c.get("/app/messages/x/y/z")
    assert nowhere.status_code == 404 and "no such page" in nowhere.text
