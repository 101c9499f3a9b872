"""The sender's view's HTML (``GET /app``, docs/web.md): pure rendering, every value escaped.

The list's rows and a message's timeline are rendered here once, for the page
and for the small JSON answers the page's script polls (``notary/web/src/app.js``
swaps them in while deliveries are in flight).
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from string import Template
from typing import Any
from urllib.parse import urlencode

from notary.states import DEFERRED, NOTARIZED, state_of_event
from notary.storage import DeliveryStatus
from notary.web.app_index import STATES_ALL, Filters, MessageRow

__all__ = [
    "ListPage",
    "detail_page",
    "error_page",
    "link_page",
    "list_page",
    "rows_html",
    "signin_page",
    "timeline_html",
]

e = html.escape


def _layout(title: str, body: str, *, origin: str, header: str = "") -> str:
    text = resources.files(__package__).joinpath("templates", "app.html").read_text("utf-8")
    return Template(text).substitute(
        title=e(title), body=body, header=header, origin=e(origin), static="/web/static"
    )


def _csrf(token: str) -> str:
    return f'<input type="hidden" name="csrf" value="{e(token)}">'


def _signout(addresses: Sequence[str], csrf: str) -> str:
    return (
        f'<form method="post" action="/app/signout"><span class="who">{e(", ".join(addresses))}'
        f'</span>{_csrf(csrf)}<button type="submit" id="signout">Sign out</button></form>'
    )


def signin_page(origin: str, csrf: str, error: str | None = None) -> str:
    """Sign in with the account's API token (or a link from ``certmail web-login``)."""
    err = f'<p class="error" role="alert" id="error">{e(error)}</p>' if error else ""
    body = f"""<h1>Your certified mail</h1>
<section class="signin">{err}
<form method="post" action="/app/signin">{_csrf(csrf)}
<label for="token">The account's API token</label>
<input type="password" id="token" name="token" autocomplete="off" required maxlength="256">
<p><button class="primary" type="submit" id="signin">Sign in</button></p>
</form>
<p>Or run <code>certmail web-login</code> at your terminal: it prints a sign-in link that
works once, for 10 minutes.</p></section>"""
    return _layout("Sign in: certified mail", body, origin=origin)


def link_page(origin: str, token: str, csrf: str) -> str:
    """The page a sign-in link opens: one button (a link preview never signs anyone in)."""
    body = f"""<h1>Sign in with your link</h1>
<form method="post" action="/app/login" class="signin">{_csrf(csrf)}
<input type="hidden" name="link" value="{e(token)}">
<p>This link signs you in once and then stops working.</p>
<p><button class="primary" type="submit" id="use-link">Sign in</button></p></form>"""
    return _layout("Sign in: certified mail", body, origin=origin)


def error_page(origin: str, status: int, message: str) -> str:
    body = (
        f"<h1>{status}: {e(_REASONS.get(status, 'error'))}</h1>"
        f'<p class="error" role="alert" id="error">{e(message)}</p>'
        '<p><a href="/app">Back to your messages</a></p>'
    )
    return _layout(f"{status}: certified mail", body, origin=origin)


_REASONS = {400: "bad request", 403: "refused", 404: "not found", 413: "too large"}


def _state(word: str, detail: str = "") -> str:
    cls = word.split()[0]
    tip = f' title="{e(detail)}"' if detail else ""
    return f'<span class="state {e(cls)}"{tip}>{e(word)}</span>'


def deferral(d: DeliveryStatus | None) -> str:
    """``deferred: 451 ...`` while the relay retries, else ""."""
    if d is None or d.state != "queued" or d.attempts == 0:
        return ""
    reply = d.last_reply or {}
    text = " ".join(f"{reply.get('code', '')} {reply.get('text', '')}".split()) or d.last_error
    return f"deferred after {d.attempts} attempt{'s' if d.attempts > 1 else ''}: {text or ''}"[:200]


