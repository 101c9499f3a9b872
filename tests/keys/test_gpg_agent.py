"""Keyring.ensure_agent (keys/gpg/home.py launch_agent): the home's gpg-agent is running
after it, so processes forked afterwards find one agent instead of racing to start it."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

from keys.gpg import Keyring


def _agent_answers(home: Path) -> bool:
    """True when a gpg-agent already listens on ``home``'s socket (``--no-autostart``:
    asking must not start one)."""
    proc = subprocess.run(
        ["gpg-connect-agent", "--homedir", str(home), "--no-autostart", "GETINFO pid", "/bye"],
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )
    return proc.returncode == 0 and proc.stdout.startswith("D ")


def test_ensure_agent_starts_the_homes_agent(gnupghome_factory: Callable[[], Path]) -> None:
    home = gnupghome_factory()
    keyring = Keyring(home)
    assert not _agent_answers(home)
    keyring.ensure_agent()
    assert _agent_answers(home)
    keyring.ensure_agent()  # a running agent is kept
    assert _agent_answers(home)
