"""``certmail campaign``: one certified notice to many recipients (docs/campaigns.md)."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import sys
from pathlib import Path
from typing import Any

import click

from certmail.cli.app import App, emit_json, home_option, json_option, pass_app, say
from certmail.cli.options import sealed_options
from certmail.cli.smime import campaign_trust_options, refuse_trust_options

PATH = click.Path(path_type=Path, dir_okay=False)


@click.group()
def campaign() -> None:
    """Certified campaigns: each recipient its own signed, encrypted, notarized message."""


@campaign.command("create")
@click.argument("name")
@click.option("--recipients", type=PATH, required=True, help="CSV with an 'email' column.")
@click.option("--subject", required=True, help="Subject template, e.g. 'Notice for {{ name }}'.")
@click.option("--body-file", type=PATH, required=True, help="Body template (UTF-8).")
@click.option("--attach", type=PATH, multiple=True, help="A file for every recipient (repeat).")
@click.option("--via", type=click.Choice(["relay", "smtp"]), default=None)
@click.option("--track-open", is_flag=True, help="A tracking link per recipient (weak evidence).")
@click.option("--request-mdn", is_flag=True, help="Ask for RFC 8098 read receipts.")
@sealed_options(
    "each message",
    "With --sealed: how long the notary keeps each message's key share.",
)
@click.option(
    "--pickup-if-no-key",
    is_flag=True,
    help="A recipient without a key (with --smime: without a usable certificate) gets a "
    "link to the notary's pickup page instead (docs/sealed.md); without it such a row is "
    "refused.",
)
@click.option(
    "--pickup-passphrase-file",
    type=PATH,
    default=None,
    help="With --pickup-if-no-key: the pickup page also asks for this passphrase (give it "
    "to the recipients another way); its first line is the passphrase. Give the same file "
    "to campaign send.",
)
@click.option(
    "--no-locate",
    is_flag=True,
    help="Do not look up missing keys (WKD, keyserver, Autocrypt) as keys locate does.",
)
@click.option(
    "--smime",
    is_flag=True,
    help="Sign and encrypt each message with S/MIME (RFC 8551) instead of OpenPGP, as "
    "send --smime: your key from keys smime import, the recipients' certificates from "
    "keys smime import-cert.",
)
@campaign_trust_options
@json_option()
@home_option
@pass_app
def create(
    app: App,
    name: str,
    recipients: Path,
    subject: str,
    body_file: Path,
    attach: tuple[Path, ...],
    via: str | None,
    track_open: bool,
    request_mdn: bool,
    sealed: bool,
    seal_expires: int,
    pickup_if_no_key: bool,
    pickup_passphrase_file: Path | None,
    no_locate: bool,
    smime: bool,
) -> None:
    """Check every row, template field, key and attachment; record the campaign.

    A recipient without any key in your keyring is looked up first as `certmail
    keys locate` does (imported untrusted), unless --no-locate. With --smime the
    certificates chain to --smime-ca and, with --smime-crl, are not revoked;
    campaign send checks them again with the same CA bundle (create keeps a copy)."""
    from certmail.campaign.create import CampaignInputError, CampaignOptions, create_campaign

    if not smime:
        refuse_trust_options(app, "a campaign without --smime; nothing was created")
    options = CampaignOptions(
        via=via,
        track_open=track_open,
        request_mdn=request_mdn,
        pickup_if_no_key=pickup_if_no_key,
        sealed=sealed,
        seal_expires=seal_expires,
        locate_keys=not no_locate,
        pickup_passphrase=_passphrase(pickup_passphrase_file),
        smime=smime,
    )
    with app.client() as cm:
        try:
            res = create_campaign(
                cm,
                name,
                recipients=recipients,
                subject=subject,
                body_file=body_file,
                attachments=list(attach),
                options=options,
            )
        except CampaignInputError as e:
            if app.as_json:
                emit_json({"error": "input", "problems": [p.to_json() for p in e.problems]})
            for p in e.problems:
                sys.stderr.write(
                    f"certmail: row {p.line}: {p.message}\ncertmail:   hint: {p.hint}\n"
                )
            raise
    if app.as_json:
        emit_json(res.to_json())
        return
    for w in res.warnings:
        say(f"[yellow]certmail: warning:[/] {w}")
    for f in res.located:
        say(
            f"found {', '.join(f['fingerprints'])} for {f['addr']} ({f['source']}, "
            f"{f['label']}); imported, not trusted"
            + ("" if f["used"] else ": by pickup link (certmail keys trust to encrypt)")
        )
    click.echo(
        f"campaign {name}: {res.recipients} recipients, via {res.campaign.spec['via']}, "
        f"fields {', '.join(res.fields) or '(none)'}, "
        f"{len(res.attachments)} attachment(s) scanned"
        + (", S/MIME" if res.smime else "")
        + (", sealed" if res.sealed else "")
        + (f", {len(res.pickup)} without a {_kind(res.smime)} by pickup link" if res.pickup else "")
        + (" (with a passphrase)" if res.pickup_passphrase else "")
    )
    say(f"next: certmail campaign send {name} --dry-run, then certmail campaign send {name}")


@campaign.command("send")
@click.argument("name")
@click.option(
    "--concurrency",
    type=click.IntRange(1, 64),
    default=None,
    help="Worker processes (default: one per core).",
)
@click.option("--rate", type=click.FloatRange(min=0.01), default=None, metavar="MSGS/S")
@click.option("--dry-run", is_flag=True, help="Render every message; send nothing.")
@click.option(
    "--settle-timeout",
    type=click.FloatRange(min=0),
    default=150.0,
    help="Seconds to wait for the notary's log to show an interrupted submission.",
)
@click.option(
    "--pickup-passphrase-file",
    type=PATH,
    default=None,
    help="The pickup passphrase the campaign was created with (its first line).",
)
@campaign_trust_options
@json_option("One JSON line per recipient, then a summary line.")
@home_option
@pass_app
def send(
    app: App,
    name: str,
    concurrency: int | None,
    rate: float | None,
    dry_run: bool,
    settle_timeout: float,
    pickup_passphrase_file: Path | None,
) -> None:
    """Send (or resume) a campaign: nobody gets it twice, nobody is skipped."""
    from certmail.campaign.runner import send_campaign

    passphrase = _passphrase(pickup_passphrase_file)
    if app.smime_ca is not None or app.smime_crl is not None:
        from certmail.campaign.store import CampaignStore

        with CampaignStore(app.settings().ledger_path) as store:
            if not store.get(name).spec.get("smime"):
                refuse_trust_options(app, f"campaign {name} (OpenPGP); nothing was sent")
    with app.client() as cm, _progress(app) as (on_start, on_event):
        summary = send_campaign(
            cm,
            name,
            concurrency=concurrency,
            rate=rate,
            dry_run=dry_run,
            settle_timeout=settle_timeout,
            on_start=on_start,
            on_event=on_event,
            pickup_passphrase=passphrase,
        )
    if app.as_json:
        click.echo(json.dumps({"summary": summary.to_json()}))
    else:
        for s in summary.settled:
            say(f"settled {s['email']}: {s['settled']}")
        counts = ", ".join(f"{k} {v}" for k, v in sorted(summary.counts.items()))
        click.echo(f"campaign {name}: {counts} ({summary.elapsed:.1f} s)")
    _exit_for(name, summary.counts, dry_run)


def _kind(smime: bool) -> str:
    return "usable certificate" if smime else "key"


def _passphrase(path: Path | None) -> bytes | None:
    """``--pickup-passphrase-file``: read once, before anything is created or sent."""
    if path is None:
        return None
    from certmail.sealed.pickup_sending import read_passphrase_file

    return read_passphrase_file(path)


def _exit_for(name: str, counts: dict[str, int], dry_run: bool) -> None:
    """Exit 5 while recipients are left to send (run again), 1 when some failed for good."""
    from certmail.cli.app import print_error
    from keys.errors import EXIT_ERROR, EXIT_TEMPORARY

    if dry_run:
        return
    left = sum(counts.get(s, 0) for s in ("pending", "queued", "submitted", "uncertain"))
    if left:
        print_error(
            f"{left} recipient(s) of campaign {name} not done yet",
            f"certmail campaign send {name} (resumes; nobody gets it twice)",
        )
        sys.exit(EXIT_TEMPORARY)
    if counts.get("failed"):
        print_error(
            f"{counts['failed']} recipient(s) of campaign {name} failed",
            f"certmail campaign report {name} (the replies)",
        )
        sys.exit(EXIT_ERROR)


@contextlib.contextmanager
def _progress(app: App) -> Any:
    if app.as_json:

        def on_event(ev: dict[str, Any]) -> None:
            click.echo(json.dumps(ev))
            sys.stdout.flush()

        yield None, on_event
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    bar = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]:.1f} msg/s"),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        transient=False,
    )
    task: list[Any] = []

    def on_start(total: int, todo: int) -> None:
        task.append(bar.add_task("sending", total=todo, rate=0.0))

    def on_event_bar(ev: dict[str, Any]) -> None:
        if not bar.live.is_started:  # its refresh thread starts after the workers forked
            bar.start()
        bar.advance(task[0])
        t = bar.tasks[0]
        bar.update(task[0], rate=(t.completed / t.elapsed) if t.elapsed else 0.0)
        if ev.get("state") in ("failed", "queued", "uncertain"):
            bar.console.print(f"{ev['email']}: {ev['state']}: {ev.get('error')}")

    try:
        yield on_start, on_event_bar
    finally:
        bar.stop()


@campaign.command("status")
@click.argument("name")
@json_option()
@home_option
@pass_app
def status(app: App, name: str) -> None:
    """Counts of recipients by state (from the ledger; no notary request)."""
    from certmail.campaign.store import CampaignStore

    with app.client() as cm, CampaignStore(cm.settings.ledger_path) as store:
        c, counts = store.get(name), store.counts(name)
    if app.as_json:
        emit_json({**c.to_json(), "counts": counts, "total": sum(counts.values())})
        return
    click.echo(
        f"campaign {name}: {c.state}; " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
    )


@campaign.command("report")
@click.argument("name")
@click.option("--format", "fmt", type=click.Choice(["csv", "json", "html"]), default="csv")
@click.option("-o", "--output", type=PATH, default=None, help="Write here (default: stdout).")
@home_option
@pass_app
def report(app: App, name: str, fmt: str, output: Path | None) -> None:
    """Per recipient: queued, accepted, delivered, deferred, failed, acknowledged, opened."""
    from certmail.campaign.report import campaign_rows, render

    with app.client() as cm:
        text = render(name, campaign_rows(cm, name), fmt)
    if output is None:
        click.echo(text, nl=False)
    else:
        output.write_text(text, encoding="utf-8")
        say(f"wrote {output}")


@campaign.command("proofs")
@click.argument("name")
@click.option(
    "-o", "--output", "outdir", type=click.Path(path_type=Path, file_okay=False), required=True
)
@home_option
@pass_app
@click.pass_context
def proofs(ctx: click.Context, app: App, name: str, outdir: Path) -> None:
    """One proof bundle per recipient (proof export), and index.csv."""
    from certmail.campaign.report import campaign_rows
    from certmail.cli.proof import export

    with app.client() as cm:
        rows = [
            r
            for r in campaign_rows(cm, name)
            if r["sha256"] and r["state"] not in ("pending", "sealed", "queued", "cancelled")
        ]
    outdir.mkdir(parents=True, exist_ok=True)
    index = io.StringIO()
    w = csv.writer(index, lineterminator="\r\n")
    w.writerow(["bundle", "recipient", "state", "sha256"])
    quiet = App(app.home, True, app.verbose, app.passphrase_fd)
    for r in rows:
        bundle = outdir / f"{r['row']:06d}-{r['sha256'][:16]}.certmail-proof.zip"
        buf = io.StringIO()
        sub = click.Context(export, parent=ctx, obj=quiet)
        with contextlib.redirect_stdout(buf), sub:
            sub.invoke(
                export,
                ref=r["sha256"],
                output=bundle,
                reveal_subject=False,
                force=True,
                keep_all_acks=False,
            )
        w.writerow([bundle.name, r["email"], r["state"], r["sha256"]])
    (outdir / "index.csv").write_text(index.getvalue(), encoding="utf-8")
    click.echo(str(outdir / "index.csv"))
    say(f"{len(rows)} bundles in {outdir}")


@campaign.command("list")
@json_option()
@home_option
@pass_app
def list_(app: App) -> None:
    """Every campaign with its state and counts."""
    from certmail.campaign.store import CampaignStore

    with app.client() as cm, CampaignStore(cm.settings.ledger_path) as store:
        items = [{**c.to_json(), "counts": store.counts(c.name)} for c in store.all()]
    if app.as_json:
        emit_json({"campaigns": items})
        return
    if not items:
        say("no campaigns")
    for i in items:
        counts = ", ".join(f"{k} {v}" for k, v in sorted(i["counts"].items()))
        click.echo(f"{i['name']:<24} {i['state']:<10} {i['created'][:19]}  {counts}")


@campaign.command("cancel")
@click.argument("name")
@json_option()
@home_option
@pass_app
def cancel(app: App, name: str) -> None:
    """Stop what has not been handed over; report what has."""
    from certmail.campaign.runner import cancel_campaign

    with app.client() as cm:
        out = cancel_campaign(cm, name)
    if app.as_json:
        emit_json(out)
        return
    counts = ", ".join(f"{k} {v}" for k, v in sorted(out["counts"].items()))
    click.echo(f"campaign {name}: {out['cancelled']} cancelled; now {counts}")
