"""``GET /app``, the sender's view (issue 13 item 2, docs/web.md), and ``POST /v1/web/login``.

Sign-in is by the account's API token (a form) or a one-time link
(``certmail web-login`` asks ``POST /v1/web/login`` with the token). The
session cookie is HttpOnly, SameSite=Strict, Secure over TLS, scoped to
``/app``; the session is kept server-side (:mod:`notary.web.app_sessions`).
Every form carries a CSRF token: the session's once signed in, before that a
double-submit value also set as a cookie (so nobody can sign a browser into
their own account). Every query is by the session's account: another
account's message answers 404 exactly as an unknown one. Errors are pages.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

from fastapi import FastAPI, Header, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from keys.errors import NotFoundError
from notary.evidence import format_time, parse_statement
from notary.web import APP_CSP, security_headers
from notary.web import app_render as render
from notary.web.app_db import WEB_DB, WebDB
from notary.web.app_index import SCHEMA as INDEX_SCHEMA
from notary.web.app_index import STATES_ALL, Filters, MessageIndex
from notary.web.app_sessions import SCHEMA as SESSION_SCHEMA
from notary.web.app_sessions import SESSION_TTL, Session, SessionStore, new_secret
from notary.web.chart import volume_chart

if TYPE_CHECKING:
    from notary.service import NotaryService
    from notary.storage import Account

__all__ = ["include_app_routes"]

COOKIE = "certmail_session"
PRE_COOKIE = "certmail_presign"
PAGE_SIZE = 50
MAX_FORM = 8192
_SHA = re.compile(r"[0-9a-f]{64}")
_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")
#: What any message the account does not have answers (its own or unknown: the same).
_NO_SUCH = "no such message"


class PageError(Exception):
    """A request the page refuses: its status and a readable message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


@dataclass(frozen=True)
class Signed:
    """The request's live session and its account."""

    sid: str
    session: Session
    account: Account


def parse_filters(q: dict[str, str]) -> tuple[Filters, int]:
    """The list's filters and page from the query string; PageError(400) on bad input."""
    for k, v in q.items():
        if len(v) > 998:
            raise PageError(400, f"the {k} field is too long")
    since, until = q.get("since") or None, q.get("until") or None
    for name, day in (("From", since), ("To", until)):
        if day is not None:
            try:
                if not _DAY.fullmatch(day):
                    raise ValueError
                date.fromisoformat(day)
            except ValueError:
                raise PageError(400, f"{name} must be a date, YYYY-MM-DD") from None
    state = q.get("state") or None
    if state is not None and state not in STATES_ALL:
        raise PageError(400, f"unknown state {state!r}; use one of {', '.join(STATES_ALL)}")
    query = (q.get("q") or "").strip() or None
    if query and not _SHA.fullmatch(query.lower()):
        query = query if query.startswith("<") else f"<{query}>"
    elif query:
        query = query.lower()
    page = q.get("page") or "1"
    if not page.isdigit() or not 1 <= int(page) <= 1_000_000:
        raise PageError(400, "page must be a number from 1")
    recipient = (q.get("recipient") or "").strip().lower() or None
    return Filters(since, until, recipient, state, query), int(page)


async def _form(request: Request) -> dict[str, str]:
    """The urlencoded form body, at most :data:`MAX_FORM` bytes, one value per field."""
    body = await request.body()
    if len(body) > MAX_FORM:
        raise PageError(413, "the form is too large")
    try:
        fields = parse_qs(body.decode("ascii"), max_num_fields=10, strict_parsing=False)
    except (UnicodeDecodeError, ValueError):
        raise PageError(400, "the form could not be read") from None
    return {k: v[0] for k, v in fields.items()}


