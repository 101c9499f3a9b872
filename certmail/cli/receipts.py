"""``certmail receipts [SHA256|MESSAGE-ID] [--watch] [--json]``: a message's timeline.

Fetches the receipts the notary holds for a message (``GET
/v1/messages/{sha256}/receipts``), checks each against the notary's verifier
key, keeps new ones in the ledger and shows, per recipient, when the message
was accepted, delivered (or failed) and acknowledged. Without an argument it
lists the ledger's recent messages.

A message sent through the notary's relay (``certmail send``'s default when
a notary is configured) is done once every recipient's server accepted or
refused it. One sent directly (``--via smtp``) has a single receipt, the
notarization of its hash (channel ``api``): the notary never sees its
delivery, so that receipt is the whole timeline.
"""

from __future__ import annotations

import base64
import json
import re
import sys
import time
from pathlib import Path
from typing import Any

import click

from keys.errors import Error

_SHA256 = re.compile(r"[0-9a-f]{64}")

#: Event -> the word the timeline shows for it.
STEPS = {
    "SubmissionAcceptance": "accepted",
    "RelayToNonERDS": "delivered",
    "RelayToNonERDSFailure": "failed",
    "ContentHandover": "acknowledged",
    "ContentAccessTracking": "opened (tracking link: weak evidence)",
    "VirusDetected": "refused: virus",
    "SubmissionRejection": "rejected",
}


