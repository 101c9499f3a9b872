"""Errors of the notary's formats and service."""

from __future__ import annotations

from keys.errors import Error, MalformedError, VerificationError

__all__ = [
    "MalformedError",
    "NotaryError",
    "SequencerError",
    "SequencerUnavailableError",
    "StorageError",
    "VerificationError",
]


class NotaryError(Error):
    """Root of the notary package's errors."""


class StorageError(NotaryError):
    """The storage backend failed or holds something it must not."""


class SequencerError(NotaryError):
    """The sequencer refused to sign (inconsistent tree, time not moving forward)."""


class SequencerUnavailableError(SequencerError):
    """No sequencer answered: the worker that sequences died with the request in flight,
    or none has taken over yet. Retry (the API answers 503 with ``Retry-After``)."""

    retry_after = 1
