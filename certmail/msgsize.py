"""How large a sealed message will be, before it is sealed (docs/send-open.md#size).

A certmail message (RFC 3156 PGP/MIME) carries each attachment base64-encoded
(RFC 2045 §6.8, 76-character lines: 4/3 x 78/76) inside the signed part, and
the OpenPGP message around that part ASCII-armored (RFC 4880 §6.2 / RFC 9580
§6.2, 64-character lines: 4/3 x 66/64). Without compression that is
:data:`RATIO_UNCOMPRESSED` (1.88) times the attachment. When gpg compresses the
signed part (:data:`COMPRESS_LEVEL`), base64 text loses its 8/6 expansion
again even for data that does not compress (random, JPEG, ZIP): at most
:data:`RATIO_COMPRESSED_MAX` (1.46); text compresses further, so the estimate
for one attachment samples its first :data:`SAMPLE` bytes.

Compression costs CPU (gpg's deflate runs at ~17 MB/s on base64 of random
data, about 2.5x the time of a send without it), so :func:`should_compress`
asks for it only where it pays: when an attachment compresses (text,
uncompressed formats), or when the message would otherwise be too large for
the relay.

The estimate is used to refuse, before scanning and encrypting, a message the
relay's advertised limit (``GET /v1/relay`` ``max_message_bytes``) cannot
take; the exact size is checked again once the message is sealed.
"""

from __future__ import annotations

import base64
import math
import zlib
from collections.abc import Sequence
from pathlib import Path

__all__ = [
    "COMPRESS_LEVEL",
    "OVERHEAD",
    "RATIO_COMPRESSED_MAX",
    "RATIO_UNCOMPRESSED",
    "estimate",
    "largest_attachment",
    "should_compress",
]

#: The zlib level gpg compresses the signed part with (1: fast; 6 costs ~2x the CPU
#: for ~2% less on incompressible data).
COMPRESS_LEVEL = 1
_B64 = 4 / 3 * 78 / 76
_ARMOR = 4 / 3 * 66 / 64
RATIO_UNCOMPRESSED = _B64 * _ARMOR
#: base64 of random bytes deflated at level 1 (measured: 0.774), armored.
RATIO_COMPRESSED_MAX = 1.46
#: Headers, the manifest, the signature, the OpenPGP packets, the MIME framing.
OVERHEAD = 64 * 1024
SAMPLE = 1 << 20


def _sample_ratio(path: Path) -> float:
    """The armored size per input byte of ``path``, from its first :data:`SAMPLE` bytes."""
    with path.open("rb") as f:
        head = f.read(SAMPLE)
    if not head:
        return RATIO_COMPRESSED_MAX
    text = base64.encodebytes(head)
    packed = len(zlib.compress(text, COMPRESS_LEVEL))
    return min(RATIO_COMPRESSED_MAX, packed / len(head) * _ARMOR)


def estimate(body: int, attachments: Sequence[Path], *, compress: bool) -> int:
    """The expected size in bytes of the sealed, encrypted message."""
    if not compress:
        total = body + sum(p.stat().st_size for p in attachments)
        return math.ceil(total * RATIO_UNCOMPRESSED) + OVERHEAD
    size = body * RATIO_COMPRESSED_MAX
    for p in attachments:
        size += p.stat().st_size * _sample_ratio(p)
    return math.ceil(size) + OVERHEAD


def largest_attachment(limit: int, *, compress: bool) -> int:
    """How many bytes of attachments surely fit in a message of ``limit`` bytes."""
    ratio = RATIO_COMPRESSED_MAX if compress else RATIO_UNCOMPRESSED
    return max(0, int((limit - OVERHEAD) / ratio))


#: An attachment "compresses" when its sample shrinks below this share of the
#: incompressible case.
_COMPRESSIBLE = 0.9


def should_compress(body: int, attachments: Sequence[Path], limit: int | None) -> bool:
    """Whether gpg should compress: an attachment compresses, or only then does it fit."""
    if any(_sample_ratio(p) < RATIO_COMPRESSED_MAX * _COMPRESSIBLE for p in attachments):
        return True
    return limit is not None and estimate(body, attachments, compress=False) > limit
