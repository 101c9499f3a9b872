"""``certmail init``: create a home and your OpenPGP identity."""

from __future__ import annotations

import click

from certmail.cli.app import App, emit_json, home_option, interactive, json_option, pass_app, say
from certmail.cli.keys import grouped


@click.command()
@click.option("--email", required=True, help="Your address (the From: of what you send).")
@click.option("--name", required=True, help="Your name, as correspondents should see it.")
@click.option(
    "--no-passphrase",
    is_flag=True,
    help="Leave the secret key unprotected (e.g. for a server's or a script's key).",
)
@home_option
@json_option()
@pass_app
def init(app: App, email: str, name: str, no_passphrase: bool) -> None:
    """Create the certmail home and your key: Ed25519 signing, Cv25519 encryption.

    The passphrase is read from the file named by CERTMAIL_PASSPHRASE_FILE, or
    asked for twice on a terminal; it is never taken from the command line.
    Prints the new key's fingerprint.

    \b
    Example:
      certmail init --email alice@example.org --name "Alice Example"
      certmail keys export alice@example.org > alice.asc
    """
    from certmail.config import ensure_home, set_option, validate
    from keys.errors import ConflictError, Error
    from keys.gpg import Keyring

    settings = app.settings()
    ensure_home(settings.home)
    validate("email", email)
    validate("name", name)
    existing = [
        k
        for k in Keyring(settings.gnupghome).list_keys(secret=True)
        if email.strip().lower() in k.emails
    ]
    if existing:
        raise ConflictError(
            f"a key for {email} already exists: {existing[0].fingerprint}",
            hint=f"certmail keys fingerprint {email}",
        )
    passphrase: str | None = None
    if not no_passphrase:
        passphrase = settings.passphrase()
        if passphrase is None:
            if not interactive():
                raise Error(
                    "no passphrase for the new key (stdin is not a terminal)",
                    hint="set CERTMAIL_PASSPHRASE_FILE=FILE or add --no-passphrase",
                )
            passphrase = click.prompt(
                "passphrase for your new key", hide_input=True, confirmation_prompt=True, err=True
            )
        if not passphrase:
            raise Error("an empty passphrase; use --no-passphrase for an unprotected key")
    keyring = Keyring(settings.gnupghome, passphrase=passphrase)
    fpr = keyring.generate_identity(email, name, passphrase)
    set_option(settings, "email", email)
    set_option(settings, "name", name)
    if app.as_json:
        emit_json(
            {
                "fingerprint": fpr,
                "email": email,
                "name": name,
                "home": str(settings.home),
                "protected": passphrase is not None,
            }
        )
        return
    click.echo(fpr)
    say(f"created the key {grouped(fpr)} for {name} <{email}> in {settings.home}")
    say(f"share it: certmail keys export {email} > key.asc")
