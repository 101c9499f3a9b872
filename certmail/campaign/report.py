"""``campaign status`` and ``campaign report``: each recipient's steps, from the ledger and
the notary's evidence (the receipt timeline of :mod:`certmail.timeline`).

Per recipient: queued (sealed and stored), accepted (the relay's
SubmissionAcceptance), delivered / deferred (last reply) / failed (reply),
acknowledged, opened (a tracking link: weak evidence), with times. The HTML
report adds the totals and a histogram of delivery times (queued → delivered)
as an inline SVG chart: one self-contained file, no script, no external request.
"""

from __future__ import annotations

import csv
import html
import io
import json
from datetime import datetime
from typing import TYPE_CHECKING, Any

from keys.errors import Error

from .store import CampaignStore

if TYPE_CHECKING:
    from ..api import Certmail
    from ..notary_client import NotaryClient

__all__ = ["COLUMNS", "campaign_rows", "render"]

COLUMNS = [
    "row",
    "email",
    "state",
    "sha256",
    "message_id",
    "queued",
    "accepted",
    "delivered",
    "deferred",
    "failed",
    "acknowledged",
    "opened",
    "reply",
    "error",
    "delivery",  # encrypted (to the recipient's key), sealed, or pickup (a link: no key)
    "seal",  # sealed: registered, released (acknowledged), refused, expired
    "attempts",  # the relay's delivery attempts, each with its time, outcome, server, reply
]

#: A sealed message's seal as its receipts tell it (the timeline's step words).
SEAL_STEPS = {"acknowledged": "released", "refused": "refused", "expired": "expired"}