@dataclass(frozen=True)
class ListPage:
    """One page of the list as the routes answer it (the page and ``/app/list.json``):
    the filters read, the page number and how many pages, the total matching, the table
    body's HTML (:func:`rows_html`), and whether a message on it is in flight (polled)."""

    filters: Filters
    page: int
    pages: int
    total: int
    rows_html: str
    live: bool


def rows_html(rows: Sequence[MessageRow], deliveries: dict[tuple[str, str], DeliveryStatus]) -> str:
    """The list's table body."""
    if not rows:
        return '<tr><td colspan="3" id="empty">No certified message matches.</td></tr>'
    out = []
    for r in rows:
        items = []
        for rs in r.recipients:
            d = deferral(deliveries.get((r.sha256, rs.address))) if rs.state == "accepted" else ""
            word = _state(DEFERRED, d) if d else _state(rs.state, f"since {rs.changed}")
            items.append(f"<li>{e(rs.address)} {word}{f' <small>{e(d)}</small>' if d else ''}</li>")
        if r.channel == "api":
            items.append(f"<li>{_state(NOTARIZED)} <small>sent directly</small></li>")
        link = f"/app/messages/{r.sha256}"
        out.append(
            f'<tr data-sha256="{r.sha256}"><td><time>{e(r.time[:19].replace("T", " "))}</time></td>'
            f'<td class="mono"><a href="{link}">{e(r.message_id)}</a><br>'
            f"<small>{r.sha256[:16]}…</small></td><td><ul>{''.join(items)}</ul></td></tr>"
        )
    return "".join(out)


def _filters_form(f: Filters) -> str:
    opts = "".join(
        f'<option value="{s}"{" selected" if f.state == s else ""}>{s or "any"}</option>'
        for s in ("", *STATES_ALL)
    )

    def field(name: str, label: str, value: str | None, kind: str = "text") -> str:
        return (
            f'<div><label for="f-{name}">{label}</label><input type="{kind}" id="f-{name}"'
            f' name="{name}" value="{e(value or "")}" maxlength="998"></div>'
        )

    return (
        '<form method="get" action="/app" class="filters" role="search">'
        + field("q", "Message-ID or SHA-256", f.query)
        + field("recipient", "Recipient", f.recipient)
        + field("since", "From (date)", f.since, "date")
        + field("until", "To (date)", f.until, "date")
        + '<div><label for="f-state">State</label>'
        f'<select id="f-state" name="state">{opts}</select></div>'
        + '<div class="actions"><button type="submit" id="apply">Show</button>'
        '<a href="/app">Clear</a></div></form>'
    )


def _query(f: Filters, page: int) -> str:
    q = {
        "q": f.query,
        "recipient": f.recipient,
        "since": f.since,
        "until": f.until,
        "state": f.state,
        "page": str(page) if page > 1 else None,
    }
    return urlencode({k: v for k, v in q.items() if v})


def list_page(
    *,
    origin: str,
    addresses: Sequence[str],
    csrf: str,
    listing: ListPage,
    chart: str,
) -> str:
    """The account's messages, newest first, one page of them."""
    filters, page, pages, total = listing.filters, listing.page, listing.pages, listing.total
    qs = _query(filters, page)
    prev = (
        f'<a href="/app?{_query(filters, page - 1)}" rel="prev">Newer</a>'
        if page > 1
        else "<span></span>"
    )
    nxt = (
        f'<a href="/app?{_query(filters, page + 1)}" rel="next">Older</a>'
        if page < pages
        else "<span></span>"
    )
    poll = f' data-poll="/app/list.json?{e(qs)}"' if listing.live else ""
    body = f"""<h1>Your certified messages</h1>
<section aria-labelledby="chart-h"><h2 id="chart-h">Last 30 days</h2>{chart}
<p class="fpr">Bars: messages accepted per day (left scale). Dots: the median time from
acceptance to delivery of that day's recipients (right scale).</p></section>
<section aria-labelledby="list-h"><h2 id="list-h">Messages</h2>
{_filters_form(filters)}
<p id="count">{total} message{"" if total == 1 else "s"} · page {page} of {max(pages, 1)}</p>
<div class="scroll"><table class="list"><thead><tr><th scope="col">Accepted (UTC)</th>
<th scope="col">Message</th><th scope="col">Recipients</th></tr></thead>
<tbody id="rows" aria-live="polite"{poll}>{listing.rows_html}</tbody></table></div>
<nav class="pager" aria-label="Pages">{prev}{nxt}</nav></section>"""
    return _layout("Your certified messages", body, origin=origin, header=_signout(addresses, csrf))


