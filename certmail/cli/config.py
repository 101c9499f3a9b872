"""``certmail config``: show and change the settings of a certmail home."""

from __future__ import annotations

import click

from certmail.cli.app import App, emit_json, home_option, json_option, pass_app, say


@click.group()
def config() -> None:
    """Show and change settings (stored in HOME/config.toml).

    Every setting can be overridden by an environment variable CERTMAIL_<NAME>,
    e.g. CERTMAIL_SMTP_URL; `certmail config show` says where each value came
    from. See docs/config.md.
    """


@config.command("show")
@home_option
@json_option()
@click.option("--reveal", is_flag=True, help="Show secrets (the notary token) in full.")
@pass_app
def show_cmd(app: App, reveal: bool) -> None:
    """Show the effective settings, their source (file, env, default) and the home layout."""
    import os

    from certmail.config import OPTIONS, SECRET_OPTIONS, env_name, load_settings

    settings = app.settings()
    file_only = load_settings(settings.home, env={})
    rows = []
    for name, description in OPTIONS.items():
        value = getattr(settings, name)
        if env_name(name) in os.environ:
            source = "env"
        elif getattr(file_only, name) not in (None, False):
            source = "file"
        else:
            source = "default"
        if name in SECRET_OPTIONS and value and not reveal:
            value = "********"
        rows.append(
            {
                "name": name,
                "value": value,
                "source": source,
                "env": env_name(name),
                "description": description,
            }
        )
    paths = {
        "home": str(settings.home),
        "config": str(settings.config_path),
        "gnupghome": str(settings.gnupghome),
        "dkim_dir": str(settings.dkim_dir),
        "ledger": str(settings.ledger_path),
        "sent_dir": str(settings.sent_dir),
        "outbox_dir": str(settings.outbox_dir),
    }
    if app.as_json:
        emit_json(
            {
                "options": {r["name"]: r["value"] for r in rows},
                "sources": {r["name"]: r["source"] for r in rows},
                "paths": paths,
            }
        )
        return
    for r in rows:
        shown = "" if r["value"] is None else r["value"]
        if isinstance(shown, bool):
            shown = "true" if shown else "false"
        click.echo(f"{r['name']:<13} = {shown}".rstrip() + f"    # {r['source']}")
    say(f"home: {settings.home}  (set with --home or CERTMAIL_HOME)")


@config.command("set")
@click.argument("name")
@click.argument("value")
@home_option
@json_option()
@pass_app
def set_cmd(app: App, name: str, value: str) -> None:
    """Set NAME to VALUE in config.toml ("" removes it).

    \b
    Names (env var in brackets):
      email          [CERTMAIL_EMAIL]
      name           [CERTMAIL_NAME]
      smtp_url       [CERTMAIL_SMTP_URL]      smtp://[user:pass@]host:port | smtps://...
      notary_url     [CERTMAIL_NOTARY_URL]    https://notary.example.org
      notary_token   [CERTMAIL_NOTARY_TOKEN]
      clamd          [CERTMAIL_CLAMD]         unix:///run/clamav/clamd.ctl | tcp://host:port
      via            [CERTMAIL_VIA]           relay | smtp
      require_scan   [CERTMAIL_REQUIRE_SCAN]  true | false
    """
    import os

    from certmail.config import SECRET_OPTIONS, canonical_name, env_name, set_option

    settings = app.settings()
    key = canonical_name(name)
    set_option(settings, key, value)
    shown = getattr(settings, key)
    if key in SECRET_OPTIONS and shown:
        shown = "********"
    if app.as_json:
        emit_json({"name": key, "value": shown, "config": str(settings.config_path)})
        return
    say(f"{key} set in {settings.config_path}")
    if env_name(key) in os.environ:
        say(f"note: {env_name(key)} is set in the environment and overrides this value")