def statements(receipts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The evidence statements inside receipts, in log order."""
    out = []
    for r in receipts:
        try:
            out.append(json.loads(base64.b64decode(r["entry"])))
        except (KeyError, ValueError, TypeError):
            continue
    return out


def timeline(stmts: list[dict[str, Any]], recipients: list[str]) -> dict[str, Any]:
    """Per recipient: its steps (event, time, details); and whether every recipient is done."""
    per: dict[str, list[dict[str, Any]]] = {r: [] for r in recipients}
    direct = False
    for s in stmts:
        event = s.get("event", "")
        step = {"step": STEPS.get(event, event), "event": event, "time": s.get("time")}
        if event == "SubmissionAcceptance" and s.get("channel") == "api":
            direct = True  # notarized hash of a message sent directly: nothing follows
            step["step"] = "notarized (sent directly, not through the relay)"
        if event in ("SubmissionAcceptance", "VirusDetected", "SubmissionRejection"):
            for r in s.get("recipients") or list(per):
                per.setdefault(r, []).append(step)
            continue
        r = s.get("recipient")
        if not isinstance(r, str):
            continue
        if event == "RelayToNonERDS":
            step["host"] = s.get("host")
            step["reply"] = s.get("reply")
        elif event == "RelayToNonERDSFailure":
            step["reason"] = s.get("reason")
            step["reply"] = s.get("reply")
        elif event == "ContentHandover":
            step["fingerprint"] = s.get("fingerprint")
            check = s.get("_ack_check")  # set by certmail.ack.check_handover (below)
            if check is not None:
                step["key"] = check.verdict
                if not check.ok:
                    step["step"] = (f"acknowledged by a key that is not {r}'s"
                                    if check.verdict == "not the recipient's key"
                                    else "acknowledgement with a BAD signature")
                    step["detail"] = check.detail
        elif event == "ContentAccessTracking":
            step["strength"] = s.get("strength")
        per.setdefault(r, []).append(step)
    final = bool(per) and (direct or all(
        any(x["event"] in ("RelayToNonERDS", "RelayToNonERDSFailure", "VirusDetected",
                           "SubmissionRejection") for x in steps)
        for steps in per.values()
    ))
    return {"recipients": per, "final": final}


def _check_acks(stmts: list[dict[str, Any]], settings: Any) -> None:
    """Check each ContentHandover against the recipient's key in our keyring (docs/ack.md)."""
    handovers = [s for s in stmts if s.get("event") == "ContentHandover"]
    if not handovers:
        return
    from certmail.ack import check_handover
    from keys.gpg import Keyring

    ring = Keyring(settings.gnupghome)
    for s in handovers:
        s["_ack_check"] = check_handover(s, ring)


def _status(steps: list[dict[str, Any]]) -> str:
    return steps[-1]["step"] if steps else "no evidence yet"


@click.command("receipts")
@click.argument("ref", required=False, metavar="[SHA256|MESSAGE-ID]")
@click.option("--watch", is_flag=True, help="Keep polling until every recipient is done.")
@click.option("--interval", default=2.0, show_default=True, type=click.FloatRange(0.05, 3600),
              help="Seconds between polls with --watch.")
@click.option("--timeout", "watch_timeout", type=click.FloatRange(0), default=None,
              help="Give up watching after this many seconds (exit 5).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON on stdout.")
@click.option("--home", type=click.Path(file_okay=False, path_type=Path), envvar="CERTMAIL_HOME",
              help="The certmail home (default: $CERTMAIL_HOME, else the platform's config dir).")
def receipts(ref: str | None, watch: bool, interval: float, watch_timeout: float | None,
             as_json: bool, home: Path | None) -> None:
    """Show a message's timeline per recipient: accepted, delivered, failed, acknowledged.

    \b
    Examples:
      certmail receipts                       recent messages in the ledger
      certmail receipts 3f2a9c1e --watch      follow one until delivered
      certmail receipts '<id@example.com>' --json
    """
    from certmail.config import load_settings
    from certmail.ledger import Ledger

    settings = load_settings(home)
    ledger = Ledger(settings.ledger_path, settings.outbox_dir, settings.sent_dir)
    try:
        if ref is None:
            _list(ledger, as_json)
            return
        _show(ledger, settings, ref, watch, interval, watch_timeout, as_json)
    finally:
        ledger.close()


def _list(ledger: Any, as_json: bool) -> None:
    rows = ledger.all(limit=50)
    if as_json:
        click.echo(json.dumps([e.to_json() for e in rows]))
        return
    if not rows:
        click.echo("certmail: no messages in the ledger yet", err=True)
    for e in rows:
        click.echo(f"{e.sha256[:16]}  {e.created[:19]}  {e.status:<10} {e.via:<5} "
                   f"{e.message_id}  -> {', '.join(e.recipients)}")


def _show(ledger: Any, settings: Any, ref: str, watch: bool, interval: float,
          watch_timeout: float | None, as_json: bool) -> None:
    from certmail.notary_client import NotaryClient
    from keys.errors import NotFoundError, TemporaryError

    entry = None
    try:
        entry = ledger.find(ref)
        sha256, message_id, recipients = entry.sha256, entry.message_id, list(entry.recipients)
    except NotFoundError:
        if not _SHA256.fullmatch(ref):
            raise
        sha256, message_id, recipients = ref, None, []
    if not settings.notary_url:
        raise Error("no notary configured",
                    hint="set CERTMAIL_NOTARY_URL and CERTMAIL_NOTARY_TOKEN")
    started = time.monotonic()
    shown: set[str] = set()
    with NotaryClient(settings.notary_url, settings.notary_token) as client:
        while True:
            try:
                got = client.receipts(sha256)
            except NotFoundError:
                got = []
            except Error as e:
                if not (watch and isinstance(e, TemporaryError)):
                    raise
                got = []
            for r in got:
                client.check_receipt(r, sha256, message_id)
            if entry is not None:
                kept = {x.get("entry") for x in ledger.receipts(sha256)}
                for r in got:
                    if r.get("entry") not in kept:
                        ledger.add_receipt(sha256, r)
            stmts = statements(got)
            _check_acks(stmts, settings)
            if message_id is None and stmts:
                message_id = stmts[0]["message"]["id"]
            tl = timeline(stmts, recipients)
            if watch and not as_json:
                for rcpt, steps in tl["recipients"].items():
                    for s in steps:
                        key = f"{rcpt} {s['event']} {s['time']}"
                        if key not in shown:
                            shown.add(key)
                            click.echo(f"{s['time']}  {rcpt}: {s['step']}", err=True)
            if not watch or tl["final"]:
                break
            if watch_timeout is not None and time.monotonic() - started > watch_timeout:
                raise TemporaryError(f"not every recipient is done after {watch_timeout:g} s",
                                     hint=f"certmail receipts {sha256[:16]} --watch")
            time.sleep(interval)
    status = ledger.get(sha256).to_json() if entry is not None else None
    if as_json:
        click.echo(json.dumps({"sha256": sha256, "message_id": message_id, **tl,
                               "receipts": got, "ledger": status}))
        return
    click.echo(f"message {message_id or '?'}  sha256 {sha256}")
    if status is not None and status["status"] in ("queued", "uncertain"):
        click.echo(f"  still in the outbox ({status['status']} via {status['via']}): "
                   "certmail outbox flush", err=True)
    if not tl["recipients"]:
        click.echo("  no evidence yet", err=True)
    for rcpt, steps in tl["recipients"].items():
        click.echo(f"  {rcpt}: {_status(steps)}")
        for s in steps:
            detail = ""
            if s.get("reply"):
                detail = f"  ({s['reply'].get('code')} {s['reply'].get('text', '')[:60]})"
            elif s.get("reason"):
                detail = f"  ({s['reason']})"
            elif s.get("detail"):
                detail = f"  ({s['detail']})"
            elif s.get("fingerprint"):
                detail = f"  (key {s['fingerprint']})"
            click.echo(f"    {s['time']}  {s['step']}{detail}")
    sys.stdout.flush()
