"""The command table of ``certmail.cli.main``: ``certmail --help`` and shell completion
list the commands from it without importing them, and its short help is each command's
own (so the table cannot drift from the commands)."""

from __future__ import annotations

import importlib
import subprocess
import sys

import click
import pytest

from certmail.cli.app import App
from certmail.cli.main import COMMANDS, _cli


def _command(name: str) -> click.Command:
    module_name, attr = COMMANDS[name][0].split(":")
    cmd: click.Command = getattr(importlib.import_module(module_name), attr)
    return cmd


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_the_table_short_help_is_the_commands_own(name: str) -> None:
    real = _command(name)
    assert real.name == name
    assert not real.hidden and not real.deprecated  # the table's list shows neither
    stub = click.Command(name, help=COMMANDS[name][1])
    for limit in range(10, 200):  # as Click shortens it for any terminal width
        assert stub.get_short_help_str(limit) == real.get_short_help_str(limit), limit


def test_help_lists_every_command_as_click_would() -> None:
    group = _cli()
    with click.Context(group, info_name="certmail", obj=App()) as ctx:
        eager = click.Group("certmail", commands={n: _command(n) for n in COMMANDS})
        lazy_text = click.HelpFormatter(width=80)
        eager_text = click.HelpFormatter(width=80)
        group.format_commands(ctx, lazy_text)
        eager.format_commands(ctx, eager_text)
        assert lazy_text.getvalue() == eager_text.getvalue()
        assert lazy_text.getvalue().count("\n") == len(COMMANDS) + 1
        for incomplete in ("", "pro", "re", "x"):
            got = [(i.value, i.help) for i in group.shell_complete(ctx, incomplete)]
            want = [(i.value, i.help) for i in eager.shell_complete(ctx, incomplete)]
            assert got[: len(want)] == want[: len(got)]
            assert [v for v, _ in got if not v.startswith("-")] == sorted(
                n for n in COMMANDS if n.startswith(incomplete)
            )


def test_help_imports_no_command_module() -> None:
    code = (
        "import sys\n"
        "from certmail.cli.main import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "print(' '.join(sorted(m for m in sys.modules if m.startswith('certmail.cli.'))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "Commands:" in out.stdout
    assert out.stdout.splitlines()[-1] == "certmail.cli.app certmail.cli.main"
