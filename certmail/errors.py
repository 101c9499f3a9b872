"""Every error the certmail Python API raises, in one place (docs/python-api.md).

The root is :class:`keys.errors.Error` (``message``, ``hint``, ``exit_code``,
``diagnostics()``); its subclasses map to the CLI's exit codes, the ``EXIT_*``
table below (docs/cli.md). Scripts import from here::

    from certmail.errors import Error, QueuedError, TemporaryError
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from keys.errors import (
    EXIT_CONFLICT,
    EXIT_ERROR,
    EXIT_INFECTED,
    EXIT_INTERRUPTED,
    EXIT_NOT_FOUND,
    EXIT_OK,
    EXIT_TEMPORARY,
    EXIT_USAGE,
    EXIT_VERIFICATION,
    ConflictError,
    Error,
    InfectedError,
    KeyMaterialError,
    MalformedError,
    NotFoundError,
    TemporaryError,
    VerificationError,
)

from .relay_client import HashMismatchError, NoRelayError, RelayLoginError
from .smtp import DeliveryError, UncertainDeliveryError

if TYPE_CHECKING:
    from .results import SendResult

__all__ = [
    "EXIT_CODES",
    "EXIT_CONFLICT",
    "EXIT_ERROR",
    "EXIT_INFECTED",
    "EXIT_INTERRUPTED",
    "EXIT_NOT_FOUND",
    "EXIT_OK",
    "EXIT_TEMPORARY",
    "EXIT_USAGE",
    "EXIT_VERIFICATION",
    "ConflictError",
    "DeliveryError",
    "Error",
    "HashMismatchError",
    "InfectedError",
    "KeyMaterialError",
    "MalformedError",
    "NoRelayError",
    "NotFoundError",
    "NotaryNotFoundError",
    "NotaryRequestError",
    "QueuedError",
    "RelayLoginError",
    "TemporaryError",
    "UncertainDeliveryError",
    "VerificationError",
]

#: Every documented CLI exit code and what it means (docs/cli.md's table).
EXIT_CODES: dict[int, str] = {
    EXIT_OK: "success",
    EXIT_ERROR: "an error",
    EXIT_USAGE: "usage error",
    EXIT_VERIFICATION: "verification failed",
    EXIT_INFECTED: "malware found",
    EXIT_TEMPORARY: "temporary failure",
    EXIT_NOT_FOUND: "not found",
    EXIT_CONFLICT: "conflict",
    EXIT_INTERRUPTED: "interrupted",
}


class NotaryRequestError(Error):
    """The notary refused a client request for good (a 4xx reply, no token)."""


class NotaryNotFoundError(NotaryRequestError, NotFoundError):
    """The notary has no such thing (a 404 reply), e.g. no evidence yet for a message."""


class QueuedError(TemporaryError):
    """The message is safe in the outbox but a step failed transiently; ``result`` says where."""

    def __init__(self, message: str, result: SendResult, *, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.result = result
