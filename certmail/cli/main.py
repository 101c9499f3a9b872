"""Entry point of the ``certmail`` CLI.

Command groups live in their own modules and are imported only when used, so
``certmail --help`` stays fast. Errors derived from :class:`keys.errors.Error`
are caught once, here, and printed as ``certmail: error: ...`` plus a hint.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from keys.errors import Error

# name -> "module:attribute"; each module defines one Click command or group.
COMMANDS: dict[str, str] = {
    "notary": "certmail.cli.notary:notary",
    "init": "certmail.cli.init:init",
    "keys": "certmail.cli.keys:keys",
    "config": "certmail.cli.config:config",
    "notarize": "certmail.cli.notarize:notarize",
    "receipt": "certmail.cli.receipt:receipt",
    "receipts": "certmail.cli.receipts:receipts",
    "proof": "certmail.cli.proof:proof",
    "send": "certmail.cli.send:send",
    "open": "certmail.cli.open:open_",
    "verify": "certmail.cli.verify:verify",
    "outbox": "certmail.cli.outbox:outbox",
}

EXIT_USAGE = 2


def _cli() -> Any:
    """The Click group (Click is imported here: ``proof verify`` runs without it)."""
    import importlib

    import click

    class LazyGroup(click.Group):
        """A group whose subcommands are imported on first use."""

        def list_commands(self, ctx: click.Context) -> list[str]:
            return sorted(COMMANDS)

        def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
            target = COMMANDS.get(cmd_name)
            if target is None:
                return None
            module_name, attr = target.split(":")
            cmd: click.Command = getattr(importlib.import_module(module_name), attr)
            return cmd

    @click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
    @click.version_option(package_name="certmail")
    def cli() -> None:
        """certmail: registered post for email.

        Send signed, encrypted, virus-scanned mail whose hand-over a notary
        witnesses, and prove it later offline. Run a notary with `certmail notary`.
        Exit codes are listed in docs/cli.md.
        """

    return cli


def fail(message: str, hint: str | None = None, code: int = 1) -> None:
    """Print the one-line error (and hint) on stderr and exit with ``code``."""
    sys.stderr.write(f"certmail: error: {message}\n")
    if hint:
        sys.stderr.write(f"certmail: hint: {hint}\n")
    sys.stderr.flush()
    sys.exit(code)


def main(argv: list[str] | None = None) -> Any:
    """Run the CLI; deliberate errors become one line and an exit code."""
    try:
        args = sys.argv[1:] if argv is None else argv
        if args[:2] == ["proof", "verify"]:  # the fast path: no Click when plain
            from certmail.cli.proof_verify import parse_fast, run_verify

            parsed = parse_fast(args[2:])
            if parsed is not None:
                run_verify(parsed)
                return None
        return _click_main(argv)
    except Error as e:
        first = e.message.splitlines()[0] if e.message else type(e).__name__
        fail(first, e.hint, e.exit_code)
    except KeyboardInterrupt:
        fail("interrupted", code=130)
    except BrokenPipeError:
        sys.exit(0)
    except Exception as e:  # a bug or an unforeseen failure: still no traceback
        if os.environ.get("CERTMAIL_DEBUG"):
            raise
        fail(
            f"unexpected {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}".rstrip(
                ": "
            ),
            hint="run again with CERTMAIL_DEBUG=1 for the traceback, and report it",
        )
    return None


def _click_main(argv: list[str] | None) -> Any:
    import click

    try:
        return _cli().main(args=argv, prog_name="certmail", standalone_mode=False)
    except click.exceptions.Abort:
        fail("aborted", code=130)
    except click.exceptions.Exit as e:
        sys.exit(e.exit_code)
    except click.ClickException as e:
        msg = e.format_message().strip().splitlines()[0].rstrip(".")
        fail(msg[:1].lower() + msg[1:], hint="run the command with --help", code=EXIT_USAGE)
    return None


if __name__ == "__main__":
    main()
