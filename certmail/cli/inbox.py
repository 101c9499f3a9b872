"""``certmail inbox``: list and open certified mail where it lives (docs/inbox.md).

A Maildir (``--maildir``), an mbox file (``--mbox``) or an IMAP mailbox
(``--imap``, verified TLS only). Nothing is deleted or moved; ``--mark-read``
is the only thing that changes a mailbox.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from certmail.cli.app import App, emit_json, home_option, json_option
from certmail.cli.smime import smime_ca_option
from keys.errors import Error

if TYPE_CHECKING:
    from certmail.inbox.source import Source
    from certmail.inbox.summary import Summary

F = TypeVar("F", bound=Callable[..., Any])
_WHERE = "say where the mail is: --maildir DIR, --mbox FILE or --imap URL"


def source_options(f: F) -> F:
    """``--maildir``, ``--mbox``, ``--imap`` (one of them; each has an env var)."""
    f = click.option(
        "--imap",
        "imap_url",
        metavar="URL",
        envvar="CERTMAIL_IMAP_URL",
        help="imaps://user@host[:port]/MAILBOX (or imap://... with STARTTLS required);"
        " ?ca=FILE for a private CA. The password: CERTMAIL_IMAP_PASSWORD_FILE or a prompt.",
    )(f)
    f = click.option(
        "--mbox",
        type=click.Path(dir_okay=False, path_type=Path),
        envvar="CERTMAIL_MBOX",
        help="An mbox file (read, never written).",
    )(f)
    f = click.option(
        "--maildir",
        type=click.Path(file_okay=False, path_type=Path),
        envvar="CERTMAIL_MAILDIR",
        help="A Maildir directory (the one holding cur/ and new/).",
    )(f)
    return f


@click.group("inbox")
def inbox() -> None:
    """Certified mail where it lives: a Maildir, an mbox file or an IMAP mailbox.

    `inbox list` shows each message with certmail's view of it; `inbox open ID`
    does what `certmail open` does on a file. Nothing is deleted or moved.
    """


def _chosen(ctx: click.Context, values: dict[str, Any]) -> tuple[str, Any]:
    """The one mailbox asked for: from the command line first, else from the environment."""
    given = {k: v for k, v in values.items() if v is not None}
    typed = {
        k: v
        for k, v in given.items()
        if ctx.get_parameter_source(k) is not click.core.ParameterSource.ENVIRONMENT
    }
    pick = typed or given
    if not pick:
        raise click.UsageError(_WHERE)
    if len(pick) > 1:
        raise click.UsageError(f"give one mailbox, not {' and '.join('--' + k for k in pick)}")
    ((kind, value),) = pick.items()
    return kind, value


def _password(url: Any) -> str:
    """CERTMAIL_IMAP_PASSWORD_FILE (its first line), else a prompt on the terminal."""
    name = os.environ.get("CERTMAIL_IMAP_PASSWORD_FILE")
    if name:
        try:
            return Path(name).read_text(encoding="utf-8").split("\n", 1)[0].rstrip("\r")
        except OSError as e:
            raise Error(f"cannot read CERTMAIL_IMAP_PASSWORD_FILE {name}: {e.strerror}") from None
    if sys.stdin.isatty():
        value: str = click.prompt(
            f"certmail: IMAP password for {url.user}@{url.host}", hide_input=True, err=True
        )
        return value
    raise Error(
        f"no IMAP password for {url.user}@{url.host}",
        hint="set CERTMAIL_IMAP_PASSWORD_FILE=FILE (never put it on the command line)",
    )


@contextmanager
def _open_source(ctx: click.Context, *, writable: bool = False) -> Iterator[Source]:
    kind, value = _chosen(ctx, {k: ctx.params.get(k) for k in ("maildir", "mbox", "imap_url")})
    src: Source
    if kind == "maildir":
        from certmail.inbox.maildir import MaildirSource

        src = MaildirSource(value)
    elif kind == "mbox":
        from certmail.inbox.mbox import MboxSource

        src = MboxSource(value)
    else:
        from certmail.inbox.guard import Limits
        from certmail.inbox.imap import ImapSource
        from certmail.inbox.imapurl import parse_imap_url

        url = parse_imap_url(value, ca=os.environ.get("CERTMAIL_IMAP_CA"))
        seconds = float(os.environ.get("CERTMAIL_IMAP_TIMEOUT") or 60)
        src = ImapSource(url, _password(url), writable=writable, limits=Limits(seconds=seconds))
    try:
        yield src
    finally:
        src.close()


@inbox.command("list")
@click.option("--unread", is_flag=True, help="Only the messages not read yet.")
@source_options
@smime_ca_option
@json_option()
@home_option
@click.pass_context
def list_(ctx: click.Context, /, unread: bool, **_: Any) -> None:
    """One line per message: id, date, sender, subject, certified?, signature, acknowledged?"""
    app = ctx.ensure_object(App)
    from certmail.cli.mdns import collect as collect_mdn
    from certmail.inbox.spool import private_dir
    from certmail.inbox.summary import describe

    out: list[Summary] = []
    with _open_source(ctx) as src, app.client() as cm, private_dir() as tmp:
        for i, item in enumerate(src.items(unread=unread)):
            work = tmp / str(i)
            work.mkdir()
            out.append(describe(cm, item, copy := src.copy(item.id, work / "message.eml")))
            collect_mdn(cm, copy, out[-1])  # an RFC 8098 MDN for a message sent: kept
        kind = src.kind
    if app.as_json:
        emit_json({"source": kind, "messages": [s.to_json() for s in out]})
        return
    if not out:
        click.echo(f"no {'unread ' if unread else ''}messages")
    for s in out:
        click.echo(_line(s))


def _line(s: Summary) -> str:
    mark = "*" if s.unread else " "
    subject = s.subject if s.subject is not None else "(no subject)"
    head = f"{mark} {s.id}  {s.date or '?'}  {s.sender or '?'}  {subject}"
    if s.certified:
        ack = {"yes": "acknowledged", "queued": "ack queued"}.get(s.acknowledged or "", "not acked")
        cert = f"certified by {s.notary or '?'} sha256 {s.sha256 or '(does not check)'}; {ack}"
    else:
        cert = "not certified"
    who = f" by {s.signer}" if s.signer else ""
    mdn = f"\n    {s.mdn}" if s.mdn else ""
    return f"{head}\n    signature {s.signature}{who}; {cert}{mdn}"


@inbox.command("open")
@click.argument("msg_id", metavar="ID")
@click.option(
    "--save-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Save the attachments here (after they were scanned).",
)
@click.option("--force", is_flag=True, help="Overwrite files that exist in --save-dir.")
@click.option("--allow-unsigned", is_flag=True, help="Show a message that carries no signature.")
@click.option("--require-scan", is_flag=True, default=None, help="Refuse to save unscanned.")
@click.option(
    "--ack/--no-ack", default=None, help="Sign an acknowledgement and post it to the notary."
)
@click.option("--mdn/--no-mdn", default=None, help="Also send an RFC 8098 MDN when asked for.")
@click.option(
    "--notary", "notary_url", metavar="URL", help="The notary when the message names none."
)
@click.option("--mark-read", is_flag=True, help="Then flag it read (IMAP \\Seen, Maildir S).")
@source_options
@smime_ca_option
@json_option()
@home_option
@click.pass_context
def open_(ctx: click.Context, /, msg_id: str, mark_read: bool, **opts: Any) -> None:
    """Open message ID of the mailbox, as `certmail open FILE` does (see its options)."""
    from certmail.cli.open import open_ as open_file
    from certmail.inbox.spool import private_dir

    keep = ("save_dir", "force", "allow_unsigned", "require_scan", "ack", "mdn", "notary_url")
    with _open_source(ctx, writable=mark_read) as src, private_dir() as tmp:
        copy = src.copy(msg_id, tmp / "message.eml")
        ctx.invoke(open_file, file=copy, **{k: opts[k] for k in keep})
        if mark_read:
            src.mark_read(msg_id)
