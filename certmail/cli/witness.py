"""``certmail witness ...``: run a transparency-log witness (docs/witness.md)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from certmail.cli.app import App, emit_json, json_option, pass_app, say
from certmail.cli.options import dir_option

DIR_OPTION = dir_option("CERTMAIL_WITNESS_DIR", "witness's")


@click.group()
def witness() -> None:
    """Cosign logs' checkpoints, never two inconsistent ones (C2SP tlog-witness).

    \b
      certmail witness init --dir /var/lib/certmail-witness --name witness.example/w1
      certmail witness logs add "$(curl -s https://notary.example/v1/vkey)" --dir ...
      certmail witness serve --dir /var/lib/certmail-witness --http 127.0.0.1:8090
    """


@witness.command("init")
@DIR_OPTION
@click.option("--name", required=True, help="The witness's key name, e.g. witness.example/w1.")
@json_option()
@pass_app
def init_cmd(app: App, directory: Path, name: str) -> None:
    """Create a witness directory and its Ed25519 cosigner key; print its vkey."""
    from notary.witness import init_witness

    v = init_witness(directory, name)
    if app.as_json:
        emit_json({"name": name, "vkey": v.vkey(), "dir": str(directory)})
        return
    say(f"witness {name} created in {directory}; give logs its key:")
    click.echo(v.vkey())


@witness.group("logs")
def logs() -> None:
    """The logs this witness cosigns for."""


@logs.command("add")
@click.argument("vkey")
@DIR_OPTION
def logs_add(vkey: str, directory: Path) -> None:
    """Cosign for the log whose checkpoint key is VKEY (its name is the log's origin)."""
    from notary.witness import add_log

    v = add_log(directory, vkey)
    say(f"following {v.name}; restart `certmail witness serve` to apply")


@logs.command("list")
@DIR_OPTION
@json_option()
@pass_app
def logs_list(app: App, directory: Path) -> None:
    """The logs followed, with the size and root cosigned last."""
    import base64

    from notary.witness import Witness

    w = Witness(directory)
    try:
        rows = []
        for origin, v in sorted(w.logs.items()):
            latest = w.latest(origin)
            rows.append(
                {
                    "origin": origin,
                    "vkey": v.vkey(),
                    "size": latest[0] if latest else None,
                    "root": base64.b64encode(latest[1]).decode() if latest else None,
                }
            )
    finally:
        w.close()
    if app.as_json:
        emit_json({"logs": rows})
        return
    for r in rows:
        size = "-" if r["size"] is None else r["size"]
        click.echo(f"{r['origin']}\t{size}\t{r['root'] or '-'}")


@witness.command("serve")
@DIR_OPTION
@click.option("--http", "http", default="127.0.0.1:8090", show_default=True, help="HOST:PORT.")
def serve(directory: Path, http: str) -> None:
    """Serve POST /add-checkpoint until SIGTERM."""
    import logging

    import uvicorn

    from certmail.cli.notary import parse_hostport
    from notary.witness import Witness, asgi_app

    host, port = parse_hostport(http, "--http")
    w = Witness(directory)
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)
    click.echo(f"certmail witness {w.name} serving http://{host}:{port}", err=True)
    try:
        uvicorn.run(asgi_app(w), host=host, port=port, log_level="warning", lifespan="off")
    finally:
        w.close()


@witness.command("feed")
@click.argument("log_url")
@click.option("--log-vkey", required=True, help="The log's checkpoint verifier key.")
@click.option("--witness", "witness_url", required=True, help="The witness's URL.")
@click.option("--witness-vkey", required=True, help="The witness's cosigner key.")
@click.option("--old", type=click.IntRange(min=0), default=0, help="The size it holds, if known.")
def feed(log_url: str, log_vkey: str, witness_url: str, witness_vkey: str, old: int) -> None:
    """Send LOG_URL's checkpoint to a witness (consistency proof from the log's tiles);
    print the checkpoint with the cosignature."""
    import httpx

    from notary.checkpoint import open_checkpoint
    from notary.cosignature import CosignatureVerifier
    from notary.monitor import HttpLog
    from notary.note import Verifier
    from notary.witness_client import http_post, request_cosignature, tiles_consistency

    verifier = Verifier.from_vkey(log_vkey)
    wv = CosignatureVerifier.from_vkey(witness_vkey)

    # one client (one SSL context, one pool) for the log's tiles and the witness
    with (
        httpx.Client(timeout=30, follow_redirects=False) as http,
        HttpLog(log_url, client=http) as log,
    ):
        note = log.checkpoint()
        open_checkpoint(note, verifier)
        cosigned, _ = request_cosignature(
            witness_url,
            note,
            tiles_consistency(log.tiles),
            wv,
            lambda url, body: http_post(http, url, body, what="the witness "),
            old=old,
        )
    sys.stdout.write(cosigned.decode("utf-8"))


# --- `certmail notary witnesses ...`: the witnesses a notary asks ------------------------

NOTARY_DIR = dir_option("CERTMAIL_NOTARY_DIR", "notary's")
QUORUM = click.option(
    "--quorum",
    type=click.IntRange(min=0),
    help="Cosignatures a checkpoint needs (default: every witness).",
)


@click.group("witnesses")
def notary_witnesses() -> None:
    """The witnesses this notary asks to cosign its checkpoints (witnesses.toml)."""


@notary_witnesses.command("add")
@click.argument("url")
@click.argument("vkey")
@NOTARY_DIR
@QUORUM
def witnesses_add(url: str, vkey: str, directory: Path, quorum: int | None) -> None:
    """Ask the witness at URL, whose cosigner key is VKEY; restart serve to apply."""
    from notary.config import load_config
    from notary.cosigning import add_witness

    load_config(directory)  # a notary directory, or a clear error
    e = add_witness(directory, url, vkey, quorum)
    say(f"witness {e.verifier.name} added; restart `certmail notary serve` to apply")


@notary_witnesses.command("list")
@NOTARY_DIR
@json_option()
@pass_app
def witnesses_list(app: App, directory: Path) -> None:
    """The witnesses and the quorum."""
    from notary.cosigning import load_witnesses

    entries, quorum = load_witnesses(directory)
    rows = [{"name": e.verifier.name, "url": e.url, "vkey": e.vkey} for e in entries]
    if app.as_json:
        emit_json({"quorum": quorum, "witnesses": rows})
        return
    click.echo(f"quorum {quorum} of {len(rows)}")
    for r in rows:
        click.echo(f"{r['name']}\t{r['url']}\t{r['vkey']}")


@notary_witnesses.command("remove")
@click.argument("name")
@NOTARY_DIR
@QUORUM
def witnesses_remove(name: str, directory: Path, quorum: int | None) -> None:
    """Stop asking the witness NAME (its key name or URL)."""
    from notary.cosigning import remove_witness

    remove_witness(directory, name, quorum)
    say(f"witness {name} removed; restart `certmail notary serve` to apply")
