"""Entry point of the ``certmail`` CLI.

Command groups live in their own modules and are imported only when used, so
``certmail --help`` stays fast. Errors derived from :class:`keys.errors.Error`
are caught once, here, and printed as ``certmail: error: ...`` plus a hint
(with ``--verbose``, their full detail); the exit status is the error's
``exit_code``, from the ``EXIT_*`` table (docs/cli.md).
"""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING, Any

from keys.errors import EXIT_ERROR, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE, Error

if TYPE_CHECKING:
    from certmail.cli.app import App

# name -> ("module:attribute", short help); each module defines one Click command or
# group. The short help is the command's own (tests/certmail/test_cli_lazy.py checks),
# so `certmail --help` and shell completion list the commands without importing them.
COMMANDS: dict[str, tuple[str, str]] = {
    "notary": (
        "certmail.cli.notary:notary",
        "Run a notary: the log, the TSA and the relay that witness mail.",
    ),
    "init": (
        "certmail.cli.init:init",
        "Create the certmail home and your key: Ed25519 signing, Cv25519 encryption.",
    ),
    "keys": (
        "certmail.cli.keys:keys",
        "Your OpenPGP identity, your correspondents' keys, and DKIM keys.",
    ),
    "config": (
        "certmail.cli.config:config",
        "Show and change settings (stored in HOME/config.toml).",
    ),
    "notarize": (
        "certmail.cli.notarize:notarize",
        "Notarize FILE: log the SHA-256 of its exact bytes and keep the receipt.",
    ),
    "receipt": (
        "certmail.cli.receipt:receipt",
        "Work with notary receipts (DESIGN §4.3: entry, tlog-proof, RFC 3161 token).",
    ),
    "receipts": (
        "certmail.cli.receipts:receipts",
        "Show a message's timeline per recipient: accepted, delivered, failed, acknowledged.",
    ),
    "proof": (
        "certmail.cli.proof:proof",
        "Export and verify proof bundles (*.certmail-proof.zip).",
    ),
    "send": (
        "certmail.cli.send:send",
        "Send a signed, encrypted, virus-scanned, notarized message.",
    ),
    "open": (
        "certmail.cli.open:open_",
        "Open a received message: the body on stdout, who signed it on stderr.",
    ),
    "verify": (
        "certmail.cli.verify:verify",
        "Verify a message's signatures (PGP or S/MIME when not encrypted, DKIM) without "
        "decrypting.",
    ),
    "outbox": (
        "certmail.cli.outbox:outbox",
        "Queued messages: a transient SMTP or notary failure leaves them here.",
    ),
    "inbox": (
        "certmail.cli.inbox:inbox",
        "Certified mail where it lives: a Maildir, an mbox file or an IMAP mailbox.",
    ),
    "witness": (
        "certmail.cli.witness:witness",
        "Cosign logs' checkpoints, never two inconsistent ones (C2SP tlog-witness).",
    ),
    "campaign": (
        "certmail.cli.campaign:campaign",
        "Certified campaigns: each recipient its own signed, encrypted, notarized message.",
    ),
    "web-login": (
        "certmail.cli.web_login:web_login",
        "Print a one-time sign-in link to your certified mail in a browser (GET /app).",
    ),
}


