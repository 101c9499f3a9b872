"""``certmail outbox``: messages not yet sent or not yet notarized, and retrying them."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from certmail.cli.app import App, emit_json, home_option, json_option, pass_app, say

if TYPE_CHECKING:
    from certmail.ledger import Ledger


@click.group()
def outbox() -> None:
    """Queued messages: a transient SMTP or notary failure leaves them here."""


@outbox.command("list")
@click.option("--all", "show_all", is_flag=True, help="Every message in the ledger (newest first).")
@json_option()
@home_option
@pass_app
def list_(app: App, show_all: bool) -> None:
    """List everything in the outbox: queued, uncertain and not-yet-notarized messages,
    refused ones whose copy is kept there, and acknowledgements still to post.
    """
    with app.client() as cm:
        entries = cm.ledger.all() if show_all else [*cm.outbox(), *cm.ledger.kept()]
        acks = cm.ledger.pending_acks(include_failed=True)
        orphans = cm.ledger.orphans()
    if app.as_json:
        out = {"messages": [e.to_json() for e in entries], "acks": [a.to_json() for a in acks]}
        if orphans:
            out["orphans"] = [{"file": str(p), "size": p.stat().st_size} for p in orphans]
        emit_json(out)
        return
    for p in orphans:
        click.echo(
            f"{p.name[:16]:<16}  {'orphan':<10}  a stored copy with no ledger record "
            f"(left by an interrupted send): {p}"
        )
    if not entries and not acks and not orphans:
        say("the outbox is empty")
        return
    for e in entries:
        click.echo(
            f"{e.sha256[:16]}  {e.status:<10}  {e.created[:19]}  {e.message_id}  "
            f"{', '.join(e.recipients)}" + (f"  ({e.last_error})" if e.last_error else "")
        )
    for a in acks:
        click.echo(
            f"{a.sha256[:16]}  {a.status:<10}  {a.created[:19]}  {a.message_id}  "
            f"-> {a.notary}" + (f"  ({a.last_error})" if a.last_error else "")
        )


@outbox.command()
@click.argument("ref", metavar="ID")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@json_option()
@home_option
@pass_app
def remove(app: App, ref: str, yes: bool) -> None:
    """Remove a message from the outbox (it will not be sent) and delete its stored copy.

    ID is a SHA-256 prefix (at least 8 hex digits) or the Message-ID, as `outbox list`
    shows. Asks on a terminal unless --yes; off a terminal --yes is required.
    """
    from keys.errors import Error, NotFoundError

    with app.client() as cm:
        try:
            entry = cm.ledger.find(ref)
        except NotFoundError:
            orphan = _remove_orphan(cm.ledger, ref, yes)
            if app.as_json:
                emit_json({"removed": {"file": str(orphan)}})
            else:
                say(f"removed {orphan} from the outbox")
            return
        _confirm(
            f"remove {entry.status} message {entry.sha256[:16]} ({entry.message_id})"
            " and delete its stored copy?",
            yes,
            Error,
        )
        gone = cm.ledger.remove(entry.sha256)
    if app.as_json:
        emit_json({"removed": gone.to_json()})
        return
    say(f"removed {gone.sha256[:16]} ({gone.message_id}) from the outbox")


def _remove_orphan(ledger: Ledger, ref: str, yes: bool) -> Path:
    """Delete an outbox file no ledger row accounts for (NotFoundError when none matches)."""
    from keys.errors import Error

    path = ledger.find_orphan(ref)
    _confirm(f"delete the unrecorded copy {path}?", yes, Error)
    ledger.remove_orphan(path)
    return path


def _confirm(question: str, yes: bool, error: type[Exception]) -> None:
    if yes:
        return
    if not (sys.stdin.isatty() and sys.stderr.isatty()):
        raise click.UsageError("removing needs --yes when not on a terminal")
    if not click.confirm(f"certmail: {question}", default=False, err=True):
        raise error("nothing was removed")


@outbox.command()
@click.option(
    "--include-uncertain",
    is_flag=True,
    help="Also resend messages that may already have reached the server.",
)
@json_option()
@home_option
@pass_app
def flush(app: App, include_uncertain: bool) -> None:
    """Send what is queued and notarize what was sent; never resends a sent message.

    Exits 5 when something is still queued after the attempt.
    """
    with app.client() as cm:
        items = cm.flush(include_uncertain=include_uncertain)
    code = max((i.exit_code for i in items), default=0)
    if app.as_json:
        emit_json({"messages": [i.to_json() for i in items]})
    else:
        if not items:
            say("the outbox is empty")
        for i in items:
            line = f"{i.sha256[:16]}  {i.status:<10}  {i.message_id}"
            click.echo(line + (f"  ({i.error})" if i.error else ""))
    if code:
        sys.exit(code)
