"""``certmail notary anchors ...``: the outside TSAs a notary time-stamps its checkpoints
with (anchors.toml; docs/anchors.md)."""

from __future__ import annotations

from pathlib import Path

import click

from certmail.cli.app import App, emit_json, json_option, pass_app, say
from certmail.cli.witness import NOTARY_DIR


@click.group("anchors")
def notary_anchors() -> None:
    """Outside RFC 3161 TSAs that time-stamp this notary's checkpoints (anchors.toml).

    \b
      certmail notary anchors add https://tsa.example/tsr --root tsa-root.pem --dir D
      certmail notary anchors list --dir D
    """


@notary_anchors.command("add")
@click.argument("url")
@click.option(
    "--root",
    "root",
    required=True,
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="The TSA's root CA certificate (PEM): every token must chain to it.",
)
@click.option(
    "--every",
    type=click.IntRange(min=1),
    default=None,
    help="Seconds between two time-stamps from this TSA (default 3600).",
)
@NOTARY_DIR
def anchors_add(url: str, root: Path, every: int | None, directory: Path) -> None:
    """Time-stamp new checkpoints with the RFC 3161 TSA at URL; restart serve to apply."""
    from notary.anchors import DEFAULT_EVERY, add_anchor
    from notary.config import load_config

    load_config(directory)  # a notary directory, or a clear error
    e = add_anchor(directory, url, root.read_bytes(), every or DEFAULT_EVERY)
    say(f"outside TSA {e.url} added (id {e.id}); restart `certmail notary serve` to apply")


@notary_anchors.command("list")
@NOTARY_DIR
@json_option()
@pass_app
def anchors_list(app: App, directory: Path) -> None:
    """The outside TSAs, their roots and how often each is asked."""
    from notary.anchors import load_anchors

    rows = [
        {"id": e.id, "url": e.url, "root": e.root, "every": e.every}
        for e in load_anchors(directory)
    ]
    if app.as_json:
        emit_json({"anchors": rows})
        return
    for r in rows:
        click.echo(f"{r['id']}\t{r['url']}\tevery {r['every']} s\t{r['root']}")


@notary_anchors.command("remove")
@click.argument("url")
@NOTARY_DIR
def anchors_remove(url: str, directory: Path) -> None:
    """Stop time-stamping with the TSA at URL (or its id); its tokens stay."""
    from notary.anchors import remove_anchor

    remove_anchor(directory, url)
    say(f"outside TSA {url} removed; restart `certmail notary serve` to apply")
