"""``certmail notary ...``: commands for the operator of a notary."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from certmail.cli.app import App, json_option, pass_app
from certmail.cli.options import dir_option
from keys.errors import Error

DIR_OPTION = dir_option("CERTMAIL_NOTARY_DIR", "notary's")


def parse_hostport(value: str, what: str) -> tuple[str, int]:
    """Split HOST:PORT ([v6]:PORT too) with a clear error."""
    host, sep, port = value.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise Error(f"{what} must be HOST:PORT, got {value!r}", hint=f"e.g. {what} 127.0.0.1:8080")
    return host, int(port)


@click.group()
def notary() -> None:
    """Run a notary: the log, the TSA and the relay that witness mail.

    \b
    Start one:
      certmail notary init --dir /var/lib/certmail-notary --origin notary.example.com/log
      certmail notary accounts add alice@example.com --dir /var/lib/certmail-notary
      certmail notary serve --dir /var/lib/certmail-notary --http 127.0.0.1:8080
    """


@notary.command("init")
@DIR_OPTION
@click.option("--origin", help="Log origin and checkpoint key name (default: HOSTNAME/certmail).")
@click.option("--db", "database", help="Database URL (default: sqlite in DIR).")
@click.option(
    "--tsa-cert",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="Import this TSA certificate (PEM) instead of creating a TSA PKI.",
)
@click.option(
    "--tsa-key",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="The imported TSA certificate's private key (PEM).",
)
@click.option(
    "--tsa-chain",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="The imported TSA certificate's issuers up to the root (PEM).",
)
@click.option(
    "--root-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Where the new TSA root CA's private key goes (default: DIR-root beside DIR);"
    " keep it offline: serving does not need it.",
)
@json_option("Print what was created as JSON.")
@pass_app
def init_cmd(
    app: App,
    directory: Path,
    origin: str | None,
    database: str | None,
    tsa_cert: Path | None,
    tsa_key: Path | None,
    tsa_chain: Path | None,
    root_dir: Path | None,
) -> None:
    """Create a notary: checkpoint key, TSA PKI, database and config in DIR.

    DIR is made 0700, its secrets 0600. A new TSA's root CA key is written
    to --root-dir, outside DIR. Refuses to touch a directory that already
    holds a notary.
    """
    from notary.config import default_root_dir, init_notary

    if root_dir is not None and tsa_cert is not None:
        raise Error("--root-dir is for a new TSA PKI", hint="leave it out with --tsa-cert")
    cfg = init_notary(
        directory,
        origin,
        database=database,
        tsa_cert=tsa_cert,
        tsa_key=tsa_key,
        tsa_chain=tsa_chain,
        root_dir=root_dir,
    )
    vkey = cfg.vkey_path.read_text().strip()
    root = None if tsa_cert is not None else str(root_dir or default_root_dir(directory))
    if app.as_json:
        click.echo(
            json.dumps(
                {"directory": str(directory), "origin": cfg.origin, "vkey": vkey, "root_dir": root}
            )
        )
        return
    click.echo(f"notary created in {directory}", err=True)
    click.echo(f"origin: {cfg.origin}", err=True)
    if root is not None:
        click.echo(
            f"TSA root CA key in {root}: move it offline (serving does not need it)", err=True
        )
    click.echo("verifier key (publish it; clients pin it):", err=True)
    click.echo(vkey)


@notary.group("accounts")
def accounts() -> None:
    """Manage the accounts that may notarize and relay (API tokens)."""


@accounts.command("add")
@click.argument("addresses", nargs=-1, required=True)
@DIR_OPTION
@click.option("--db", "database", help="Database URL (default: from the notary's config).")
@click.option(
    "--receipt-emails",
    is_flag=True,
    help="Email the sender a receipt for each relay delivery outcome.",
)
def accounts_add(
    addresses: tuple[str, ...], directory: Path, database: str | None, receipt_emails: bool
) -> None:
    """Create an account for ADDRESSES; print its API token on the last line.

    The token is shown once; only its hash is stored.
    """
    from email.utils import parseaddr

    for a in addresses:
        if parseaddr(a)[1] != a or "@" not in a:
            raise Error(
                f"not an email address: {a!r}", hint="give bare addresses: alice@example.com"
            )
    svc = _open(directory, database)
    try:
        account, token = svc.add_account(
            [a.lower() for a in addresses], receipt_emails=receipt_emails
        )
    finally:
        svc.close()
    click.echo(f"account {account.id}: {', '.join(account.addresses)}", err=True)
    click.echo("API token (shown once, keep it secret):", err=True)
    click.echo(token)


@accounts.command("list")
@DIR_OPTION
@click.option("--db", "database", help="Database URL (default: from the notary's config).")
@json_option("Print JSON.")
@pass_app
def accounts_list(app: App, directory: Path, database: str | None) -> None:
    """List accounts and their addresses."""
    svc = _open(directory, database)
    try:
        rows = svc.storage.accounts()
    finally:
        svc.close()
    if app.as_json:
        click.echo(
            json.dumps(
                [
                    {
                        "id": a.id,
                        "addresses": list(a.addresses),
                        "created": a.created.isoformat(),
                        "revoked": a.revoked,
                        "receipt_emails": a.receipt_emails,
                    }
                    for a in rows
                ]
            )
        )
        return
    for a in rows:
        state = "revoked" if a.revoked else "active"
        mails = "receipt-emails" if a.receipt_emails else "-"
        click.echo(f"{a.id}\t{state}\t{a.created:%Y-%m-%d}\t{mails}\t{' '.join(a.addresses)}")


@accounts.command("set")
@click.argument("account")
@DIR_OPTION
@click.option("--db", "database", help="Database URL (default: from the notary's config).")
@click.option(
    "--receipt-emails/--no-receipt-emails",
    "receipt_emails",
    default=None,
    help="Email the sender a receipt for each relay delivery outcome, or stop.",
)
def accounts_set(
    account: str, directory: Path, database: str | None, receipt_emails: bool | None
) -> None:
    """Change settings of ACCOUNT (an id or one of its addresses)."""
    if receipt_emails is None:
        raise Error("nothing to set", hint="give --receipt-emails or --no-receipt-emails")
    svc = _open(directory, database)
    try:
        a = svc.storage.set_receipt_emails(account, receipt_emails)
    finally:
        svc.close()
    state = "on" if a.receipt_emails else "off"
    click.echo(f"account {a.id}: receipt emails {state}", err=True)


@accounts.command("revoke")
@click.argument("account")
@DIR_OPTION
@click.option("--db", "database", help="Database URL (default: from the notary's config).")
def accounts_revoke(account: str, directory: Path, database: str | None) -> None:
    """Revoke ACCOUNT (an id or one of its addresses): its token stops working."""
    svc = _open(directory, database)
    try:
        a = svc.storage.revoke_account(account)
    finally:
        svc.close()
    click.echo(f"revoked account {a.id}: {', '.join(a.addresses)}", err=True)


@notary.command("checkpoint")
@DIR_OPTION
@click.option("--db", "database", help="Database URL (default: from the notary's config).")
def checkpoint_cmd(directory: Path, database: str | None) -> None:
    """Print the latest signed checkpoint (a C2SP signed note)."""
    svc = _open(directory, database)
    try:
        sys.stdout.write(svc.checkpoint().decode("utf-8"))
    finally:
        svc.close()


@notary.command("serve")
@DIR_OPTION
@click.option(
    "--http",
    "http",
    required=True,
    metavar="HOST:PORT",
    help="Where the HTTP API listens, e.g. 127.0.0.1:8080.",
)
@click.option(
    "--db",
    "database",
    help="Database URL, e.g. postgresql://USER@HOST/DB (default: from the notary's config).",
)
@click.option(
    "--smtp",
    "smtp",
    metavar="HOST:PORT",
    envvar="CERTMAIL_NOTARY_SMTP",
    help="Run the SMTP relay (registered delivery) here, e.g. 0.0.0.0:587.",
)
@click.option(
    "--smarthost",
    metavar="HOST:PORT",
    envvar="CERTMAIL_NOTARY_SMARTHOST",
    help="Deliver every relayed message through this server instead of the recipients' MX.",
)
@click.option(
    "--smtp-public-host",
    metavar="HOST",
    help="The relay's host name as clients should reach it (default: the --smtp host).",
)
@click.option(
    "--node",
    metavar="NAME",
    help="This process's name in the shared delivery queue (default: host and directory).",
)
@click.option(
    "--workers",
    type=click.IntRange(1, 64),
    default=1,
    show_default=True,
    help="HTTP worker processes sharing the port and the log (not with --smtp).",
)
def serve(
    directory: Path,
    http: str,
    database: str | None,
    smtp: str | None,
    smarthost: str | None,
    smtp_public_host: str | None,
    node: str | None,
    workers: int,
) -> None:
    """Serve the notary's HTTP API (log, receipts, TSA) and, with --smtp, its relay.

    Everything runs in one process and one event loop until interrupted. With
    --workers N, N processes share the HTTP port and the log; one of them
    sequences and the others send it their entries (see docs/notary.md), so
    N=2 uses both cores of a small box.

    Refuses to start when DIR or a private key in it is open to group or
    others; warns when the config or the database is (docs/notary.md).
    """
    _before_serving(directory, http)
    if workers > 1:
        if smtp:
            raise Error(
                "--workers needs the relay elsewhere",
                hint="run the relay (--smtp) in its own serve process",
            )
        _serve_workers(directory, http, database, workers)
        return
    import logging

    import uvicorn

    from notary.api import create_app
    from notary.serve import raise_nofile_limit, uvicorn_config

    host, port = parse_hostport(http, "--http")
    smtp_addr = parse_hostport(smtp, "--smtp") if smtp else None
    smart = parse_hostport(smarthost, "--smarthost") if smarthost else None
    if smart and not smtp_addr:
        raise Error("--smarthost needs --smtp", hint="add --smtp HOST:PORT to run the relay")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    logging.getLogger("mail.log").setLevel(logging.WARNING)  # aiosmtpd's per-command log
    svc = _open(directory, database)
    raise_nofile_limit()
    relay = None
    if smtp_addr is not None:
        from certmail.scan import Scanner
        from notary.relay.runtime import Relay
        from notary.relay.tls import ensure_relay_certificate

        ensure_relay_certificate(svc.config)
        relay = Relay(
            svc,
            smtp_addr[0],
            smtp_addr[1],
            smarthost=smart,
            public_host=smtp_public_host,
            node=node,
            scanner=Scanner(svc.config.clamd) if svc.config.clamd else None,
        )
    app = create_app(svc, relay=relay)
    config = uvicorn_config(app, svc.config, host=host, port=port, backlog=4096)
    server = uvicorn.Server(config)
    click.echo(f"certmail notary {svc.origin} serving http://{host}:{port}", err=True)
    if smtp_addr is not None:
        via = f" via {smarthost}" if smarthost else " via MX"
        click.echo(f"relay listening on {smtp_addr[0]}:{smtp_addr[1]}{via}", err=True)
    try:
        server.run()
    finally:
        svc.close()
    if not server.started:
        what = "--http / --smtp" if smtp else "--http"
        raise Error(
            f"could not serve on {http}" + (f" and {smtp}" if smtp else ""),
            hint=f"is the port free? pick another with {what}",
        )


def _before_serving(directory: Path, http: str) -> None:
    """Usage errors first, then the directory's permissions; ``kill -USR1`` from now on
    writes every thread's stack into the log (notary/slowlog.py)."""
    from notary.slowlog import install_stack_dump

    parse_hostport(http, "--http")
    _check_files(directory)
    install_stack_dump()


def _serve_workers(directory: Path, http: str, database: str | None, workers: int) -> None:
    """Serve the HTTP API from ``workers`` processes on one port (:mod:`notary.serve`)."""
    from notary.serve import serve_workers

    host, port = parse_hostport(http, "--http")
    serve_workers(
        directory,
        host,
        port,
        database,
        workers,
        bound=lambda: click.echo(
            f"certmail notary serving http://{host}:{port} with {workers} workers", err=True
        ),
    )


def _check_files(directory: Path) -> None:
    """The start-up permission check of ``serve`` (:func:`notary.config.check_permissions`)."""
    from certmail.cli.app import warn
    from notary.config import check_permissions, load_config

    for w in check_permissions(load_config(directory)):
        warn(w)


def _open(directory: Path, database: str | None):  # type: ignore[no-untyped-def]
    from notary.service import NotaryService

    return NotaryService.open(directory, database=database)


from certmail.cli.monitor import monitor as _monitor  # noqa: E402 - `certmail notary monitor`

notary.add_command(_monitor)
from certmail.cli.witness import notary_witnesses as _witnesses  # noqa: E402

notary.add_command(_witnesses)
from certmail.cli.anchors import notary_anchors as _anchors  # noqa: E402

notary.add_command(_anchors)
