"""``certmail: warning:`` lines: written without rich where rich would write the text as it
is (stderr not a terminal), byte for byte what rich writes (issue 16: rich's import is
about 0.05 CPU s of a send that warns, e.g. "no virus scanner available")."""

from __future__ import annotations

import io
import subprocess
import sys

import pytest

from certmail.cli.app import say, warn

MESSAGES = [
    "no virus scanner available: attachments are marked 'not scanned'",
    "no key for bob@example.net in your keyring: found ABCD in WKD; imported, not trusted",
    "[bold]not markup[/] and a \\[ backslash \\ too",
    "unicode é ü 中文 and an emoji 😀 as text",
    "trailing spaces   ",
    "",
    # not on the plain path: rich changes these, and still prints them
    "an emoji code :smile: here",
    "a tab\there",
    "escape \x1b[31mred\x1b[0m and CR\r and BEL\x07",
    "a:b:c",
]


def _rich(markup: str) -> str:
    from rich.console import Console

    buf = io.StringIO()
    Console(file=buf, highlight=False, soft_wrap=True).print(markup)
    return buf.getvalue()


@pytest.mark.parametrize("message", MESSAGES)
def test_warn_and_say_write_what_rich_writes(message: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from rich.markup import escape

    for var in ("FORCE_COLOR", "TTY_COMPATIBLE", "NO_COLOR", "COLUMNS"):
        monkeypatch.delenv(var, raising=False)
    err = io.StringIO()
    monkeypatch.setattr(sys, "stderr", err)
    warn(message)
    assert err.getvalue() == _rich(f"[yellow]certmail: warning:[/] {escape(message)}")
    for markup in (message, f"[green]ok[/] {escape(message)}"):  # say() takes markup
        err.seek(0)
        err.truncate()
        say(markup)
        assert err.getvalue() == _rich(markup)


def test_plain_warning_imports_no_rich() -> None:
    code = (
        "import sys\nfrom certmail.cli.app import say, warn\n"
        "warn('no virus scanner available')\nsay('sent <m@example.org> (12 bytes)')\n"
        "print('rich' in sys.modules)\n"
        "warn('with an emoji code :smile:')\nprint('rich' in sys.modules)\n"
    )
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert p.stdout.split() == ["False", "True"]
    assert p.stderr.splitlines()[0] == "certmail: warning: no virus scanner available"


def test_forced_colour_goes_through_rich() -> None:
    code = "from certmail.cli.app import warn\nwarn('coloured')\n"
    env = {"FORCE_COLOR": "1", "PATH": "/usr/bin:/bin"}
    p = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env
    )
    assert "\x1b[" in p.stderr and "coloured" in p.stderr
