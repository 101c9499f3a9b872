"""Strict, canonical base64 (RFC 4648 §4) for every format certmail parses.

C2SP signed notes, checkpoints and tlog-proofs, certmail's receipts and the
checkpoint signer key all carry standard base64 and accept only its one
canonical encoding (RFC 4648 §3.5: no characters outside the alphabet, correct
padding, the unused low bits of the last character zero), so that one value
has exactly one text. The helper lives in ``keys``, the lowest layer of the
``keys`` <- ``notary`` <- ``certmail`` import direction, so that all three can
use it without ``keys`` ever importing the others.
"""

from __future__ import annotations

import base64
import binascii

__all__ = ["Base64Error", "NonCanonicalBase64Error", "b64decode_canonical"]


class Base64Error(ValueError):
    """The text is not base64 at all (alphabet, padding or length)."""


class NonCanonicalBase64Error(Base64Error):
    """The text decodes, but is not the canonical encoding of what it decodes to."""


def b64decode_canonical(text: str) -> bytes:
    """Decode standard base64, accepting only the canonical encoding of the result.

    Raises :class:`Base64Error` ("bad base64") for anything that is not base64
    and :class:`NonCanonicalBase64Error` ("non-canonical base64") for a text
    that decodes but would not be produced by encoding its bytes again.
    """
    try:
        raw = base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError):
        raise Base64Error("bad base64") from None
    if base64.b64encode(raw).decode("ascii") != text:
        raise NonCanonicalBase64Error("non-canonical base64")
    return raw
