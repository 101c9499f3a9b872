"""``certmail outbox``: messages not yet sent or not yet notarized, and retrying them."""

from __future__ import annotations

import sys

import click

from certmail.cli.app import App, emit_json, home_option, json_option, pass_app, say


@click.group()
def outbox() -> None:
    """Queued messages: a transient SMTP or notary failure leaves them here."""


@outbox.command("list")
@click.option("--all", "show_all", is_flag=True, help="Every message in the ledger (newest first).")
@json_option()
@home_option
@pass_app
def list_(app: App, show_all: bool) -> None:
    """List queued, uncertain and not-yet-notarized messages."""
    with app.client() as cm:
        entries = cm.ledger.all() if show_all else cm.outbox()
    if app.as_json:
        emit_json({"messages": [e.to_json() for e in entries]})
        return
    if not entries:
        say("the outbox is empty")
        return
    for e in entries:
        click.echo(
            f"{e.sha256[:16]}  {e.status:<10}  {e.created[:19]}  {e.message_id}  "
            f"{', '.join(e.recipients)}" + (f"  ({e.last_error})" if e.last_error else "")
        )


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
