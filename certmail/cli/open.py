"""``certmail open``: decrypt, verify, check the manifest, scan and save attachments safely."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from certmail.cli.app import App, emit_json, home_option, json_option, pass_app, say, warn
from certmail.cli.smime import smime_ca_option
from keys.errors import Error, TemporaryError

if TYPE_CHECKING:
    from certmail.ack import AckOutcome
    from certmail.results import OpenResult


@click.command("open")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--save-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Save the attachments here (after they were scanned).",
)
@click.option("--force", is_flag=True, help="Overwrite files that exist in --save-dir.")
@click.option(
    "--allow-unsigned", is_flag=True, help="Show a message even though it carries no signature."
)
@click.option(
    "--require-scan",
    is_flag=True,
    default=None,
    help="Refuse to save attachments when no virus scanner is available.",
)
@click.option(
    "--ack/--no-ack",
    default=None,
    help="Sign an acknowledgement of receipt and post it to the message's notary "
    "(default: ask on a terminal when the message is certified).",
)
@click.option(
    "--mdn/--no-mdn",
    default=None,
    help="Also send a signed RFC 8098 disposition notification when the message "
    "asks for one (default: ask on a terminal).",
)
@click.option(
    "--notary",
    "notary_url",
    metavar="URL",
    help="The notary to acknowledge to when the message names none.",
)
@smime_ca_option
@click.option(
    "--refuse",
    is_flag=True,
    help="Refuse a sealed message: a signed refusal is logged, its content is never "
    "handed over (docs/sealed.md).",
)
@json_option()
@home_option
@pass_app
def open_(
    app: App,
    file: Path,
    save_dir: Path | None,
    force: bool,
    allow_unsigned: bool,
    require_scan: bool | None,
    ack: bool | None,
    mdn: bool | None,
    notary_url: str | None,
    refuse: bool = False,
) -> None:
    """Open a received message: the body on stdout, who signed it on stderr.

    Attachments are listed; with --save-dir they are scanned, then saved under
    safe names (never outside the directory, never over a file without --force).
    FILE - reads the message from standard input (a mail client's pipe).
    """
    from certmail.cli.send import BIG, progress_bar

    if str(file) == "-":  # a mail client's pipe command (docs/inbox.md)
        from certmail.inbox.spool import spool_stdin

        file = spool_stdin(click.get_current_context().call_on_close, sys.stdin.buffer)
    from certmail.cli.mdns import open_mdn  # issue 11 item 5: a read receipt coming back

    if open_mdn(app, file):
        return

    show = not app.as_json and sys.stderr.isatty() and _size(file) > BIG
    from certmail.cli.sealed import sealed_done, sealed_opening  # issue 12

    sealing = sealed_opening(app, ack, refuse)
    with app.client() as cm:
        with progress_bar(show, OPEN_STAGES) as bar:
            r = cm.open(
                file,
                save_dir=None if refuse else save_dir,
                force=force,
                allow_unsigned=allow_unsigned,
                require_scan=require_scan,
                progress=bar,
                sealed=sealing,
            )
        if sealing.outcome is not None or refuse:
            return sealed_done(app, r, sealing, _summary(r, None))
        for w in r.warnings:
            warn(w)
        from certmail.cli.keys import autocrypt_seen  # issue 11 item 7: Autocrypt state

        autocrypt_seen(app, file, r.headers.get("From"))
        interactive = not app.as_json and sys.stdin.isatty() and sys.stderr.isatty()
        if ack is None and interactive and r.notary:
            ack = click.confirm(
                f"certmail: this certified message asks for an acknowledgement;"
                f" sign one and send it to {r.notary}?",
                default=False,
                err=True,
            )
        done, failed = (
            _acknowledge(cm, file, r, mdn, notary_url, interactive) if ack else (None, None)
        )
    _emit(app, r, done, failed)


def _acknowledge(
    cm: Any, file: Path, r: OpenResult, mdn: bool | None, notary_url: str | None, interactive: bool
) -> tuple[AckOutcome | None, Error | None]:
    """The signed acknowledgement sent (and, asked on a terminal, an RFC 8098 MDN); an
    error is returned, not raised: the message is shown all the same, then the error."""
    from certmail.ack import acknowledge, disposition_notification_to

    if mdn is None and interactive and disposition_notification_to(file.read_bytes()):
        mdn = click.confirm(
            "certmail: the sender also asks for a read notification (RFC 8098 MDN); send one?",
            default=False,
            err=True,
        )
    try:
        done = acknowledge(cm, file, r, mdn=bool(mdn), notary_url=notary_url)
    except Error as e:
        return None, e
    for w in done.warnings:
        warn(w)
    return done, None


def _emit(app: App, r: OpenResult, done: AckOutcome | None, failed: Error | None) -> None:
    """The opened message shown (or its JSON), then what went wrong with its acknowledgement."""
    if app.as_json:
        out = r.to_json()
        out["ack"] = done.to_json() if done else None
        emit_json(out)
    else:
        say(_summary(r, done))
        click.echo(r.body, nl=not r.body.endswith("\n"))
    if failed is not None:
        raise failed
    if done is not None and done.status == "queued":
        raise TemporaryError(
            f"the acknowledgement was signed but not sent: {done.error}",
            hint="certmail outbox flush (it is kept in the outbox and posted from there)",
        )


#: What the progress bar of a big message says at each stage of the library's open.
OPEN_STAGES = {
    "read": "reading",
    "decrypt": "decrypting",
    "verify": "checking the signature",
    "decode": "decoding attachments",
}


def _size(file: Path) -> int:
    try:
        return file.stat().st_size
    except OSError:
        return 0  # reported by the library with a hint


def _summary(r: OpenResult, done: AckOutcome | None) -> str:
    """Who sent it, who signed it, what is attached, what was acknowledged (rich markup)."""
    from rich.markup import escape

    h = r.headers
    lines = [f"From:    {escape(h.get('From', '?'))}", f"To:      {escape(h.get('To', '?'))}"]
    if h.get("Cc"):
        lines.append(f"Cc:      {escape(h['Cc'])}")
    lines += [f"Subject: {escape(h.get('Subject', ''))}", f"Date:    {escape(h.get('Date', ''))}"]
    if r.signed and r.trust == "x509":  # S/MIME: the certificate chained to the CA bundle
        lines.append(
            f"[green]good S/MIME signature[/] from {escape(r.signer or '?')} "
            f"(certificate sha256 {r.signer_fingerprint}, chain verified)"
        )
    elif r.signed:
        mark = (
            "[green]good signature[/]"
            if r.trusted
            else "[yellow]good signature, key not certified[/]"
        )
        lines.append(
            f"{mark} from {escape(r.signer or '?')} (key {r.signer_primary_fingerprint}, "
            f"trust {r.trust})"
        )
    lines.append(f"manifest: {r.manifest}; encrypted: {'yes' if r.encrypted else 'no'}")
    for a in r.attachments:
        where = f" -> {escape(a.saved_as)}" if a.saved_as else ""
        lines.append(f"  attachment {escape(repr(a.filename))} {a.size:,} bytes, {a.scan}{where}")
    if r.notary:
        lines.append(f"notary: {escape(r.notary)} (message sha256 {r.sha256})")
    if r.receipts:
        lines.append(f"receipts in your ledger: {len(r.receipts)}")
    if done is not None and done.status == "queued":
        lines.append(
            f"[yellow]acknowledgement queued[/] for {escape(done.notary)} with key"
            f" {done.fingerprint} (the notary could not be reached)"
        )
    elif done is not None:
        lines.append(
            f"[green]acknowledged[/] to {escape(done.notary)} with key {done.fingerprint}"
            f" (message sha256 {done.sha256})"
        )
        if done.mdn_to:
            lines.append(f"read notification sent to {escape(done.mdn_to)} ({done.mdn_reply})")
    return "\n".join(lines)