class AppPages:
    """The state behind the routes: the service, ``web.db``'s sessions and index."""

    def __init__(self, service: NotaryService) -> None:
        self.service = service
        db = WebDB(service.config.directory / WEB_DB, SESSION_SCHEMA + INDEX_SCHEMA)
        self.sessions = SessionStore(db, service.clock)
        self.index = MessageIndex(db, service.storage)

    def signed(self, request: Request) -> Signed | None:
        sid = request.cookies.get(COOKIE)
        session = self.sessions.session(sid)
        if sid is None or session is None:
            return None
        account = self.service.storage.account(session.account_id)
        if account is None or account.revoked:
            return None
        return Signed(sid, session, account)

    def html(self, body: str, status: int = 200) -> HTMLResponse:
        return HTMLResponse(body, status_code=status, headers=security_headers(APP_CSP))

    def error(self, e: PageError) -> HTMLResponse:
        return self.html(render.error_page(self.service.origin, e.status, e.message), e.status)

    def signin(self, request: Request, error: str | None = None, status: int = 200) -> Response:
        """The sign-in page with a fresh double-submit CSRF value (cookie and field)."""
        pre = new_secret()
        resp = self.html(render.signin_page(self.service.origin, pre, error), status)
        _cookie(resp, request, PRE_COOKIE, pre, 600)
        return resp

    def start_session(self, request: Request, sid: str) -> Response:
        resp = RedirectResponse("/app", status_code=303, headers=security_headers(APP_CSP))
        _cookie(resp, request, COOKIE, sid, int(SESSION_TTL.total_seconds()))
        resp.delete_cookie(PRE_COOKIE, path="/app")
        return resp

    def list_rows(self, s: Signed, q: dict[str, str]) -> tuple[Filters, int, int, int, str, bool]:
        f, page = parse_filters(q)
        self.index.catch_up()
        total, rows = self.index.page(s.account.id, f, (page - 1) * PAGE_SIZE, PAGE_SIZE)
        deliveries = {}
        for r in rows:
            if r.in_flight:
                for d in self.service.storage.deliveries_for_message(r.sha256, s.account.id):
                    deliveries[(r.sha256, d.recipient)] = d
        live = any(r.in_flight for r in rows)
        pages = max((total + PAGE_SIZE - 1) // PAGE_SIZE, 1)
        return f, page, pages, total, render.rows_html(rows, deliveries), live

    def chart(self, s: Signed) -> str:
        today = self.service.clock().date()
        days = [(today - timedelta(days=29 - i)).isoformat() for i in range(30)]
        got = {d: (c, m) for d, c, m in self.index.daily(s.account.id, days[0])}
        return volume_chart(
            days, [got.get(d, (0, None))[0] for d in days], [got.get(d, (0, None))[1] for d in days]
        )

    def timeline(self, s: Signed, sha256: str) -> tuple[str, str, bool]:
        """(Message-ID, timeline HTML, live) of one of the account's messages; 404 otherwise."""
        if not _SHA.fullmatch(sha256):
            raise PageError(404, _NO_SUCH)
        try:
            receipts = self.service.receipts(s.account, sha256)
        except NotFoundError:
            raise PageError(404, _NO_SUCH) from None
        stmts = [parse_statement(r.entry) for r in receipts]
        deliveries = self.service.storage.deliveries_for_message(sha256, s.account.id)
        live = any(d.state in ("held", "queued") for d in deliveries)
        return str(stmts[0]["message"]["id"]), render.timeline_html(stmts, deliveries), live


def _cookie(resp: Response, request: Request, name: str, value: str, max_age: int) -> None:
    resp.set_cookie(
        name,
        value,
        max_age=max_age,
        path="/app",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )


def include_app_routes(
    app: FastAPI, service: NotaryService, authenticate: Callable[[Any, str | None], Any]
) -> None:
    """Add ``/app`` and its pages, and ``POST /v1/web/login``, to ``app``."""
    pages = AppPages(service)
    _include_signin(app, pages, authenticate)
    _include_views(app, pages)


def _include_signin(
    app: FastAPI, pages: AppPages, authenticate: Callable[[Any, str | None], Any]
) -> None:
    service = pages.service

    @app.post("/v1/web/login", summary="A one-time sign-in link to the sender's view (10 min)")
    def web_login(request: Request, authorization: str | None = Header(None)) -> Response:
        acct = authenticate(service, authorization)
        token, expires = pages.sessions.add_link(acct.id)
        url = str(request.base_url).rstrip("/") + "/app/login/" + token
        return JSONResponse({"url": url, "expires": format_time(expires)})

    @app.post("/app/signin", include_in_schema=False)
    async def signin(request: Request) -> Response:
        try:
            form = await _form(request)
            _check_pre(request, form)
        except PageError as e:
            return pages.error(e) if e.status != 403 else pages.signin(request, e.message, 403)
        acct = await asyncio.to_thread(service.authenticate, form.get("token", "").strip())
        if acct is None:
            return pages.signin(request, "unknown or revoked token", 401)
        sid, _ = await asyncio.to_thread(pages.sessions.add_session, acct.id)
        return pages.start_session(request, sid)

    @app.get("/app/login/{token}", include_in_schema=False)
    def login_link(token: str, request: Request) -> Response:
        pre = new_secret()
        resp = pages.html(render.link_page(service.origin, token[:128], pre))
        _cookie(resp, request, PRE_COOKIE, pre, 600)
        return resp

    @app.post("/app/login", include_in_schema=False)
    async def use_link(request: Request) -> Response:
        try:
            form = await _form(request)
            _check_pre(request, form)
        except PageError as e:
            return pages.error(e)
        got = await asyncio.to_thread(pages.sessions.use_link, form.get("link", ""))
        if got is None:
            msg = "this sign-in link is used, expired or unknown; run `certmail web-login` again"
            return pages.signin(request, msg, 403)
        return pages.start_session(request, got[0])

    @app.post("/app/signout", include_in_schema=False)
    async def signout(request: Request) -> Response:
        try:
            form = await _form(request)
        except PageError as e:
            return pages.error(e)
        s = await asyncio.to_thread(pages.signed, request)
        if s is None:
            return pages.signin(request, "you are not signed in", 401)
        if not s.session.csrf_ok(form.get("csrf")):
            return pages.error(PageError(403, "the form's CSRF token is missing or wrong"))
        await asyncio.to_thread(pages.sessions.end, s.sid)
        resp = RedirectResponse("/app", status_code=303, headers=security_headers(APP_CSP))
        resp.delete_cookie(COOKIE, path="/app")
        return resp


def _check_pre(request: Request, form: dict[str, str]) -> None:
    """The double-submit check of the sign-in forms."""
    import hmac

    cookie, sent = request.cookies.get(PRE_COOKIE, ""), form.get("csrf", "")
    if not cookie or not sent or not hmac.compare_digest(cookie.encode(), sent.encode()):
        raise PageError(403, "the form's CSRF token is missing or wrong: reload the page")


def _include_views(app: FastAPI, pages: AppPages) -> None:
    service = pages.service

    @app.get("/app", response_class=HTMLResponse, summary="The sender's view (sign in)")
    def listing(request: Request) -> Response:
        s = pages.signed(request)
        if s is None:
            return pages.signin(request)
        try:
            f, page, n, total, rows, live = pages.list_rows(s, dict(request.query_params))
        except PageError as e:
            return pages.error(e)
        return pages.html(
            render.list_page(
                origin=service.origin,
                addresses=s.account.addresses,
                csrf=s.session.csrf,
                filters=f,
                page=page,
                pages=n,
                total=total,
                rows_body=rows,
                live=live,
                chart=pages.chart(s),
            )
        )

    @app.get("/app/list.json", include_in_schema=False)
    def list_json(request: Request) -> Response:
        s = pages.signed(request)
        if s is None:
            return _json({"error": "unauthorized", "message": "sign in again"}, 401)
        try:
            _, _, _, total, rows, live = pages.list_rows(s, dict(request.query_params))
        except PageError as e:
            return _json({"error": "bad_request", "message": e.message}, e.status)
        return _json({"html": rows, "live": live, "total": total})

    @app.get("/app/messages/{sha256}", include_in_schema=False)
    def detail(sha256: str, request: Request) -> Response:
        s = pages.signed(request)
        if s is None:
            return pages.signin(request, "sign in to see this message", 401)
        try:
            mid, timeline, live = pages.timeline(s, sha256)
        except PageError as e:
            return pages.error(e)
        return pages.html(
            render.detail_page(
                origin=service.origin,
                addresses=s.account.addresses,
                csrf=s.session.csrf,
                sha256=sha256,
                message_id=mid,
                timeline=timeline,
                live=live,
                has_pdf=service.tsa is not None,
            )
        )

    @app.get("/app/messages/{sha256}/timeline.json", include_in_schema=False)
    def timeline_json(sha256: str, request: Request) -> Response:
        s = pages.signed(request)
        if s is None:
            return _json({"error": "unauthorized", "message": "sign in again"}, 401)
        try:
            _, timeline, live = pages.timeline(s, sha256)
        except PageError as e:
            return _json({"error": "not_found", "message": e.message}, e.status)
        return _json({"html": timeline, "live": live})

    _include_downloads(app, pages)


def _include_downloads(app: FastAPI, pages: AppPages) -> None:
    service = pages.service

    @app.get("/app/messages/{sha256}/receipts.json", include_in_schema=False)
    def receipts(sha256: str, request: Request) -> Response:
        s = pages.signed(request)
        if s is None:
            return pages.signin(request, "sign in to download receipts", 401)
        if not _SHA.fullmatch(sha256):
            return pages.error(PageError(404, _NO_SUCH))
        try:
            got = service.receipts(s.account, sha256)
        except NotFoundError:
            return pages.error(PageError(404, _NO_SUCH))
        body = json.dumps({"receipts": [r.to_json() for r in got]}, indent=2)
        return _download(body.encode(), "application/json", f"{sha256[:16]}.receipts.json")

    @app.get("/app/messages/{sha256}/certificate.pdf", include_in_schema=False)
    def certificate(sha256: str, request: Request) -> Response:
        from notary.etsi.api import signed_certificate

        s = pages.signed(request)
        if s is None:
            return pages.signin(request, "sign in to download the certificate", 401)
        if not _SHA.fullmatch(sha256):
            return pages.error(PageError(404, _NO_SUCH))
        try:
            pdf = signed_certificate(service, s.account, sha256)
        except NotFoundError as e:  # not this account's (as unknown), or no TSA
            return pages.error(PageError(404, e.message if service.tsa is None else _NO_SUCH))
        return _download(pdf, "application/pdf", f"{sha256[:16]}.certificate.pdf")

    @app.get("/app/{rest:path}", include_in_schema=False)
    def unknown(rest: str) -> Response:  # registered last: any other /app/... path
        return pages.error(PageError(404, "no such page"))


def _download(body: bytes, media_type: str, name: str) -> Response:
    headers = security_headers(APP_CSP)
    headers["Content-Disposition"] = f'attachment; filename="{name}"'
    return Response(body, media_type=media_type, headers=headers)


def _json(obj: Any, status: int = 200) -> Response:
    return JSONResponse(obj, status_code=status, headers=security_headers(APP_CSP))
