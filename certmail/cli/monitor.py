"""``certmail notary monitor URL --vkey K``: follow a tiled log and catch it lying.

Fetches the log's ``/checkpoint``, verifies its signature, proves from its
hash tiles that the tree extends the one verified last time (kept in
``--state DIR``), and keeps the new checkpoint. On a fork, a rollback, an
inconsistent tree or a bad signature it prints both checkpoints, keeps them
as evidence beside the state, and exits 3 (docs/tiles.md, docs/cli.md).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from certmail.cli.app import App, emit_json, json_option, pass_app, say


def _verifier(vkey: str):  # type: ignore[no-untyped-def]
    from keys.errors import Error
    from notary.errors import MalformedError
    from notary.note import Verifier

    text = vkey
    if os.path.isfile(vkey):
        text = Path(vkey).read_text(encoding="utf-8").strip()
    try:
        return Verifier.from_vkey(text)
    except (MalformedError, ValueError) as e:
        raise Error(
            f"--vkey is not a verifier key: {e}",
            hint="pass the log's key (name+id+base64) or a file holding it, e.g. GET /v1/vkey",
        ) from None


@click.command("monitor")
@click.argument("url")
@click.option(
    "--vkey", required=True, help="The log's checkpoint verifier key, or a file holding it."
)
@click.option(
    "--state",
    "state_dir",
    type=click.Path(file_okay=False, path_type=Path),
    envvar="CERTMAIL_MONITOR_STATE",
    help="Where the last verified checkpoint is kept (default: HOME/monitor).",
)
@json_option("Print the result (or the report of what the log did wrong) as JSON.")
@pass_app
def monitor(app: App, url: str, vkey: str, state_dir: Path | None) -> None:
    """Check that the log at URL only ever grew since the last run.

    \b
    Run it from cron, e.g. every minute:
      certmail notary monitor https://notary.example.com --vkey notary.vkey
    Exit 0: the log is consistent; 3: fork, rollback, inconsistent tree or bad
    signature (both checkpoints are printed and kept beside the state);
    5: the log could not be read.
    """
    from notary.monitor import HttpLog, MonitorError, StateStore, follow

    verifier = _verifier(vkey)
    if state_dir is None:
        from certmail.config import default_home

        state_dir = (app.home or default_home(os.environ)) / "monitor"
    store = StateStore(state_dir)
    try:
        with HttpLog(url) as log:
            result = follow(log, verifier, store)
    except MonitorError as e:
        if app.as_json:
            emit_json({"url": url, **e.to_json()})
        else:
            _report(e)
        raise
    if app.as_json:
        emit_json({"url": url, **result.to_json(), "state": str(store.path(result.origin))})
        return
    new = result.new
    if result.status == "first":
        say(f"{url}: first checkpoint, size {new.size}; its tiles reproduce its root; kept")
    elif result.status == "unchanged":
        say(f"{url}: unchanged at size {new.size}")
    else:
        assert result.old is not None
        say(f"{url}: grew from {result.old.size} to {new.size}; consistent; kept")


def _report(e: object) -> None:
    """Both checkpoints of a conflict, on stderr, before the one-line error."""
    from notary.monitor import MonitorError

    assert isinstance(e, MonitorError)
    for label, side in (("last verified", e.old), ("now served", e.new)):
        if side is None:
            continue
        sys.stderr.write(f"--- {label} checkpoint ---\n{side.get('checkpoint', '')}")
        if not str(side.get("checkpoint", "")).endswith("\n"):
            sys.stderr.write("\n")
    if e.evidence is not None:
        sys.stderr.write(f"--- both kept in {e.evidence} ---\n")