def _cli() -> Any:
    """The Click group (Click is imported here: ``proof verify`` runs without it)."""
    import importlib

    import click
    from click.shell_completion import CompletionItem

    from certmail.cli.app import home_option, json_option, passphrase_fd_option, verbose_option

    def short_help(name: str, limit: int = 45) -> str:
        """The table's short help, shortened as Click shortens a command's own help."""
        return click.Command(name, help=COMMANDS[name][1]).get_short_help_str(limit)

    class LazyGroup(click.Group):
        """A group whose subcommands are imported on first use (not to list them)."""

        def list_commands(self, ctx: click.Context) -> list[str]:
            return sorted(COMMANDS)

        def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
            target = COMMANDS.get(cmd_name)
            if target is None:
                return None
            module_name, attr = target[0].split(":")
            cmd: click.Command = getattr(importlib.import_module(module_name), attr)
            return cmd

        def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
            names = self.list_commands(ctx)
            limit = formatter.width - 6 - max(map(len, names))
            with formatter.section("Commands"):
                formatter.write_dl([(name, short_help(name, limit)) for name in names])

        def shell_complete(self, ctx: click.Context, incomplete: str) -> list[CompletionItem]:
            names = [n for n in self.list_commands(ctx) if n.startswith(incomplete)]
            items = [CompletionItem(n, help=short_help(n)) for n in names]
            return items + click.Command.shell_complete(self, ctx, incomplete)

    @click.group(
        cls=LazyGroup,
        invoke_without_command=True,
        context_settings={"help_option_names": ["-h", "--help"]},
    )
    @click.version_option(package_name="certmail")
    @home_option
    @json_option("Print JSON on stdout (every command that has --json).")
    @verbose_option
    @passphrase_fd_option
    @click.pass_context
    def cli(ctx: click.Context) -> None:
        """certmail: registered post for email.

        Send signed, encrypted, virus-scanned mail whose hand-over a notary
        witnesses, and prove it later offline. Run a notary with `certmail notary`.
        Exit codes are listed in docs/cli.md.
        """
        if ctx.invoked_subcommand is None:  # no command: the command list
            click.echo(ctx.get_help())
            ctx.exit(EXIT_OK)

    return cli


def fail(message: str, hint: str | None = None, code: int = EXIT_ERROR) -> None:
    """Print the one-line error (and hint) on stderr and exit with ``code``."""
    from certmail.cli.app import fail as app_fail

    app_fail(message, hint, code)


def main(argv: list[str] | None = None) -> Any:
    """Run the CLI; deliberate errors become one line and an exit code."""
    apps: list[App] = []  # the app object, once Click runs (for --verbose)
    try:
        args = sys.argv[1:] if argv is None else argv
        if args[:2] == ["proof", "verify"]:  # the fast path: no Click when plain
            from certmail.cli.proof_verify import parse_fast, run_verify

            parsed = parse_fast(args[2:])
            if parsed is not None:
                run_verify(parsed)
                return None
        return _click_main(argv, apps)
    except Error as e:
        from certmail.cli.app import error_detail, print_error

        first = e.message.splitlines()[0] if e.message else type(e).__name__
        verbose = bool(apps) and apps[0].verbose
        print_error(first, e.hint, detail=error_detail(e) if verbose else ())
        sys.exit(e.exit_code)
    except KeyboardInterrupt:
        fail("interrupted", code=EXIT_INTERRUPTED)
    except BrokenPipeError:
        sys.exit(EXIT_OK)
    except Exception as e:  # a bug or an unforeseen failure: still no traceback
        if os.environ.get("CERTMAIL_DEBUG"):
            raise
        _unexpected(e, verbose=bool(apps) and apps[0].verbose)
    return None


def _unexpected(e: Exception, *, verbose: bool) -> None:
    from certmail.cli.app import print_error

    text = str(e).splitlines()[0] if str(e) else ""
    detail: list[str] = []
    if verbose:
        import traceback

        detail = "".join(traceback.format_exception(e)).rstrip("\n").splitlines()
    print_error(
        f"unexpected {type(e).__name__}: {text}".rstrip(": "),
        "run again with CERTMAIL_DEBUG=1 for the traceback, and report it",
        detail=detail,
    )
    sys.exit(EXIT_ERROR)


def _click_main(argv: list[str] | None, apps: list[App]) -> Any:
    import click

    from certmail.cli.app import App

    app = App()
    apps.append(app)
    try:
        return _cli().main(args=argv, prog_name="certmail", standalone_mode=False, obj=app)
    except click.exceptions.Abort:
        fail("aborted", code=EXIT_INTERRUPTED)
    except click.exceptions.Exit as e:
        sys.exit(e.exit_code)
    except click.ClickException as e:
        msg = e.format_message().strip().splitlines()[0].rstrip(".")
        fail(msg[:1].lower() + msg[1:], hint="run the command with --help", code=EXIT_USAGE)
    return None


if __name__ == "__main__":
    main()
