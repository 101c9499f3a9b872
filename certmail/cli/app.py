"""What every ``certmail`` command shares: the app object, the global options, output.

The root group and each command that reads a certmail home take ``--home``
(env ``CERTMAIL_HOME``) and ``--json``; the root group also takes
``--verbose`` (env ``CERTMAIL_VERBOSE``) and ``--passphrase-fd N`` (env
``CERTMAIL_PASSPHRASE_FD``; also on ``keys trust``): the passphrase of your
key is read from descriptor N (:mod:`certmail.passphrase`). Their values land on one
:class:`App` in ``ctx.obj``, which commands receive with :data:`pass_app`
(Click's ``pass_obj``, as hatch does). Data goes to stdout, messages for
people to stderr; errors have one shape, ``certmail: error: ...`` then
``certmail: hint: ...``, printed by :func:`print_error`. Exit codes come from
the ``EXIT_*`` table of :mod:`certmail.errors` (docs/cli.md).

Only Click is imported here; everything heavy is imported inside the
functions and command bodies, so ``certmail --help`` stays fast.
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from keys.errors import EXIT_ERROR

if TYPE_CHECKING:
    from certmail.api import Certmail
    from certmail.config import Settings
    from keys.errors import Error
    from keys.gpg import Ask, Keyring

F = TypeVar("F", bound=Callable[..., Any])

HOME_HELP = "The certmail home (default: $CERTMAIL_HOME, else the platform's config dir)."


@dataclass
class App:
    """The options every command sees (``ctx.obj``)."""

    home: Path | None = None
    as_json: bool = False
    verbose: bool = False
    passphrase_fd: int | None = None
    smime_ca: Path | None = None  # --smime-ca (certmail/cli/smime.py)
    smime_crl: Path | None = None  # --smime-crl (certmail/cli/smime.py)

    def settings(self) -> Settings:
        """Settings of ``--home`` (or CERTMAIL_HOME, or the default home)."""
        from certmail.config import load_settings

        settings = load_settings(self.home)
        if self.smime_ca is not None:
            settings.smime_ca = str(self.smime_ca)
        if self.smime_crl is not None:
            settings.smime_crl = str(self.smime_crl)
        return settings

    def passphrase_source(self, settings: Settings | None = None) -> Ask | None:
        """Where the key's passphrase comes from when gpg needs it: ``--passphrase-fd``,
        CERTMAIL_PASSPHRASE_FILE, else a prompt on the terminal (docs/keys.md)."""
        from certmail.cli.prompt import terminal_prompt
        from certmail.passphrase import passphrase_source

        return passphrase_source(
            settings or self.settings(), fd=self.passphrase_fd, fallback=terminal_prompt()
        )

    def keyring(self, settings: Settings | None = None) -> Keyring:
        """The home's keyring, asking for the key's passphrase when gpg needs it."""
        from keys.gpg import Keyring

        settings = settings or self.settings()
        return Keyring(settings.gnupghome, ask=self.passphrase_source(settings))

    def client(self) -> Certmail:
        """The Python API's :class:`certmail.api.Certmail` for this home."""
        from certmail.api import Certmail

        settings = self.settings()
        return Certmail(settings, ask=self.passphrase_source(settings))


pass_app = click.make_pass_decorator(App, ensure=True)


def _store(attr: str) -> Callable[[click.Context, click.Parameter, Any], None]:
    def callback(ctx: click.Context, param: click.Parameter, value: Any) -> None:
        if value not in (None, False):  # a subcommand's option adds to the root's
            setattr(ctx.ensure_object(App), attr, value)

    return callback


home_option: Callable[[F], F] = click.option(
    "--home",
    type=click.Path(file_okay=False, path_type=Path),
    envvar="CERTMAIL_HOME",
    expose_value=False,
    callback=_store("home"),
    help=HOME_HELP,
)


def json_option(help: str = "Print one JSON object on stdout.") -> Callable[[F], F]:
    """``--json``: data for scripts on stdout (``App.as_json``)."""
    return click.option(
        "--json", is_flag=True, expose_value=False, callback=_store("as_json"), help=help
    )


