"""``certmail verify``: check PGP and DKIM signatures without decrypting."""

from __future__ import annotations

from pathlib import Path

import click

from certmail.cli.app import App, emit_json, home_option, json_option, pass_app, warn
from certmail.cli.smime import smime_ca_option


@click.command()
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@smime_ca_option
@json_option()
@home_option
@pass_app
def verify(app: App, file: Path) -> None:
    """Verify a message's signatures (PGP or S/MIME when not encrypted, DKIM) without decrypting.

    Exits 3 when a signature does not verify or when there is none.
    """
    with app.client() as cm:
        r = cm.verify(file)
    for w in r.warnings:
        warn(w)
    if app.as_json:
        emit_json(r.to_json())
        return
    if r.pgp == "valid":
        click.echo(
            f"pgp: valid signature by {r.signer} (key {r.signer_fingerprint}, trust {r.trust})"
        )
    else:
        click.echo(f"pgp: {r.pgp}")
    if r.smime != "absent":
        by = f" signature by {r.signer} (certificate {r.signer_fingerprint})"
        click.echo(f"smime: {r.smime}" + (by if r.smime == "valid" else ""))
    click.echo(f"dkim: {r.dkim}" + (f" (d={r.dkim_domain})" if r.dkim_domain else ""))
    click.echo(f"sha256: {r.sha256}")
