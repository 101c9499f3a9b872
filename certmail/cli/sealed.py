"""``certmail open`` of a sealed message, terminal side (docs/sealed.md): ask, then report."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import click

from certmail.cli.app import App, emit_json, say
from keys.errors import Error

if TYPE_CHECKING:
    from certmail.results import OpenResult
    from certmail.sealed.opening import SealedInfo, SealedOpening


def sealed_opening(app: App, ack: bool | None, refuse: bool) -> SealedOpening:
    """How ``open`` decides on a sealed message: --ack, --refuse, else ask on a terminal."""
    from certmail.sealed.opening import SealedOpening

    if ack and refuse:
        raise click.UsageError("--ack and --refuse exclude each other")
    interactive = not app.as_json and sys.stdin.isatty() and sys.stderr.isatty()
    choice = "refuse" if refuse else "ack" if ack else None
    return SealedOpening(choice, _ask if interactive and ack is None else None)


def _ask(info: SealedInfo) -> bool:
    from rich.markup import escape

    say(
        "[bold]sealed message[/]: its content is handed over only against your signed "
        "acknowledgement, which the notary logs first\n"
        f"From:    {escape(info.sender)}\nSubject: {escape(info.subject)}\n"
        f"Size:    {info.size:,} bytes\nNotary:  {escape(info.notary)}"
    )
    return click.confirm(
        f"certmail: sign an acknowledgement of receipt as {info.recipient} and open it?",
        default=False,
        err=True,
    )


def sealed_done(app: App, r: OpenResult, how: SealedOpening, summary: str) -> None:
    """Print what was opened (or refused) and the notary's receipt."""
    from rich.markup import escape

    if how.outcome is None:
        raise Error("--refuse is for sealed messages; this one is not sealed")
    sealed = {
        "outcome": how.outcome,
        "fingerprint": how.fingerprint,
        "notary": how.info.notary if how.info else None,
        "size": how.info.size if how.info else None,
        "receipt": how.receipt,
    }
    if app.as_json:
        emit_json({**r.to_json(), "sealed": sealed, "ack": None})
        return
    if how.outcome == "refused":
        say(
            f"{summary}\n[yellow]refused[/]: RejectionByRecipient logged by "
            f"{escape(str(sealed['notary']))} with key {how.fingerprint}; "
            "the content was not handed over"
        )
        return
    say(
        f"{summary}\n[green]acknowledged[/]: ContentHandover logged by "
        f"{escape(str(sealed['notary']))} with key {how.fingerprint}, then the content released"
    )
    click.echo(r.body, nl=not r.body.endswith("\n"))
