"""The gpg processes of one plain ``certmail send`` (a work count, not a timing): each
listing, lookup and check that the send already made is not made again (issue 16).

A wrapper named ``gpg`` first on PATH logs each run's arguments and runs the real gpg.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from tests.fixtures.cli import run, send_args


def _gpg_logger(tmp_path: Path) -> tuple[Path, Path]:
    real = shutil.which("gpg")
    assert real is not None
    bindir, log = tmp_path / "bin", tmp_path / "gpg-runs.log"
    bindir.mkdir()
    wrapper = bindir / "gpg"
    wrapper.write_text(f'#!/bin/sh\nprintf "%s\\n" "$*" >> "{log}"\nexec "{real}" "$@"\n')
    wrapper.chmod(0o755)
    return bindir, log


def _operation(argv: str) -> str:
    """The command of one logged run (its first ``--`` option that names an operation)."""
    ops = ("--list-keys", "--list-secret-keys", "--list-config", "--export", "--detach-sign",
           "--encrypt", "--decrypt", "--import", "--version")  # fmt: skip
    return next((a for a in argv.split() if a in ops), argv)


def test_plain_send_runs_each_gpg_step_once(correspondents: Any, tmp_path: Path) -> None:
    c = correspondents
    bindir, log = _gpg_logger(tmp_path)
    att = tmp_path / "a.bin"
    att.write_bytes(os.urandom(1024))
    args = send_args(c.bob.email, "count", "--attach", str(att), "--no-notarize")
    p = run(c.alice, *args, stdin=b"hello\n", PATH=f"{bindir}{os.pathsep}{os.environ['PATH']}")
    assert p.returncode == 0, p.stderr
    assert c.sink.messages, "nothing was sent"
    ops = [_operation(line) for line in log.read_text().splitlines()]
    # one listing of each kind (shared by the key lookup and the send), the own key for
    # Autocrypt, the unlock before streaming, then sign+encrypt and the checking decrypt
    # (started together: their wrappers may log in either order)
    assert ops[:4] == ["--list-keys", "--list-secret-keys", "--export", "--detach-sign"], ops
    assert sorted(ops[4:]) == ["--decrypt", "--encrypt"], log.read_text()
