"""The one exception root of certmail's three packages.

Every error certmail raises on purpose derives from :class:`Error`. The CLI
catches it in one place and prints ``certmail: error: <message>`` and, when
there is one, ``certmail: hint: <hint>``, then exits with :attr:`exit_code`.
"""

from __future__ import annotations


class Error(Exception):
    """Root of every deliberate certmail error.

    ``hint`` turns the error into the next thing to type; ``exit_code`` is the
    documented CLI exit status (see docs/cli.md).
    """

    exit_code: int = 1

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def diagnostics(self) -> str:
        """The message and hint, for logs and ``--verbose``."""
        return self.message if not self.hint else f"{self.message}\nhint: {self.hint}"


class KeyMaterialError(Error):
    """Key material could not be created, read or validated."""


class NotFoundError(Error):
    """Something named does not exist (a key, a message, a receipt, a notary)."""

    exit_code = 6


class ConflictError(Error):
    """Refused because it would overwrite or contradict what exists."""

    exit_code = 7


class TemporaryError(Error):
    """A transient failure (network, a 4xx SMTP reply, notary unreachable): retry later."""

    exit_code = 5


class VerificationError(Error):
    """A proof, signature, checkpoint, receipt or token did not verify.

    Verification functions return ``None`` (or the verified value) or raise
    this; never a bool. The message says what failed; the object may have been
    modified maliciously.
    """

    exit_code = 3


class MalformedError(VerificationError):
    """Input could not be parsed: it is not in the format it claims to be."""


class InfectedError(Error):
    """A virus scanner found malware; nothing was sent or saved."""

    exit_code = 4


# The documented CLI exit codes (docs/cli.md). Verification failures use 3
# (notary.errors.VerificationError); usage errors 2; anything else 1.
EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_VERIFICATION = 3
EXIT_INFECTED = 4
EXIT_TEMPORARY = 5
EXIT_NOT_FOUND = 6
EXIT_CONFLICT = 7
EXIT_INTERRUPTED = 130
