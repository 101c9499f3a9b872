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
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Header, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response

from keys.errors import NotFoundError
from notary.evidence import format_time
from notary.web import app_render as render
from notary.web.app_follow import follow_in_lifespan
from notary.web.app_pages import (
    NO_SUCH,
    SHA256,
    AppPages,
    PageError,
    Signed,
    app_headers,
    check_pre,
    read_form,
)

if TYPE_CHECKING:
    from notary.service import NotaryService

__all__ = ["include_app_routes"]


def include_app_routes(
    app: FastAPI, service: NotaryService, authenticate: Callable[[Any, str | None], Any]
) -> None:
    """Add ``/app`` and its pages, and ``POST /v1/web/login``, to ``app``."""
    pages = AppPages(service)
    follow_in_lifespan(app, pages.follower)  # the message index, caught up in the background
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
            form = await read_form(request)
            check_pre(request, form)
        except PageError as e:
            return pages.error(e) if e.status != 403 else pages.signin(request, e.message, 403)
        acct = await asyncio.to_thread(service.authenticate, form.get("token", "").strip())
        if acct is None:
            return pages.signin(request, "unknown or revoked token", 401)
        sid, _ = await asyncio.to_thread(pages.sessions.add_session, acct.id)
        return pages.start_session(request, sid)

    @app.get("/app/login/{token}", include_in_schema=False)
    def login_link(token: str, request: Request) -> Response:
        return pages.link(request, token)

    @app.post("/app/login", include_in_schema=False)
    async def use_link(request: Request) -> Response:
        try:
            form = await read_form(request)
            check_pre(request, form)
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
            form = await read_form(request)
        except PageError as e:
            return pages.error(e)
        s = await asyncio.to_thread(pages.signed, request)
        if s is None:
            return pages.signin(request, "you are not signed in", 401)
        if not s.session.csrf_ok(form.get("csrf")):
            return pages.error(PageError(403, "the form's CSRF token is missing or wrong"))
        await asyncio.to_thread(pages.sessions.end, s.sid)
        return pages.signed_out()


def _include_views(app: FastAPI, pages: AppPages) -> None:
    service = pages.service

    @app.get("/app", response_class=HTMLResponse, summary="The sender's view (sign in)")
    async def listing(request: Request) -> Response:
        s = await asyncio.to_thread(pages.signed, request)
        if s is None:
            return pages.signin(request)
        await pages.follower.current()  # the whole list, never a partial page
        try:
            listing = await asyncio.to_thread(pages.list_rows, s, dict(request.query_params))
        except PageError as e:
            return pages.error(e)
        chart = await asyncio.to_thread(pages.chart, s)
        return pages.html(
            render.list_page(
                origin=service.origin,
                addresses=s.account.addresses,
                csrf=s.session.csrf,
                listing=listing,
                chart=chart,
            )
        )

    @app.get("/app/list.json", include_in_schema=False)
    async def list_json(request: Request) -> Response:
        s = await asyncio.to_thread(pages.signed, request)
        if s is None:
            return _json({"error": "unauthorized", "message": "sign in again"}, 401)
        await pages.follower.current()
        try:
            got = await asyncio.to_thread(pages.list_rows, s, dict(request.query_params))
        except PageError as e:
            return _json({"error": "bad_request", "message": e.message}, e.status)
        return _json({"html": got.rows_html, "live": got.live, "total": got.total})

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
        s = _downloader(pages, request, sha256, "sign in to download receipts")
        if isinstance(s, Response):
            return s
        from notary.cosigning import cosigned_receipts  # as GET /v1/messages/{sha256}/receipts

        try:
            got = service.receipts(s.account, sha256)
        except NotFoundError:
            return pages.error(PageError(404, NO_SUCH))
        got = cosigned_receipts(service.config.directory, got, service.storage)
        body = json.dumps({"receipts": [r.to_json() for r in got]}, indent=2)
        return _download(body.encode(), "application/json", f"{sha256[:16]}.receipts.json")

    @app.get("/app/messages/{sha256}/certificate.pdf", include_in_schema=False)
    def certificate(sha256: str, request: Request) -> Response:
        from notary.etsi.api import signed_certificate

        s = _downloader(pages, request, sha256, "sign in to download the certificate")
        if isinstance(s, Response):
            return s
        try:
            pdf = signed_certificate(service, s.account, sha256)
        except NotFoundError as e:  # not this account's (as unknown), or no TSA
            return pages.error(PageError(404, e.message if service.tsa is None else NO_SUCH))
        return _download(pdf, "application/pdf", f"{sha256[:16]}.certificate.pdf")

    @app.get("/app/{rest:path}", include_in_schema=False)
    def unknown(rest: str) -> Response:  # registered last: any other /app/... path
        return pages.error(PageError(404, "no such page"))


def _downloader(pages: AppPages, request: Request, sha256: str, signin: str) -> Signed | Response:
    """Who downloads a message's file, or the answer: the sign-in page (401, ``signin``
    said) when not signed in, a 404 page for a malformed digest."""
    s = pages.signed(request)
    if s is None:
        return pages.signin(request, signin, 401)
    if not SHA256.fullmatch(sha256):
        return pages.error(PageError(404, NO_SUCH))
    return s


def _download(body: bytes, media_type: str, name: str) -> Response:
    headers = app_headers()
    headers["Content-Disposition"] = f'attachment; filename="{name}"'
    return Response(body, media_type=media_type, headers=headers)


def _json(obj: Any, status: int = 200) -> Response:
    return JSONResponse(obj, status_code=status, headers=app_headers())