def _ts(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None


#: Hashes per ``POST /v1/receipts/batch`` (the notary's bound, 1,000: docs/api.md).
RECEIPTS_PAGE = 1000


def _all_evidence(
    cm: Certmail, wanted: list[tuple[str, str, str]], states: dict[str, list[dict[str, Any]]]
) -> dict[tuple[str, str], dict[str, Any]]:
    """The evidence of each ``(sha256, email, message_id)`` wanted, keyed by
    ``(sha256, email)``: the receipts asked for in pages of :data:`RECEIPTS_PAGE`
    (one ``POST /v1/receipts/batch`` each), every receipt checked as one fetched alone
    would be. A page the notary does not answer, or no notary, gives no evidence."""
    out: dict[tuple[str, str], dict[str, Any]] = {}
    if not wanted:
        return out
    try:
        client = cm.notary()
    except Error:
        return out
    for i in range(0, len(wanted), RECEIPTS_PAGE):
        page = wanted[i : i + RECEIPTS_PAGE]
        try:
            got = client.receipts_batch([sha for sha, _, _ in page])
        except Error:
            continue
        for sha, email, message_id in page:
            ev = _evidence(client, got.get(sha, []), sha, email, message_id, states.get(sha, []))
            out[(sha, email)] = ev
    return out


def _all_deliveries(cm: Certmail, hashes: list[str]) -> dict[str, list[dict[str, Any]]]:
    """The relay's deliveries of each message (its state and every attempt; not
    evidence), :data:`RECEIPTS_PAGE` messages a ``POST /v1/deliveries/batch``. A page
    the notary does not answer, or no notary, gives nothing."""
    out: dict[str, list[dict[str, Any]]] = {}
    if not hashes:
        return out
    try:
        client = cm.notary()
    except Error:
        return out
    for i in range(0, len(hashes), RECEIPTS_PAGE):
        try:
            out |= client.deliveries_batch(hashes[i : i + RECEIPTS_PAGE])
        except Error:
            continue
    return out


def _attempts(deliveries: list[dict[str, Any]], email: str) -> list[dict[str, Any]]:
    """Each attempt the relay made to deliver to ``email``: its start, end, outcome, the
    server a final one reached, the server's reply and (deferred) why, oldest first."""
    out = []
    for d in deliveries:
        if d.get("recipient") != email:
            continue
        for a in d.get("history") or []:
            if not isinstance(a, dict):
                continue
            reply = a.get("reply")
            out.append(
                {
                    "time": a.get("started"),
                    "finished": a.get("finished"),
                    "outcome": a.get("outcome") or "in progress",
                    "server": a.get("host"),
                    "reply": f"{reply.get('code')} {reply.get('text')}"
                    if isinstance(reply, dict)
                    else None,
                    "error": a.get("error"),
                }
            )
    return out


def attempts_text(attempts: list[dict[str, Any]]) -> str:
    """The ``attempts`` column of the CSV and HTML reports: a line per attempt,
    ``TIME OUTCOME SERVER REPLY`` (``-`` for a server not recorded; the error when no
    server replied)."""
    return "\n".join(
        " ".join(
            [
                str(a["time"]),
                str(a["outcome"]),
                str(a["server"] or "-"),
                str(a["reply"] or a["error"] or ""),
            ]
        ).rstrip()
        for a in attempts
    )


def _evidence(
    client: NotaryClient,
    got: list[dict[str, Any]],
    sha: str,
    email: str,
    message_id: str,
    deliveries: list[dict[str, Any]],
) -> dict[str, Any]:
    """The steps the receipts ``got`` show for one message (nothing when one of them does
    not verify, or there are none: as the 404 of ``GET .../receipts`` was)."""
    from ..timeline import build_timeline

    if not got:
        return {}
    try:
        for r in got:
            client.check_receipt(r, sha, message_id)
    except Error:
        return {}
    out: dict[str, Any] = {}
    for ev in build_timeline(got, [email]).recipients.get(email, []):
        step = ev.step.split(" ")[0]
        if step in SEAL_STEPS:
            out["seal_step"] = SEAL_STEPS[step]
        if step in ("accepted", "delivered", "failed", "acknowledged", "opened", "deferred"):
            out[step] = ev.time
            reply = ev.reply
            if reply:
                out["reply"] = f"{reply.get('code')} {reply.get('text')}"
    if not any(k in out for k in ("delivered", "failed")):
        out.update(_deferred(deliveries, email))
    return out


def _deferred(deliveries: list[dict[str, Any]], email: str) -> dict[str, Any]:
    """The relay's delivery state when it has tried and will try again (not evidence)."""
    for d in deliveries:
        if d.get("recipient") == email and d.get("attempts") and d.get("next_attempt"):
            return {
                "deferred": d.get("last_attempt"),
                "reply": d.get("last_reply") or d.get("last_error"),
            }
    return {}


def campaign_rows(cm: Certmail, name: str, *, evidence: bool = True) -> list[dict[str, Any]]:
    """One dict per recipient (COLUMNS), with the notary's evidence when ``evidence``."""
    with CampaignStore(cm.settings.ledger_path) as store:
        spec = store.get(name).spec
        recipients = store.recipients(name)
    pickup = set(spec.get("pickup", ()))
    sealed = "sealed" if spec.get("sealed") else "encrypted"
    wanted = [
        (r.sha256, r.email, r.message_id)
        for r in recipients
        if evidence and r.sha256 and r.state in ("accepted", "submitted")
    ]
    relayed = spec.get("via") == "relay"
    states = _all_deliveries(cm, [sha for sha, _, _ in wanted]) if relayed else {}
    found = _all_evidence(cm, wanted, states)
    out = []
    for r in recipients:
        row: dict[str, Any] = dict.fromkeys(COLUMNS)
        row.update(
            row=r.row_no,
            email=r.email,
            state=r.state,
            sha256=r.sha256,
            message_id=r.message_id,
            queued=r.queued_at,
            reply=r.reply,
            error=r.error,
            delivery="pickup" if r.email.lower() in pickup else sealed,
            seal=r.seal,
        )
        if r.state == "accepted":
            row["accepted"] = r.submitted_at
        if evidence and r.sha256 and r.state in ("accepted", "submitted"):
            ev = dict(found.get((r.sha256, r.email), {}))
            step = ev.pop("seal_step", None)
            row.update({k: v for k, v in ev.items() if v})
            if row["seal"] and step:
                row["seal"] = step
            row["attempts"] = _attempts(states.get(r.sha256, []), r.email)
            if row["delivered"] or row["failed"] or row["acknowledged"]:
                row["state"] = (
                    "acknowledged"
                    if row["acknowledged"]
                    else "delivered"
                    if row["delivered"]
                    else "failed"
                )
        out.append(row)
    return out


def totals(rows: list[dict[str, Any]]) -> dict[str, int]:
    t: dict[str, int] = {}
    for r in rows:
        t[r["state"]] = t.get(r["state"], 0) + 1
    return t


def delivery_seconds(rows: list[dict[str, Any]]) -> list[float]:
    out = []
    for r in rows:
        a, b = _ts(r["queued"]), _ts(r["delivered"])
        if a and b:
            out.append(max(0.0, (b - a).total_seconds()))
    return out


def svg_histogram(values: list[float], bins: int = 12) -> str:
    """An inline SVG bar chart of ``values`` (seconds from queued to delivered)."""
    w, h, pad = 640, 240, 40
    if not values:
        return (
            f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="60" role="img">'
            '<text x="10" y="30">no deliveries yet</text></svg>'
        )
    lo, hi = min(values), max(values)
    span = (hi - lo) or 1.0
    counts = [0] * bins
    for v in values:
        counts[min(bins - 1, int((v - lo) / span * bins))] += 1
    top = max(counts)
    bw = (w - 2 * pad) / bins
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" role="img" '
        'aria-label="delivery time histogram">',
        f'<line x1="{pad}" y1="{h - pad}" x2="{w - pad}" y2="{h - pad}" stroke="#333"/>',
    ]
    for i, c in enumerate(counts):
        bh = (h - 2 * pad) * c / top
        x = pad + i * bw
        edge = lo + span * i / bins
        parts.append(
            f'<rect x="{x:.1f}" y="{h - pad - bh:.1f}" width="{bw - 2:.1f}" '
            f'height="{bh:.1f}" fill="#3a6ea5"><title>{edge:.1f}s: {c}</title></rect>'
        )
        if c:
            parts.append(
                f'<text x="{x + bw / 2:.1f}" y="{h - pad - bh - 4:.1f}" '
                f'font-size="10" text-anchor="middle">{c}</text>'
            )
    parts.append(f'<text x="{pad}" y="{h - 12}" font-size="11">{lo:.1f} s</text>')
    parts.append(
        f'<text x="{w - pad}" y="{h - 12}" font-size="11" text-anchor="end">'
        f"{hi:.1f} s (queued to delivered)</text></svg>"
    )
    return "".join(parts)


