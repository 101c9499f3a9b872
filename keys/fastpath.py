"""The one switch for certmail's benchmarked fast paths.

A fast path (the RFC 3161 token template, the RFC 8785 encoder, the raw-ASGI
notarize and /tsa handlers, the strict zip reader, a proof bundle's plain header
block read without the MIME reader) lives inside its reference
module and is built from the same code. ``CERTMAIL_REFERENCE_ONLY=1`` turns every
one of them off, so CI can run the same tests through the reference code alone.
"""

from __future__ import annotations

import os

ENV = "CERTMAIL_REFERENCE_ONLY"


def enabled() -> bool:
    """True unless ``CERTMAIL_REFERENCE_ONLY`` is set to a non-empty value other than 0.

    Read at each call (cheap), so a test can switch it with ``monkeypatch.setenv``.
    """
    return os.environ.get(ENV, "") in ("", "0")
