"""What a key file holds, read from its OpenPGP packet headers (RFC 9580 §4, §5.5, §6).

Before ``keys import`` hands a file to GnuPG it needs two facts GnuPG does not
report in a way a person can act on: whether the file holds secret keys
(Secret-Key and Secret-Subkey packets, tags 5 and 7) and the versions of its key
packets (a v6 key, RFC 9580, is refused by GnuPG 2.2 as "unknown version 6" and
then reported as no key at all). :func:`scan_keys` walks the top-level packets of
the binary or ASCII-armored (RFC 9580 §6.2) input without interpreting any key
material; it is a pure function with a cap on the work it does.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass

__all__ = ["KeyFileFacts", "scan_keys"]

#: Key packet tags (RFC 9580 §5.5.1): public key, public subkey, secret key, secret subkey.
_PUBLIC_TAGS = (6, 14)
_SECRET_TAGS = (5, 7)
#: At most this many packets are looked at (a keyring export has a few per key).
_MAX_PACKETS = 100_000

_ARMOR_RE = re.compile(
    rb"-----BEGIN PGP (?:PUBLIC|PRIVATE) KEY BLOCK-----\r?\n(.*?)-----END PGP ",
    re.DOTALL,
)


@dataclass(frozen=True)
class KeyFileFacts:
    """The key packets found: whether any is secret, and the key packet versions."""

    secret: bool
    versions: frozenset[int]
    readable: bool  # False when the packet structure could not be walked to its end


def _dearmor(data: bytes) -> list[bytes]:
    """The binary of each armored key block in ``data`` (armor headers and checksum
    dropped); ``[data]`` when it holds no armor."""
    blocks = _ARMOR_RE.findall(data)
    if not blocks:
        return [data]
    out = []
    for block in blocks:
        lines = block.replace(b"\r", b"").split(b"\n")
        if b"" in lines:  # armor header lines end at the first blank line
            head = lines.index(b"")
            if all(b": " in ln for ln in lines[:head]):
                lines = lines[head + 1 :]
        body = b"".join(ln.strip() for ln in lines if not ln.startswith(b"="))
        try:
            out.append(base64.b64decode(body, validate=False))
        except (binascii.Error, ValueError):
            out.append(b"")
    return out


def _packets(data: bytes) -> tuple[list[tuple[int, bytes]], bool]:
    """(tag, first body byte) of each top-level packet, and whether the walk ended cleanly."""
    found: list[tuple[int, bytes]] = []
    i = 0
    while i < len(data) and len(found) < _MAX_PACKETS:
        ctb = data[i]
        if not ctb & 0x80:
            return found, False
        if ctb & 0x40:  # OpenPGP (new) format, RFC 9580 §4.2.1
            tag = ctb & 0x3F
            if i + 1 >= len(data):
                return found, False
            o = data[i + 1]
            if o < 192:
                length, head = o, 2
            elif o < 224:
                if i + 2 >= len(data):
                    return found, False
                length, head = ((o - 192) << 8) + data[i + 2] + 192, 3
            elif o == 255:
                if i + 5 >= len(data):
                    return found, False
                length, head = int.from_bytes(data[i + 2 : i + 6], "big"), 6
            else:  # partial body lengths: never in key material (§4.2.1.4)
                return found, False
        else:  # legacy format, RFC 9580 §4.2.2
            tag = (ctb >> 2) & 0x0F
            kind = ctb & 0x03
            if kind == 3:
                return found, False
            size = 1 << kind
            if i + size >= len(data):
                return found, False
            length, head = int.from_bytes(data[i + 1 : i + 1 + size], "big"), 1 + size
        start = i + head
        found.append((tag, data[start : start + 1]))
        i = start + length
    return found, i == len(data)


def scan_keys(data: bytes) -> KeyFileFacts:
    """The :class:`KeyFileFacts` of ``data``, a binary or armored key file."""
    secret = b"-----BEGIN PGP PRIVATE KEY BLOCK-----" in data
    versions: set[int] = set()
    readable = True
    for block in _dearmor(data):
        packets, clean = _packets(block)
        readable = readable and clean
        for tag, first in packets:
            if tag in _SECRET_TAGS:
                secret = True
            if tag in _SECRET_TAGS + _PUBLIC_TAGS and first:
                versions.add(first[0])
    return KeyFileFacts(secret, frozenset(versions), readable)
