"""``certmail receipts [SHA256|MESSAGE-ID] [--watch] [--json]``: a message's timeline.

Fetches the receipts the notary holds for a message (``GET
/v1/messages/{sha256}/receipts``), checks each against the notary's verifier
key, keeps new ones in the ledger and shows the timeline the library builds
(:func:`certmail.timeline.build_timeline`): per recipient, when the message
was accepted, delivered (or failed) and acknowledged, and beside it the
relay's delivery state (``GET /v1/messages/{sha256}/deliveries``: attempts,
last reply, next attempt), so a deferral is visible while it lasts. Without an argument it
lists the ledger's recent messages.
"""

from __future__ import annotations

import json
import re
import sys
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import click

from certmail.cli.app import App, home_option, json_option, pass_app
from certmail.cli.smime import smime_ca_only
from keys.errors import Error, TemporaryError

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
@smime_ca_only
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
    from keys.errors import NotFoundError

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


@dataclass
class _Target:
    """The message asked about: its ledger entry (if any), hash, Message-ID and recipients."""

    entry: Entry | None
    sha256: str
    message_id: str | None
    recipients: list[str]

    @property
    def relayed(self) -> bool:
        """Whether the relay may hold a delivery state (not for a message sent directly)."""
        return self.entry is None or self.entry.via != "smtp"


@dataclass
class _View:
    """What one poll saw: the timeline, the receipts, and what could not be fetched."""

    tl: Timeline
    got: list[dict[str, Any]]
    offline: TemporaryError | None = None  # the notary was not reachable: the stored view
    deliveries_error: str | None = None  # why the delivery state is missing


def _target(ledger: Ledger, ref: str) -> _Target:
    from keys.errors import NotFoundError

    try:
        e = ledger.find(ref)
    except NotFoundError:
        if not _SHA256.fullmatch(ref):
            raise
        return _Target(None, ref, None, [])
    return _Target(e, e.sha256, e.message_id, list(e.recipients))


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

    target = _target(ledger, ref)
    if not settings.notary_url:
        raise Error(
            "no notary configured", hint="set CERTMAIL_NOTARY_URL and CERTMAIL_NOTARY_TOKEN"
        )

    def keyring() -> Any:
        from keys.gpg import Keyring

        return Keyring(settings.gnupghome)

    def smime() -> Any:  # the CA bundle S/MIME acknowledgements are checked against
        from certmail.smime.opening import smime_context

        return smime_context(settings, None, None)

    started = time.monotonic()
    shown: set[str] = set()
    with NotaryClient(settings.notary_url, settings.notary_token) as client:
        while True:
            view = _poll(client, ledger, target, (keyring, smime), watch)
            target.message_id = target.message_id or view.tl.message_id
            if watch and not as_json:
                _echo_new(view.tl, shown)
            if not watch or view.tl.final or view.offline is not None:
                break
            if watch_timeout is not None and time.monotonic() - started > watch_timeout:
                raise TemporaryError(
                    f"not every recipient is done after {watch_timeout:g} s",
                    hint=f"certmail receipts {target.sha256[:16]} --watch",
                )
            time.sleep(interval)
    _emit(ledger, target, view, as_json)


def _poll(
    client: NotaryClient, ledger: Ledger, target: _Target, checkers: Any, watch: bool
) -> _View:
    """Fetch receipts and delivery state once (the ledger's receipts when offline);
    ``checkers``: the keyring's and the S/MIME context's makers."""
    keyring, smime = checkers
    from certmail.timeline import build_timeline, delivery_states
    from keys.errors import NotFoundError

    sha256, entry = target.sha256, target.entry
    try:
        got = _fetch(client, ledger, entry, sha256, target.message_id, watch)
    except TemporaryError as e:
        if entry is None:
            raise
        # The notary cannot be reached: show what the ledger kept (each receipt
        # was checked when it was kept). The delivery state is not kept.
        got = ledger.receipts(sha256)
        view = _View(
            build_timeline(got, target.recipients, keyring=keyring, smime=smime), got, offline=e
        )
        view.deliveries_error = "the notary could not be reached"
        return view
    view = _View(build_timeline(got, target.recipients, keyring=keyring, smime=smime), got)
    if not target.relayed:
        return view
    try:
        view.tl.deliveries = delivery_states(client.deliveries(sha256))
    except NotFoundError:
        pass  # the relay never carried it (yet): the receipts are the whole story
    except Error as e:
        view.deliveries_error = e.message
    return view


def _emit(ledger: Ledger, target: _Target, view: _View, as_json: bool) -> None:
    """Print the view (JSON or text); exit 5 after showing a stored (offline) view."""
    from certmail.cli.mdns import show as show_mdns

    sha256, offline = target.sha256, view.offline
    status = ledger.get(sha256).to_json() if target.entry is not None else None
    if as_json:
        doc = {
            "sha256": sha256,
            "message_id": target.message_id,
            **view.tl.to_json(),
            "deliveries": {r: d.to_json() for r, d in view.tl.deliveries.items()},
            "deliveries_error": view.deliveries_error,
            "receipts": view.got,
            "ledger": status,
            "source": "ledger" if offline else "notary",
        }
        show_mdns(ledger.path, sha256, doc)  # RFC 8098 read receipts kept (issue 11)
        click.echo(json.dumps(doc))
    else:
        if offline is not None:
            click.echo(
                "certmail: warning: the notary could not be reached; this is the stored "
                "view from your ledger: the delivery state could not be fetched, and "
                "later events are not shown",
                err=True,
            )
        elif view.deliveries_error is not None:
            click.echo(
                f"certmail: warning: the delivery state could not be fetched: "
                f"{view.deliveries_error}",
                err=True,
            )
        _render(view.tl, sha256, target.message_id, status)
        show_mdns(ledger.path, sha256, None)
    if offline is not None:  # what was shown is the stored view: exit 5 (its cause stays)
        offline.hint = f"certmail receipts {sha256[:16]} again once the notary is back"
        raise offline


def _echo_new(tl: Timeline, shown: set[str]) -> None:
    """With --watch: each step once, as it appears (and each change of delivery state)."""
    for rcpt, steps in tl.recipients.items():
        for s in steps:
            key = f"{rcpt} {s.event} {s.time}"
            if key not in shown:
                shown.add(key)
                click.echo(f"{s.time}  {rcpt}: {s.step}", err=True)
    for rcpt, d in tl.deliveries.items():
        key = f"{rcpt} delivery {d.state} {d.attempts}"
        if d.state != "delivered" and key not in shown:
            shown.add(key)
            click.echo(f"{d.last_attempt or '-'}  {rcpt}: relay {d.summary()}", err=True)


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
    from certmail.scanverdicts import sentences

    click.echo(f"message {message_id or '?'}  sha256 {sha256}")
    if status is not None and status["status"] in ("queued", "uncertain"):
        click.echo(
            f"  still in the outbox ({status['status']} via {status['via']}): "
            "certmail outbox flush",
            err=True,
        )
    if not tl.recipients and not tl.deliveries:
        click.echo("  no evidence yet", err=True)
    for rcpt in [*tl.recipients, *(r for r in tl.deliveries if r not in tl.recipients)]:
        click.echo(f"  {rcpt}: {tl.status(rcpt)}")
        for s in tl.recipients.get(rcpt, []):
            click.echo(f"    {s.time}  {s.step}{_detail(s)}")
            for line in sentences(s.scans or []):  # a v2 acknowledgement's scan verdicts
                click.echo(f"      {line}")
        if (d := tl.deliveries.get(rcpt)) is not None:
            click.echo(f"    relay: {d.summary()}")
    sys.stdout.flush()
