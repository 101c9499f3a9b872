"""Asking a person for the passphrase of their key, on the terminal (CLI only).

:class:`TerminalPrompt` is the :data:`keys.gpg.Ask` the CLI hands to the
library (:func:`certmail.passphrase.passphrase_source`, ``fallback=``) when a
person is at a terminal (:func:`terminal_available`): it asks on the
controlling terminal (``/dev/tty``) without echo, and says "wrong passphrase"
when gpg refused the last one; the keyring stops after
:data:`keys.gpg.MAX_TRIES` tries. The library itself never touches the
terminal.
"""

from __future__ import annotations

import contextlib
import getpass
import os
import sys

from keys.gpg import MAX_TRIES, PassphraseRequest, PassphraseRequiredError

__all__ = ["TTY", "TerminalPrompt", "terminal_available", "terminal_prompt"]

TTY = "/dev/tty"


class TerminalPrompt:
    """Asks on the controlling terminal, without echo (:func:`getpass.getpass` on ``/dev/tty``)."""

    def _tell(self, text: str) -> None:
        with contextlib.suppress(OSError), open(TTY, "w", encoding="utf-8") as tty:
            tty.write(text)

    def __call__(self, request: PassphraseRequest) -> str:
        if request.wrong:
            self._tell(f"certmail: wrong passphrase (try {request.attempt} of {MAX_TRIES})\n")
        try:
            return getpass.getpass(f"passphrase for {request.key}: ")
        except EOFError:  # Ctrl-D
            raise PassphraseRequiredError(
                "no passphrase was entered", hint="run the command again to be asked"
            ) from None


def terminal_available() -> bool:
    """A person can be asked: stderr is a terminal and there is a controlling terminal."""
    if not sys.stderr.isatty():
        return False
    try:
        fd = os.open(TTY, os.O_RDWR | os.O_NOCTTY)
    except OSError:
        return False
    os.close(fd)
    return True


def terminal_prompt() -> TerminalPrompt | None:
    """A :class:`TerminalPrompt` when a person is at a terminal, else None."""
    return TerminalPrompt() if terminal_available() else None
