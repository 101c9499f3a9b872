"""Where the passphrase of your OpenPGP key comes from: a descriptor, a file, the caller.

Each source is a :data:`keys.gpg.Ask`: a :class:`keys.gpg.Keyring` calls it
only when gpg needs the passphrase (the key is protected and the agent has not
unlocked it) or refused the one it got (docs/keys.md#passphrases):

- :class:`FdSource`: the first line read from a file descriptor
  (``--passphrase-fd N``); one try;
- :class:`FileSource`: the first line of ``CERTMAIL_PASSPHRASE_FILE``; one try;
- the caller's ``fallback``: any :data:`keys.gpg.Ask` (the CLI passes its
  terminal prompt, :class:`certmail.cli.prompt.TerminalPrompt`, when a person
  is at a terminal; the keyring stops after :data:`keys.gpg.MAX_TRIES` tries).

:func:`passphrase_source` picks one, in that order. The passphrase goes to gpg
through a pipe; it is never put on a command line or in the environment. The
library never prompts and never touches the terminal: asking a person is the
caller's callback.
"""

from __future__ import annotations

import contextlib
import os
from typing import TYPE_CHECKING

from keys.errors import Error
from keys.gpg import (
    Ask,
    BadPassphraseError,
    PassphraseRequest,
    PassphraseRequiredError,
)

if TYPE_CHECKING:
    from .config import Settings

__all__ = ["MAX_LINE", "FdSource", "FileSource", "passphrase_source"]

MAX_LINE = 4096  # bytes read from a passphrase descriptor


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


def passphrase_source(
    settings: Settings, *, fd: int | None = None, fallback: Ask | None = None
) -> Ask | None:
    """The source for this run: ``--passphrase-fd``, else CERTMAIL_PASSPHRASE_FILE, else
    ``fallback`` (the caller's own way of asking, e.g. the CLI's terminal prompt), else none."""
    if fd is not None:
        return FdSource(fd)
    if settings.passphrase_file is not None:
        return FileSource(settings)
    return fallback
