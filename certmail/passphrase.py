"""Where the passphrase of your OpenPGP key comes from: a descriptor, a file, the terminal.

Each source is a :data:`keys.gpg.Ask`: a :class:`keys.gpg.Keyring` calls it
only when gpg needs the passphrase (the key is protected and the agent has not
unlocked it) or refused the one it got (docs/keys.md#passphrases):

- :class:`FdSource`: the first line read from a file descriptor
  (``--passphrase-fd N``); one try;
- :class:`FileSource`: the first line of ``CERTMAIL_PASSPHRASE_FILE``; one try;
- :class:`TerminalPrompt`: asks on the controlling terminal (``/dev/tty``)
  without echo, saying "wrong passphrase" when gpg refused the last one; the
  keyring stops after :data:`keys.gpg.MAX_TRIES` tries.

:func:`passphrase_source` picks one, in that order. The passphrase goes to gpg
through a pipe; it is never put on a command line or in the environment. The
library never prompts on its own: only a caller that passes a
:class:`TerminalPrompt` (the CLI, on a terminal) gets one.
"""

from __future__ import annotations

import contextlib
import getpass
import os
import sys
from typing import TYPE_CHECKING

from keys.errors import Error
from keys.gpg import (
    MAX_TRIES,
    Ask,
    BadPassphraseError,
    PassphraseRequest,
    PassphraseRequiredError,
)

if TYPE_CHECKING:
    from .config import Settings

__all__ = [
    "MAX_LINE",
    "FdSource",
    "FileSource",
    "TerminalPrompt",
    "passphrase_source",
    "terminal_available",
]

MAX_LINE = 4096  # bytes read from a passphrase descriptor
TTY = "/dev/tty"


class _OneShot:
    """A source with one passphrase: a second request means gpg refused it."""

    where = "the passphrase source"

    def _read(self) -> str:
        raise NotImplementedError

    def __call__(self, request: PassphraseRequest) -> str:
        if request.wrong or request.attempt > 1:
            raise BadPassphraseError(
                f"wrong passphrase for {request.key} (from {self.where})",
                hint=f"correct the passphrase in {self.where}",
            )
        return self._read()


class FileSource(_OneShot):
    """The first line of ``CERTMAIL_PASSPHRASE_FILE`` (read when first needed)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.where = f"CERTMAIL_PASSPHRASE_FILE {settings.passphrase_file}"

    def _read(self) -> str:
        passphrase = self.settings.passphrase()
        if passphrase is None:
            raise PassphraseRequiredError()
        return passphrase


class FdSource(_OneShot):
    """The first line read from file descriptor ``fd`` (``--passphrase-fd N``), then closed."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.where = f"--passphrase-fd {fd}"

    def _read(self) -> str:
        data = b""
        try:
            while len(data) < MAX_LINE and b"\n" not in data:
                chunk = os.read(self.fd, MAX_LINE - len(data))
                if not chunk:
                    break
                data += chunk
        except OSError as e:
            raise Error(
                f"cannot read the passphrase from {self.where}: {e.strerror}",
                hint="open the descriptor for the command, e.g. --passphrase-fd 3 3<FILE",
            ) from None
        finally:
            with contextlib.suppress(OSError):
                os.close(self.fd)
        line = data.split(b"\n", 1)[0].rstrip(b"\r")
        try:
            return line.decode("utf-8")
        except UnicodeDecodeError:
            raise Error(f"the passphrase from {self.where} is not UTF-8") from None


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


def passphrase_source(
    settings: Settings, *, fd: int | None = None, terminal: bool | None = None
) -> Ask | None:
    """The source for this run: ``--passphrase-fd``, else CERTMAIL_PASSPHRASE_FILE, else
    the terminal (``terminal``: default :func:`terminal_available`), else none."""
    if fd is not None:
        return FdSource(fd)
    if settings.passphrase_file is not None:
        return FileSource(settings)
    if terminal if terminal is not None else terminal_available():
        return TerminalPrompt()
    return None
