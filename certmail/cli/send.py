"""``certmail send``: scan, sign, encrypt and send one message, with the notary's evidence.

Relay mode (``--via relay``, the default whenever a notary is configured)
submits the exact bytes to the notary's SMTP relay, which delivers them and
logs what it saw; direct mode (``--via smtp``) sends through CERTMAIL_SMTP_URL
and notarizes the hash.

Data (the message's SHA-256, or with ``--json`` one object) goes to stdout;
progress and the summary go to stderr. Exit codes: docs/cli.md.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from certmail.cli.app import App, emit_json, home_option, json_option, pass_app, say, warn
from certmail.cli.options import sealed_options
from certmail.cli.smime import refuse_trust_options, send_trust_options

if TYPE_CHECKING:
    from certmail.results import SendResult

BIG = 8 << 20  # show a progress bar when attachments add up to more than this


SEND_STAGES = {
    "compose": "scanning done; encoding",
    "sign": "signing",
    "encrypt": "encrypting",
    "check": "re-verifying",
    "smtp": "sending",
}


@contextmanager
def progress_bar(
    enabled: bool, labels: dict[str, str] | None = None
) -> Iterator[Callable[[str, int, int], None] | None]:
    """A rich progress bar on stderr, fed by the library's (stage, done, total) callback.

    ``labels`` names the stages (default: those of ``send``).
    """
    labels = SEND_STAGES if labels is None else labels
    if not enabled:
        yield None
        return
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    with Progress(
        TextColumn("{task.description:<22}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        transient=True,
    ) as bar:
        task = bar.add_task("preparing", total=None)

        def update(stage: str, done: int, total: int) -> None:
            if total > 1:
                bar.update(task, description=labels.get(stage, stage), completed=done, total=total)
            else:
                bar.update(task, description=labels.get(stage, stage), total=None)

        yield update


@click.command()
@click.option(
    "--to", "to", multiple=True, required=True, metavar="ADDR", help="Recipient (repeat for more)."
)
@click.option("--cc", multiple=True, metavar="ADDR", help="Copy recipient (repeat for more).")
@click.option("--subject", required=True, help="The subject (protected: not shown outside).")
@click.option(
    "--body-file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="The text body (UTF-8); default: read stdin.",
)
@click.option(
    "--attach",
    multiple=True,
    type=click.Path(dir_okay=False, path_type=Path),
    metavar="FILE",
    help="Attach a file (repeat for more); scanned first.",
)
@click.option(
    "--via",
    type=click.Choice(["smtp", "relay"]),
    envvar="CERTMAIL_VIA",
    help="relay: through the notary's relay (registered; the default when a notary "
    "is configured); smtp: your own server, the notary notarizes the hash.",
)
@click.option("--no-encrypt", is_flag=True, help="Sign only (the content is readable in transit).")
@click.option("--no-sign", is_flag=True, help="Do not sign.")
@click.option("--no-notarize", is_flag=True, help="Do not ask the notary to timestamp the hash.")
@click.option(
    "--require-scan",
    is_flag=True,
    default=None,
    help="Refuse to send attachments when no virus scanner is available.",
)
@click.option(
    "--track-open",
    is_flag=True,
    help="Add a tracking link per recipient the notary logs as weak evidence "
    "when followed (docs/ack.md).",
)
@click.option(
    "--request-mdn",
    is_flag=True,
    help="Ask for an RFC 8098 read receipt (Disposition-Notification-To: you); "
    "the recipient's certmail open --ack --mdn sends it, PGP-signed.",
)
@click.option(
    "--no-locate",
    is_flag=True,
    help="Do not look up missing recipient keys (WKD, keyserver, Autocrypt; docs/keys.md).",
)
@click.option(
    "--smime",
    is_flag=True,
    help="Sign and encrypt with S/MIME (RFC 8551) instead of OpenPGP: your key from "
    "keys smime import, the recipients' certificates from keys smime import-cert.",
)
@send_trust_options
@sealed_options(
    "the content",
    "With --sealed or --pickup: how long the notary keeps its key share.",
)
@click.option(
    "--pickup",
    is_flag=True,
    help="For a recipient without a key: email a link to the notary's pickup page, where "
    "they acknowledge receipt, then read the content in the browser (docs/sealed.md).",
)
@click.option(
    "--pickup-passphrase-file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="With --pickup: the page also asks for this passphrase (give it to the "
    "recipient another way); its first line is the passphrase.",
)
@json_option()
@home_option
@pass_app
def send(
    app: App,
    to: tuple[str, ...],
    cc: tuple[str, ...],
    subject: str,
    body_file: Path | None,
    attach: tuple[Path, ...],
    via: str | None,
    no_encrypt: bool,
    no_sign: bool,
    no_notarize: bool,
    require_scan: bool | None,
    track_open: bool,
    request_mdn: bool,
    no_locate: bool = False,
    smime: bool = False,
    sealed: bool = False,
    seal_expires: int = 14 * 86400,
    pickup: bool = False,
    pickup_passphrase_file: Path | None = None,
) -> None:
    """Send a signed, encrypted, virus-scanned, notarized message.

    The body comes from --body-file or stdin. With CERTMAIL_NOTARY_URL and
    CERTMAIL_NOTARY_TOKEN set it goes through the notary's relay (registered
    delivery; nothing else to configure); --via smtp sends through
    CERTMAIL_SMTP_URL instead. Example:

      certmail send --to bob@example.net --subject Contract --attach contract.pdf < note.txt
    """
    from certmail.api import QueuedError

    if not smime:
        refuse_trust_options(app, "a message without --smime; nothing was sent")
    body = _read_body(body_file)
    pickup_options = _pickup_options(pickup, pickup_passphrase_file, seal_expires, via, sealed)
    no_encrypt = no_encrypt or pickup
    # issue 11 item 7: missing OpenPGP keys looked up (WKD, keyserver, Autocrypt), never trusted;
    # with --smime only for --sealed (the notary releases against an OpenPGP-signed ack)
    client = app.client()  # opens nothing yet (the ledger and notary when first used)
    if not no_encrypt and not no_locate and (sealed or not smime):
        from certmail.cli.keys import locate_for_send

        # the send's own keyring: the listings the lookup made serve the send
        locate_for_send(app, [*to, *cc], client.keyring)
    total = _total_size(attach)
    show = not app.as_json and sys.stderr.isatty() and total > BIG
    with client as cm, progress_bar(show) as bar:
        try:
            result = cm.send(
                to=to,
                cc=cc,
                subject=subject,
                body=body,
                attachments=attach,
                via=via,
                encrypt=not no_encrypt,
                sign=not no_sign,
                notarize=not no_notarize,
                require_scan=require_scan,
                progress=bar,
                track_open=track_open,
                request_mdn=request_mdn,
                smime=smime,
                seal_until=_expiry(seal_expires) if sealed else None,
                pickup=pickup_options,
            )
        except QueuedError as e:
            for w in e.result.warnings:
                warn(w)
            if app.as_json:
                emit_json(e.result.to_json())
            raise
    for w in result.warnings:
        warn(w)
    if app.as_json:
        emit_json(result.to_json())
        return
    click.echo(result.sha256)
    _summary(result)


def _pickup_options(
    pickup: bool, passphrase_file: Path | None, expires: int, via: str | None, sealed: bool
) -> Any:
    """``--pickup``'s options (docs/sealed.md "Pickup"), or None without it."""
    from keys.errors import Error

    if not pickup:
        if passphrase_file is not None:
            raise Error("--pickup-passphrase-file needs --pickup")
        return None
    if sealed:
        raise Error("--sealed and --pickup exclude each other", hint="--pickup: no key needed")
    from certmail.sealed.pickup_sending import PickupOptions, read_passphrase_file

    passphrase = None
    if passphrase_file is not None:
        passphrase = read_passphrase_file(passphrase_file)
    elif via != "smtp":
        warn(
            "the notary's relay carries the pickup link, so the notary could read the content; "
            "add --pickup-passphrase-file (or send --via smtp) to prevent that"
        )
    return PickupOptions(_expiry(expires), passphrase)


