"""OpenPGP ASCII armor pieces: the CRC-24 checksum line (RFC 9580 §6.1, RFC 4880 §6.1).

gpg's own armor writer costs about as much CPU as the encryption itself
(1.1 s for 135 MB here), so certmail's send pipeline lets gpg write binary
and armors it itself: GNU ``base64`` for the body, and the CRC-24 that
GnuPG 2.2 still insists on from libgcrypt's ``GCRY_MD_CRC24_RFC2440`` (the
library gpg itself uses, carry-less-multiply accelerated), loaded with
ctypes. Where libgcrypt cannot be loaded, :func:`fast_crc24` is False and
callers let gpg armor. :func:`crc24_python` is the reference (table-driven) that
the library is checked against when it is loaded, and by the tests.
"""

from __future__ import annotations

import base64
import ctypes
import ctypes.util
import functools
from typing import Any

CRC24_INIT = 0xB704CE
CRC24_POLY = 0x1864CFB
BEGIN_MESSAGE = b"-----BEGIN PGP MESSAGE-----"
END_MESSAGE = b"-----END PGP MESSAGE-----"
_GCRY_MD_CRC24_RFC2440 = 304


def _table() -> list[int]:
    table = []
    for i in range(256):
        crc = i << 16
        for _ in range(8):
            crc <<= 1
            if crc & 0x1000000:
                crc ^= CRC24_POLY
        table.append(crc & 0xFFFFFF)
    return table


_TABLE = _table()


def crc24_python(data: bytes, crc: int = CRC24_INIT) -> int:
    """CRC-24 of ``data`` continuing from ``crc`` (RFC 4880 §6.1), in pure Python."""
    t = _TABLE
    for b in data:
        crc = ((crc << 8) & 0xFFFFFF) ^ t[(crc >> 16) ^ b]
    return crc


@functools.cache
def _libgcrypt() -> Any:
    """libgcrypt loaded and initialised (and checked against the reference), or None."""
    try:
        try:
            lib = ctypes.CDLL("libgcrypt.so.20")  # the ABI gnupg 2.2 links against
        except OSError:  # find_library runs ldconfig: only when the soname fails
            lib = ctypes.CDLL(ctypes.util.find_library("gcrypt") or "libgcrypt.so")
        lib.gcry_check_version.restype = ctypes.c_char_p
        lib.gcry_check_version.argtypes = [ctypes.c_char_p]
        lib.gcry_md_open.argtypes = [ctypes.POINTER(ctypes.c_void_p), ctypes.c_int, ctypes.c_uint]
        lib.gcry_md_open.restype = ctypes.c_uint
        lib.gcry_md_write.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t]
        lib.gcry_md_write.restype = None
        lib.gcry_md_read.argtypes = [ctypes.c_void_p, ctypes.c_int]
        lib.gcry_md_read.restype = ctypes.POINTER(ctypes.c_ubyte)
        lib.gcry_md_close.argtypes = [ctypes.c_void_p]
        lib.gcry_md_close.restype = None
        if lib.gcry_check_version(None) is None:
            return None
        probe = _GcryptCrc24(lib)
        probe.update(b"certmail")
        return lib if probe.value() == crc24_python(b"certmail") else None
    except (OSError, AttributeError):
        return None


class _GcryptCrc24:
    def __init__(self, lib: Any) -> None:
        self.lib = lib
        self.hd = ctypes.c_void_p()
        if lib.gcry_md_open(ctypes.byref(self.hd), _GCRY_MD_CRC24_RFC2440, 0) != 0:
            raise OSError("gcry_md_open(CRC24) failed")

    def update(self, data: bytes) -> None:
        self.lib.gcry_md_write(self.hd, data, len(data))  # ctypes releases the GIL

    def value(self) -> int:
        p = self.lib.gcry_md_read(self.hd, _GCRY_MD_CRC24_RFC2440)
        v = int.from_bytes(bytes(p[:3]), "big")
        self.lib.gcry_md_close(self.hd)
        self.hd = ctypes.c_void_p()
        return v

    def __del__(self) -> None:
        if self.hd:
            self.lib.gcry_md_close(self.hd)


def fast_crc24() -> bool:
    """Whether :class:`Crc24` runs at memory speed (libgcrypt could be loaded)."""
    return _libgcrypt() is not None


class Crc24:
    """A running CRC-24 (RFC 4880 §6.1) by libgcrypt; only where :func:`fast_crc24`."""

    def __init__(self) -> None:
        lib = _libgcrypt()
        if lib is None:
            raise OSError("libgcrypt is not available")
        self._g: _GcryptCrc24 | None = _GcryptCrc24(lib)
        self._value: int | None = None

    def update(self, data: bytes) -> None:
        if self._g is None:
            raise ValueError("CRC-24 already finished")
        self._g.update(data)

    def value(self) -> int:
        if self._g is not None:
            self._value, self._g = self._g.value(), None
        assert self._value is not None
        return self._value

    def checksum_line(self) -> bytes:
        """The armor checksum line, ``=`` and four base64 characters, without line end."""
        return b"=" + base64.b64encode(self.value().to_bytes(3, "big"))
