"""``certmail notarize FILE``: have the notary witness a file's exact bytes (direct mode)."""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path

import click

from certmail.cli.app import App, home_option, json_option, pass_app
from keys.errors import ConflictError, Error, NotFoundError, TemporaryError


@click.command("notarize")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--message-id", help="The Message-ID to record (default: the file's, or <sha@file>).")
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the receipt here (default: FILE.receipt.json); never over a file without --force.",
)
@click.option("--force", is_flag=True, help="Replace an existing receipt file.")
@json_option("Print the receipt JSON on stdout.")
@home_option
@pass_app
def notarize(
    app: App, file: Path, message_id: str | None, output: Path | None, force: bool
) -> None:
    """Notarize FILE: log the SHA-256 of its exact bytes and keep the receipt.

    Uses CERTMAIL_NOTARY_URL and CERTMAIL_NOTARY_TOKEN (or `certmail config`).
    The receipt is checked against the notary's verifier key before it is kept.

    \b
    Example:
      certmail notarize contract.pdf -o contract.receipt.json
      certmail receipt verify contract.receipt.json --data contract.pdf --vkey notary.vkey
    """
    from email.parser import BytesHeaderParser

    from certmail.notary_client import NotaryClient

    if not file.exists():
        raise NotFoundError(f"no such file: {file}")
    output = output or file.with_name(file.name + ".receipt.json")
    _refuse_existing(output, force)
    settings = app.settings()
    if not settings.notary_url:
        raise Error("no notary configured", hint="set CERTMAIL_NOTARY_URL=https://notary.example")
    try:
        data = file.read_bytes()
    except FileNotFoundError:
        raise NotFoundError(f"no such file: {file}") from None
    digest = hashlib.sha256(data).hexdigest()
    if message_id is None:
        found = BytesHeaderParser().parsebytes(data[:65536]).get("Message-ID")
        message_id = str(found).strip() if found else f"<{digest}@file>"
    with NotaryClient(settings.notary_url, settings.notary_token) as client:
        try:
            receipt = client.notarize(digest, message_id)
            vkey = client.vkey()
        except TemporaryError as e:  # nothing is queued here: say so (its cause stays)
            e.message = f"{e.message}; nothing was notarized"
            e.args = (e.message,)
            e.hint = f"certmail notarize {file} again once the notary is back"
            raise
    _write_receipt(output, receipt, force)
    if app.as_json:
        sys.stdout.write(json.dumps(receipt) + "\n")
        return
    click.echo(f"notarized {file} sha256={digest}", err=True)
    click.echo(f"notary key: {vkey}", err=True)
    click.echo(f"receipt: {output}")


def _refuse_existing(output: Path, force: bool) -> None:
    """ConflictError (exit 7) when ``output`` exists, unless ``force``: as ``proof export``."""
    if not force and (output.exists() or output.is_symlink()):
        raise ConflictError(
            f"{output} exists; nothing was notarized",
            hint="choose another -o, or add --force to replace it",
        )


def _write_receipt(output: Path, receipt: dict[str, object], force: bool) -> None:
    """Write the receipt durably; without ``force``, never over a file (even one made meanwhile)."""
    tmp = output.with_name(f".{output.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "x", encoding="utf-8") as f:
            f.write(json.dumps(receipt, indent=2) + "\n")
            f.flush()
            os.fsync(f.fileno())
        if force:
            tmp.replace(output)
        else:
            try:
                os.link(tmp, output)  # fails if output exists: no clobbering
            except FileExistsError:
                raise ConflictError(
                    f"{output} exists; the receipt was not written",
                    hint="choose another -o, or add --force to replace it",
                ) from None
    finally:
        tmp.unlink(missing_ok=True)
