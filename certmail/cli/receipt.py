"""``certmail receipt verify``: check a receipt offline against pinned keys."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from certmail.cli.app import App, json_option, pass_app
from certmail.cli.options import PATH, tsa_root_option, vkey_option
from keys.errors import Error, NotFoundError


@click.group("receipt")
def receipt() -> None:
    """Work with notary receipts (DESIGN §4.3: entry, tlog-proof, RFC 3161 token)."""


@receipt.command("verify")
@click.argument("file", type=PATH)
@vkey_option(required=True)
@click.option("--data", "data_path", type=PATH, help="The exact file or message notarized.")
@click.option("--sha256", help="Or: the expected SHA-256 (hex) of the message.")
@tsa_root_option()
@click.option("--tsa-chain", type=PATH, help="TSA certificate chain (PEM), from the notary.")
@json_option("Print the result as JSON.")
@pass_app
def verify(
    app: App,
    file: Path,
    vkey_file: Path,
    data_path: Path | None,
    sha256: str | None,
    tsa_root: Path | None,
    tsa_chain: Path | None,
) -> None:
    """Verify receipt FILE offline; exit 0 when valid, 3 when not.

    Checks the checkpoint signature against --vkey, the inclusion proof of the
    entry, the statement, and (with --tsa-root, or --tsa-chain whose last
    certificate is then trusted, with a warning) the RFC 3161 token.
    """
    from certmail.receipts import load_certificates, load_receipt, verify_receipt

    for what, path in (
        ("", file),
        ("--vkey ", vkey_file),
        ("--data ", data_path),
        ("--tsa-root ", tsa_root),
        ("--tsa-chain ", tsa_chain),
    ):
        if path is not None and not path.exists():
            raise NotFoundError(f"no such file: {what}{path}")
    rc = load_receipt(file)
    vkey = vkey_file.read_text(encoding="utf-8").strip()
    chain = load_certificates(tsa_chain) if tsa_chain else None
    roots = load_certificates(tsa_root) if tsa_root else None
    if roots is None and chain:
        roots = chain[-1:]
        click.echo(
            "certmail: warning: trusting the TSA root from --tsa-chain itself; "
            "pin it with --tsa-root",
            err=True,
        )
    if sha256 is not None and len(sha256) != 64:
        raise Error("--sha256 needs 64 hex digits")
    data = data_path.read_bytes() if data_path else None
    result = verify_receipt(rc, vkey, data=data, sha256=sha256, tsa_roots=roots, tsa_chain=chain)
    stmt = result.statement
    out = {
        "valid": True,
        "event": stmt["event"],
        "time": stmt["time"],
        "notary": stmt["notary"],
        "message": stmt["message"],
        "index": result.index,
        "checkpoint": {"origin": result.checkpoint.origin, "size": result.checkpoint.size},
        "timestamp": None
        if result.token is None
        else {
            "gen_time": result.token.gen_time.isoformat(),
            "serial": str(result.token.serial),
            "policy": result.token.policy,
        },
    }
    if app.as_json:
        sys.stdout.write(json.dumps(out) + "\n")
        return
    click.echo(f"receipt valid: {stmt['event']} of {stmt['message']['sha256']}")
    click.echo(f"  logged at index {result.index} by {stmt['notary']} at {stmt['time']}")
    click.echo(f"  checkpoint size {result.checkpoint.size}, signature checked with {vkey_file}")
    if result.token is not None:
        click.echo(
            f"  RFC 3161 token: genTime {result.token.gen_time.isoformat()}, "
            f"serial {result.token.serial}"
        )
    elif rc.tst is not None:
        click.echo("  RFC 3161 token present, not checked (give --tsa-root)")