def _expiry(seconds: int) -> datetime:
    from datetime import UTC, timedelta

    return datetime.now(UTC) + timedelta(seconds=seconds)


def _read_body(body_file: Path | None) -> bytes:
    from keys.errors import Error

    if body_file is not None:
        try:
            return body_file.read_bytes()
        except OSError as e:
            raise Error(f"cannot read {body_file}: {e.strerror}") from None
    if sys.stdin.isatty():
        say("[dim]type the message, then Ctrl-D[/]")
    return sys.stdin.buffer.read()


def _total_size(attach: tuple[Path, ...]) -> int:
    total = 0
    for a in attach:
        try:
            total += a.stat().st_size
        except OSError:
            pass  # reported by the library with a hint
    return total


def _summary(result: SendResult) -> None:
    """What was sent, how, and what to run next (stderr)."""
    what = (
        "signed, encrypted"
        if result.encrypted and result.signed
        else ("encrypted" if result.encrypted else "signed" if result.signed else "plain")
    )
    how = "through the notary relay" if result.via == "relay" else "via SMTP"
    say(
        f"sent {result.message_id} to {', '.join(result.recipients)} {how} ({what}, "
        f"{result.size:,} bytes)"
    )
    if result.via == "relay":
        say(
            f"accepted by the notary: receipt kept in the ledger; follow delivery with "
            f"certmail receipts {result.sha256[:16]} --watch"
        )
    elif result.receipts:
        say(f"notarized: {len(result.receipts)} receipt(s) kept in the ledger")
