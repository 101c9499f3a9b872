"""``certmail receipt verify``: check a receipt offline against pinned keys."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from certmail.cli.app import App, json_option, pass_app
from keys.errors import Error, NotFoundError

# Missing files are reported by the command (exit 6, as everywhere), not by Click (exit 2).
_PATH = click.Path(dir_okay=False, path_type=Path)


@click.group("receipt")
def receipt() -> None:
    """Work with notary receipts (DESIGN §4.3: entry, tlog-proof, RFC 3161 token)."""


@receipt.command("verify")
@click.argument("file", type=_PATH)
@click.option(
    "--vkey",
    "vkey_path",
    type=_PATH,
    required=True,
    help="The notary's verifier key you trust (notary.vkey).",
)
@click.option("--data", "data_path", type=_PATH, help="The exact file or message notarized.")
@click.option("--sha256", help="Or: the expected SHA-256 (hex) of the message.")
@click.option("--tsa-root", type=_PATH, help="Trusted TSA root certificate (PEM).")
@click.option("--tsa-chain", type=_PATH, help="TSA certificate chain (PEM), from the notary.")
@json_option("Print the result as JSON.")
@pass_app
def verify(
    app: App,
    file: Path,
    vkey_path: Path,
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
        ("--vkey ", vkey_path),
        ("--data ", data_path),
        ("--tsa-root ", tsa_root),
        ("--tsa-chain ", tsa_chain),
    ):
        if path is not None and not path.exists():
            raise NotFoundError(f"no such file: {what}{path}")
    rc = load_receipt(file)
    vkey = vkey_path.read_text(encoding="utf-8").strip()
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
    click.echo(f"  checkpoint size {result.checkpoint.size}, signature checked with {vkey_path}")
    if result.token is not None:
        click.echo(
            f"  RFC 3161 token: genTime {result.token.gen_time.isoformat()}, "
            f"serial {result.token.serial}"
        )
    elif rc.tst is not None:
        click.echo("  RFC 3161 token present, not checked (give --tsa-root)")
