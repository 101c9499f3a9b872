"""Errors of the notary's formats and service."""

from __future__ import annotations

from keys.errors import Error, MalformedError, VerificationError

__all__ = [
    "MalformedError",
    "NotaryError",
    "SequencerError",
    "StorageError",
    "VerificationError",
]


class NotaryError(Error):
    """Root of the notary package's errors."""


class StorageError(NotaryError):
    """The storage backend failed or holds something it must not."""


class SequencerError(NotaryError):
    """The sequencer refused to sign (inconsistent tree, time not moving forward)."""
