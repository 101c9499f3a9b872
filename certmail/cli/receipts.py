"""``certmail receipts [SHA256|MESSAGE-ID] [--watch] [--json]``: a message's timeline.

Fetches the receipts the notary holds for a message (``GET
/v1/messages/{sha256}/receipts``), checks each against the notary's verifier
key, keeps new ones in the ledger and shows the timeline the library builds
(:func:`certmail.timeline.build_timeline`): per recipient, when the message
was accepted, delivered (or failed) and acknowledged. Without an argument it
lists the ledger's recent messages.
"""

from __future__ import annotations

import json
import re
import sys
import time
from typing import TYPE_CHECKING, Any

import click

from certmail.cli.app import App, home_option, json_option, pass_app
from keys.errors import Error

if TYPE_CHECKING:
    from certmail.config import Settings
    from certmail.ledger import Entry, Ledger
    from certmail.notary_client import NotaryClient
    from certmail.timeline import Event, Timeline

_SHA256 = re.compile(r"[0-9a-f]{64}")


@click.command("receipts")
@click.argument("ref", required=False, metavar="[SHA256|MESSAGE-ID]")
@click.option("--watch", is_flag=True, help="Keep polling until every recipient is done.")
@click.option(
    "--interval",
    default=2.0,
    show_default=True,
    type=click.FloatRange(0.05, 3600),
    help="Seconds between polls with --watch.",
)
@click.option(
    "--timeout",
    "watch_timeout",
    type=click.FloatRange(0),
    default=None,
    help="Give up watching after this many seconds (exit 5).",
)
@json_option("Print JSON on stdout.")
@home_option
@pass_app
def receipts(
    app: App, ref: str | None, watch: bool, interval: float, watch_timeout: float | None
) -> None:
    """Show a message's timeline per recipient: accepted, delivered, failed, acknowledged.

    \b
    Examples:
      certmail receipts                       recent messages in the ledger
      certmail receipts 3f2a9c1e --watch      follow one until delivered
      certmail receipts '<id@example.com>' --json
    """
    from certmail.ledger import Ledger

    settings = app.settings()
    ledger = Ledger(settings.ledger_path, settings.outbox_dir, settings.sent_dir)
    try:
        if ref is None:
            _list(ledger, app.as_json)
            return
        _show(ledger, settings, ref, watch, interval, watch_timeout, app.as_json)
    finally:
        ledger.close()


def _list(ledger: Ledger, as_json: bool) -> None:
    rows = ledger.all(limit=50)
    if as_json:
        click.echo(json.dumps([e.to_json() for e in rows]))
        return
    if not rows:
        click.echo("certmail: no messages in the ledger yet", err=True)
    for e in rows:
        click.echo(
            f"{e.sha256[:16]}  {e.created[:19]}  {e.status:<10} {e.via:<5} "
            f"{e.message_id}  -> {', '.join(e.recipients)}"
        )


def _fetch(
    client: NotaryClient,
    ledger: Ledger,
    entry: Entry | None,
    sha256: str,
    message_id: str | None,
    watch: bool,
) -> list[dict[str, Any]]:
    """The notary's receipts, each checked; new ones kept in the ledger."""
    from keys.errors import NotFoundError, TemporaryError

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
    return got


def _show(
    ledger: Ledger,
    settings: Settings,
    ref: str,
    watch: bool,
    interval: float,
    watch_timeout: float | None,
    as_json: bool,
) -> None:
    from certmail.notary_client import NotaryClient
    from certmail.timeline import build_timeline
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
        raise Error(
            "no notary configured", hint="set CERTMAIL_NOTARY_URL and CERTMAIL_NOTARY_TOKEN"
        )

    def keyring() -> Any:
        from keys.gpg import Keyring

        return Keyring(settings.gnupghome)

    started = time.monotonic()
    shown: set[str] = set()
    offline: TemporaryError | None = None
    with NotaryClient(settings.notary_url, settings.notary_token) as client:
        while True:
            try:
                got = _fetch(client, ledger, entry, sha256, message_id, watch)
            except TemporaryError as e:
                if entry is None:
                    raise
                # The notary cannot be reached: show what the ledger kept (each
                # receipt was checked when it was kept).
                offline, got = e, ledger.receipts(sha256)
            tl = build_timeline(got, recipients, keyring=keyring)
            message_id = message_id or tl.message_id
            if watch and not as_json:
                _echo_new(tl, shown)
            if not watch or tl.final:
                break
            if watch_timeout is not None and time.monotonic() - started > watch_timeout:
                raise TemporaryError(
                    f"not every recipient is done after {watch_timeout:g} s",
                    hint=f"certmail receipts {sha256[:16]} --watch",
                )
            time.sleep(interval)
    status = ledger.get(sha256).to_json() if entry is not None else None
    if as_json:
        click.echo(
            json.dumps(
                {
                    "sha256": sha256,
                    "message_id": message_id,
                    **tl.to_json(),
                    "receipts": got,
                    "ledger": status,
                    "source": "ledger" if offline else "notary",
                }
            )
        )
    else:
        if offline is not None:
            click.echo(
                "certmail: warning: the notary could not be reached; this is the stored "
                "view from your ledger, and later events are not shown",
                err=True,
            )
        _render(tl, sha256, message_id, status)
    if offline is not None:  # what was shown is the stored view: exit 5 (its cause stays)
        offline.hint = f"certmail receipts {sha256[:16]} again once the notary is back"
        raise offline


def _echo_new(tl: Timeline, shown: set[str]) -> None:
    """With --watch: each step once, as it appears."""
    for rcpt, steps in tl.recipients.items():
        for s in steps:
            key = f"{rcpt} {s.event} {s.time}"
            if key not in shown:
                shown.add(key)
                click.echo(f"{s.time}  {rcpt}: {s.step}", err=True)


def _detail(s: Event) -> str:
    if s.reply:
        return f"  ({s.reply.get('code')} {s.reply.get('text', '')[:60]})"
    if s.reason:
        return f"  ({s.reason})"
    if s.detail:
        return f"  ({s.detail})"
    if s.fingerprint:
        return f"  (key {s.fingerprint})"
    return ""


def _render(
    tl: Timeline, sha256: str, message_id: str | None, status: dict[str, Any] | None
) -> None:
    click.echo(f"message {message_id or '?'}  sha256 {sha256}")
    if status is not None and status["status"] in ("queued", "uncertain"):
        click.echo(
            f"  still in the outbox ({status['status']} via {status['via']}): "
            "certmail outbox flush",
            err=True,
        )
    if not tl.recipients:
        click.echo("  no evidence yet", err=True)
    for rcpt, steps in tl.recipients.items():
        click.echo(f"  {rcpt}: {tl.status(rcpt)}")
        for s in steps:
            click.echo(f"    {s.time}  {s.step}{_detail(s)}")
    sys.stdout.flush()
