"""The sender's view's request handling behind the routes (notary/web/app_routes.py): the
session of a request, the CSRF checks, the query's filters, the list, chart and timeline
read for the session's account only, and the pages' responses with their headers.
"""

from __future__ import annotations

import hmac
import re
from dataclasses import dataclass
from datetime import date, timedelta
from typing import TYPE_CHECKING
from urllib.parse import parse_qs

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from keys.errors import NotFoundError
from notary.evidence import parse_statement
from notary.states import DEFERRED, LIVE_DELIVERY_STATES
from notary.web import APP_CSP, security_headers
from notary.web import app_render as render
from notary.web.app_db import WEB_DB, WebDB
from notary.web.app_follow import IndexFollower
from notary.web.app_index import SCHEMA as INDEX_SCHEMA
from notary.web.app_index import STATES_ALL, Filters, MessageIndex, MessageRow
from notary.web.app_sessions import SCHEMA as SESSION_SCHEMA
from notary.web.app_sessions import SESSION_TTL, Session, SessionStore, new_secret
from notary.web.chart import volume_chart

if TYPE_CHECKING:
    from notary.service import NotaryService
    from notary.storage import Account, DeliveryStatus

__all__ = [
    "COOKIE",
    "NO_SUCH",
    "PRE_COOKIE",
    "SHA256",
    "AppPages",
    "PageError",
    "Signed",
    "app_headers",
    "check_pre",
    "parse_filters",
    "read_form",
]

COOKIE = "certmail_session"
PRE_COOKIE = "certmail_presign"
PAGE_SIZE = 50
MAX_FORM = 8192
SHA256 = re.compile(r"[0-9a-f]{64}")
_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")
#: What any message the account does not have answers (its own or unknown: the same).
NO_SUCH = "no such message"


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
    if query and not SHA256.fullmatch(query.lower()):
        query = query if query.startswith("<") else f"<{query}>"
    elif query:
        query = query.lower()
    page = q.get("page") or "1"
    if not page.isdigit() or not 1 <= int(page) <= 1_000_000:
        raise PageError(400, "page must be a number from 1")
    recipient = (q.get("recipient") or "").strip().lower() or None
    return Filters(since, until, recipient, state, query), int(page)


async def read_form(request: Request) -> dict[str, str]:
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
        #: Keeps the index caught up; run in the app's lifespan (app_routes.py).
        self.follower = IndexFollower(
            self.index, service.storage, on_commit=service.sequencer.on_commit
        )

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
        return HTMLResponse(body, status_code=status, headers=app_headers())

    def error(self, e: PageError) -> HTMLResponse:
        return self.html(render.error_page(self.service.origin, e.status, e.message), e.status)

    def signin(self, request: Request, error: str | None = None, status: int = 200) -> Response:
        """The sign-in page with a fresh double-submit CSRF value (cookie and field)."""
        pre = new_secret()
        resp = self.html(render.signin_page(self.service.origin, pre, error), status)
        _cookie(resp, request, PRE_COOKIE, pre, 600)
        return resp

    def link(self, request: Request, token: str) -> Response:
        """The page of a sign-in link: one button, with a fresh double-submit value."""
        pre = new_secret()
        resp = self.html(render.link_page(self.service.origin, token[:128], pre))
        _cookie(resp, request, PRE_COOKIE, pre, 600)
        return resp

    def signed_out(self) -> Response:
        resp = RedirectResponse("/app", status_code=303, headers=app_headers())
        resp.delete_cookie(COOKIE, path="/app")
        return resp

    def start_session(self, request: Request, sid: str) -> Response:
        resp = RedirectResponse("/app", status_code=303, headers=app_headers())
        _cookie(resp, request, COOKIE, sid, int(SESSION_TTL.total_seconds()))
        resp.delete_cookie(PRE_COOKIE, path="/app")
        return resp

    def list_rows(self, s: Signed, q: dict[str, str]) -> render.ListPage:
        """One page of the list (reads only: the index is caught up in the background)."""
        f, page = parse_filters(q)
        offset, account_id = (page - 1) * PAGE_SIZE, s.account.id
        if f.state == DEFERRED:
            total, rows = self._deferred(account_id, f, offset)
        else:
            total, rows = self.index.page(account_id, f, offset, PAGE_SIZE)
        deliveries = self._deliveries(account_id, rows)
        live = any(r.in_flight for r in rows)
        pages = max((total + PAGE_SIZE - 1) // PAGE_SIZE, 1)
        return render.ListPage(f, page, pages, total, render.rows_html(rows, deliveries), live)

    def _deliveries(
        self, account_id: int, rows: list[MessageRow]
    ) -> dict[tuple[str, str], DeliveryStatus]:
        """The relay's deliveries of the rows' messages in flight, by (sha256, recipient)."""
        out = {}
        for r in rows:
            if r.in_flight:
                for d in self.service.storage.deliveries_for_message(r.sha256, account_id):
                    out[(r.sha256, d.recipient)] = d
        return out

    def _deferred(self, account_id: int, f: Filters, offset: int) -> tuple[int, list[MessageRow]]:
        """The total and one page of the messages with a recipient the relay retries: the
        index's ``accepted`` ones, narrowed by the queue (one query per message in flight)."""
        _, rows = self.index.page(account_id, f, 0, -1)
        deliveries = self._deliveries(account_id, rows)
        kept = [
            r
            for r in rows
            if any(
                rs.state == "accepted"
                and f.recipient in (None, rs.address)
                and render.deferral(deliveries.get((r.sha256, rs.address)))
                for rs in r.recipients
            )
        ]
        return len(kept), kept[offset : offset + PAGE_SIZE]

    def chart(self, s: Signed) -> str:
        today = self.service.clock().date()
        days = [(today - timedelta(days=29 - i)).isoformat() for i in range(30)]
        got = {d: (c, m) for d, c, m in self.index.daily(s.account.id, days[0])}
        return volume_chart(
            days, [got.get(d, (0, None))[0] for d in days], [got.get(d, (0, None))[1] for d in days]
        )

    def timeline(self, s: Signed, sha256: str) -> tuple[str, str, bool]:
        """(Message-ID, timeline HTML, live) of one of the account's messages; 404 otherwise."""
        if not SHA256.fullmatch(sha256):
            raise PageError(404, NO_SUCH)
        try:
            receipts = self.service.receipts(s.account, sha256)
        except NotFoundError:
            raise PageError(404, NO_SUCH) from None
        stmts = [parse_statement(r.entry) for r in receipts]
        deliveries = self.service.storage.deliveries_for_message(sha256, s.account.id)
        live = any(d.state in LIVE_DELIVERY_STATES for d in deliveries)
        return str(stmts[0]["message"]["id"]), render.timeline_html(stmts, deliveries), live


def app_headers() -> dict[str, str]:
    """The security headers of every ``/app`` answer; an account's pages are never stored."""
    return {**security_headers(APP_CSP), "Cache-Control": "no-store"}


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


def check_pre(request: Request, form: dict[str, str]) -> None:
    """The double-submit check of the sign-in forms."""
    cookie, sent = request.cookies.get(PRE_COOKIE, ""), form.get("csrf", "")
    if not cookie or not sent or not hmac.compare_digest(cookie.encode(), sent.encode()):
        raise PageError(403, "the form's CSRF token is missing or wrong: reload the page")
