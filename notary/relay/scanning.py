"""What the relay needs of a virus scanner: a small Protocol (DESIGN §3).

The relay scans every submission that is not encrypted before it accepts it.
It does not care which scanner does this: whoever builds the
:class:`~notary.relay.runtime.Relay` passes one in (``certmail notary serve``
passes certmail's clamd client, :class:`certmail.scan.Scanner`). ``notary``
itself never imports ``certmail``.
"""

from __future__ import annotations

from typing import Protocol

__all__ = ["ScanVerdict", "Scanner"]


class ScanVerdict(Protocol):
    """The result of one scan: ``signature`` names what was found (None when clean)."""

    @property
    def clean(self) -> bool: ...

    @property
    def signature(self) -> str | None: ...

    @property
    def engine(self) -> str | None: ...


class Scanner(Protocol):
    """Scans bytes in memory.

    ``scan_bytes`` blocks (the relay runs it in a thread) and raises
    :class:`keys.errors.TemporaryError` when the scanner cannot be reached:
    the relay then answers 451 and keeps nothing.
    """

    def scan_bytes(self, data: bytes) -> ScanVerdict: ...