verbose_option: Callable[[F], F] = click.option(
    "-v",
    "--verbose",
    is_flag=True,
    envvar="CERTMAIL_VERBOSE",
    expose_value=False,
    callback=_store("verbose"),
    help="On an error, print its full detail (every line of the message, the cause).",
)


passphrase_fd_option: Callable[[F], F] = click.option(
    "--passphrase-fd",
    type=click.IntRange(min=0),
    envvar="CERTMAIL_PASSPHRASE_FD",
    metavar="N",
    expose_value=False,
    callback=_store("passphrase_fd"),
    help="Read your key's passphrase from file descriptor N (its first line), e.g. 3<FILE.",
)


def interactive() -> bool:
    """Prompts are allowed only when stdin is a terminal."""
    return sys.stdin.isatty()


def say(message: str) -> None:
    """A message for people, on stderr (rich markup)."""
    if "[" not in message and _plain_as_rich(message):  # no markup: rich not imported
        _write_stderr(message)
        return
    from rich.console import Console

    Console(stderr=True, highlight=False, soft_wrap=True).print(message)


def warn(message: str) -> None:
    """``certmail: warning: ...`` on stderr (the text is not markup)."""
    if _plain_as_rich(message):  # what rich would write, without importing it (~0.05 CPU s)
        _write_stderr(f"certmail: warning: {message}")
        return
    from rich.markup import escape

    say(f"[yellow]certmail: warning:[/] {escape(message)}")


def _write_stderr(line: str) -> None:
    sys.stderr.write(line + "\n")
    sys.stderr.flush()


def _plain_as_rich(message: str) -> bool:
    """Whether rich would print ``message`` unchanged and uncoloured: stderr is not a
    terminal (nor made one by ``TTY_COMPATIBLE`` or ``FORCE_COLOR``), and the text has no
    control character or tab (rich drops or expands those), no ``:name:`` (an emoji
    code rich may replace) and no backslash (rich's markup escape loses one before ``[``)."""
    if os.environ.get("TTY_COMPATIBLE") is not None or os.environ.get("FORCE_COLOR") is not None:
        return False
    try:
        if sys.stderr.isatty():
            return False
    except (AttributeError, ValueError):
        return False
    plain = message.isprintable() and "\\" not in message
    return plain and _EMOJI_CODE.search(message) is None


#: rich's emoji code (``rich._emoji_replace``): a colon, non-blanks, a colon.
_EMOJI_CODE = re.compile(r":\S*?:")


def emit_json(obj: Any) -> None:
    """One indented JSON document on stdout."""
    click.echo(json.dumps(obj, indent=2, ensure_ascii=False))


def print_error(message: str, hint: str | None = None, *, detail: Sequence[str] = ()) -> None:
    """The one error shape on stderr: the error, its detail lines, the hint."""
    sys.stderr.write(f"certmail: error: {message}\n")
    for line in detail:
        sys.stderr.write(f"certmail: detail: {line}\n")
    if hint:
        sys.stderr.write(f"certmail: hint: {hint}\n")
    sys.stderr.flush()


def fail(message: str, hint: str | None = None, code: int = EXIT_ERROR) -> None:
    """Print the one-line error (and hint) on stderr and exit with ``code``."""
    print_error(message, hint)
    sys.exit(code)


def error_detail(e: Error) -> list[str]:
    """What ``--verbose`` adds to an error: its :meth:`~keys.errors.Error.diagnostics`
    beyond the first line (less the hint, printed anyway), then what caused it (also
    when the message replaced it: ``raise ... from None``)."""
    lines = e.diagnostics().splitlines()[1:]
    if e.hint:
        lines = lines[: len(lines) - len(f"hint: {e.hint}".splitlines())]
    cause = e.__cause__ or e.__context__
    if cause is not None:
        lines.append(f"caused by {type(cause).__name__}: {cause}".rstrip(": "))
    return lines