def _cell(row: dict[str, Any], column: str) -> str:
    """One HTML table cell's content (escaped): the attempts a line each."""
    if column == "attempts":
        lines = attempts_text(row["attempts"] or []).splitlines()
        return "<br>".join(html.escape(x) for x in lines)
    return html.escape(str(row[column] or ""))


def render(name: str, rows: list[dict[str, Any]], fmt: str) -> str:
    """The report as ``csv``, ``json`` or ``html``."""
    if fmt == "json":
        return json.dumps({"campaign": name, "totals": totals(rows), "recipients": rows}, indent=2)
    if fmt == "csv":
        buf = io.StringIO()
        w = csv.DictWriter(buf, COLUMNS, lineterminator="\r\n")
        w.writeheader()
        w.writerows({**r, "attempts": attempts_text(r["attempts"] or [])} for r in rows)
        return buf.getvalue()
    if fmt != "html":
        raise Error(f"unknown report format {fmt!r}", hint="--format csv, json or html")
    e = html.escape
    tot = "".join(f"<li>{e(k)}: {v}</li>" for k, v in sorted(totals(rows).items()))
    head = "".join(f"<th>{e(c)}</th>" for c in COLUMNS)
    body = "".join(
        "<tr>" + "".join(f"<td>{_cell(r, c)}</td>" for c in COLUMNS) + "</tr>" for r in rows
    )
    return (
        f'<!doctype html><html><head><meta charset="utf-8"><title>Campaign {e(name)}'
        "</title><style>body{font-family:sans-serif}table{border-collapse:collapse;"
        "font-size:12px}td,th{border:1px solid #ccc;padding:2px 4px}</style></head><body>"
        f"<h1>Campaign {e(name)}</h1><h2>Totals ({len(rows)} recipients)</h2><ul>{tot}</ul>"
        f"<h2>Delivery time</h2>{svg_histogram(delivery_seconds(rows))}"
        f"<h2>Recipients</h2><table><tr>{head}</tr>{body}</table></body></html>\n"
    )