def _event_detail(st: dict[str, Any]) -> str:
    ev = st.get("event")
    reply = st.get("reply") if isinstance(st.get("reply"), dict) else None
    bits = []
    if ev == "RelayToNonERDS" and st.get("host"):
        bits.append(f"handed to {st['host']}")
    if ev == "RelayToNonERDSFailure" and st.get("reason"):
        bits.append(str(st["reason"]))
    if reply:
        bits.append(f"reply {reply.get('code', '')} {reply.get('text', '')}")
    if ev == "ContentAccessTracking":
        bits.append("tracking link: weak evidence")
    if st.get("mode"):
        bits.append(f"mode {st['mode']}")
    return " · ".join(" ".join(str(b).split()) for b in bits)[:300]


def timeline_html(
    statements: Sequence[dict[str, Any]], deliveries: Sequence[DeliveryStatus]
) -> str:
    """Per recipient, the evidence in log order, then the relay's state while it retries."""
    per: dict[str, list[str]] = {}
    for st in statements:
        ev = str(st.get("event", ""))
        when = e(str(st.get("time", ""))[:19].replace("T", " "))
        word = NOTARIZED if st.get("channel") == "api" else state_of_event(ev)
        line = f"<li><time>{when}</time> {_state(word)} <small>{e(_event_detail(st))}</small></li>"
        targets = (
            [st["recipient"]]
            if isinstance(st.get("recipient"), str)
            else (
                [r for r in st.get("recipients") or [] if isinstance(r, str)]
                or ["sent directly (the notary knows no recipient)"]
            )
        )
        for r in targets:
            per.setdefault(r, []).append(line)
    for d in deliveries:
        if text := deferral(d):
            per.setdefault(d.recipient, []).append(
                f"<li>{_state(DEFERRED)} <small>{e(text)}</small></li>"
            )
    return "".join(
        f'<section class="tl" data-recipient="{e(r)}"><h3>{e(r)}</h3>'
        f"<ul>{''.join(lines)}</ul></section>"
        for r, lines in per.items()
    )


def detail_page(
    *,
    origin: str,
    addresses: Sequence[str],
    csrf: str,
    sha256: str,
    message_id: str,
    timeline: str,
    live: bool,
    has_pdf: bool,
) -> str:
    """One message: its facts, downloads and timeline (polled while in flight)."""
    base = f"/app/messages/{sha256}"
    pdf = (
        f'<a href="{base}/certificate.pdf" id="dl-pdf">Signed certificate (PDF)</a>'
        if has_pdf
        else ""
    )
    poll = f' data-poll="{base}/timeline.json"' if live else ""
    body = f"""<p><a href="/app">← All messages</a></p>
<h1>Message <span class="mono">{e(message_id)}</span></h1>
<dl class="facts"><dt>Message-ID</dt><dd id="message-id">{e(message_id)}</dd>
<dt>SHA-256</dt><dd id="sha256">{sha256}</dd></dl>
<p class="downloads"><a href="{base}/receipts.json" id="dl-receipts" download>Receipts
(JSON)</a>{pdf}</p>
<h2>Timeline</h2>
<p class="live" id="live">{"Deliveries in flight: this page follows them." if live else ""}</p>
<div id="timeline" aria-live="polite"{poll}>{timeline}</div>"""
    return _layout(f"Message {message_id}", body, origin=origin, header=_signout(addresses, csrf))
