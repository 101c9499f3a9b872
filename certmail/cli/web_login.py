"""``certmail web-login [--json]``: a one-time sign-in link to the notary's sender's view.

Asks ``POST /v1/web/login`` with the account's API token (CERTMAIL_NOTARY_URL,
CERTMAIL_NOTARY_TOKEN or ``certmail config``) and prints the link on stdout:
good once, for 10 minutes (docs/web.md). The link is a credential: it is
printed, never stored.
"""

from __future__ import annotations

import click

from certmail.cli.app import App, emit_json, home_option, json_option, pass_app, say
from keys.errors import Error


@click.command("web-login")
@json_option("Print {url, expires} as JSON on stdout.")
@home_option
@pass_app
def web_login(app: App) -> None:
    """Print a one-time sign-in link to your certified mail in a browser (GET /app).

    \b
    Example:
      certmail web-login        open the printed link within 10 minutes
    """
    from certmail.notary_client import NotaryClient, NotaryRequestError

    settings = app.settings()
    if not settings.notary_url:
        raise Error(
            "no notary configured", hint="set CERTMAIL_NOTARY_URL and CERTMAIL_NOTARY_TOKEN"
        )
    with NotaryClient(settings.notary_url, settings.notary_token) as client:
        body = client.request("POST", "/v1/web/login").json()
    if not isinstance(body, dict) or not isinstance(body.get("url"), str):
        raise NotaryRequestError("the notary's answer has no sign-in link")
    if app.as_json:
        emit_json({"url": body["url"], "expires": body.get("expires")})
        return
    click.echo(body["url"])
    say(f"good once, until {body.get('expires')} (10 minutes)")
