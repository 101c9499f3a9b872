"""How the log stores an entry's RFC 3161 token (the ``tst`` column) in few bytes.

A token in the TSA's template layout (notary.rfc3161.compact) is stored as its
variable parts beside the number of its fixed parts, which are kept once in
``tst_templates``; any other token is stored whole. The column holds:

- ``01`` | template id (LEB128) | five fields, each one length byte and its
  bytes: the imprint's digest (empty: the digest is the entry's message
  SHA-256, read from the statement), the serial, genTime, the nonce (empty:
  none) and the signature; about 115 bytes instead of about 565;
- ``00`` | the token's bytes, whole;
- or the token's bytes, whole, as schema version 2 stored every token (a DER
  token starts with ``30``).

Before a compact form is written it is decoded again, with the fixed parts as
they will be read back from the database, and must give the token's exact
bytes; otherwise the token is stored whole. Template ids are never reused or
changed, so each process caches them; one added in a sequencing transaction
is cached only once that transaction has committed.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from notary.errors import StorageError
from notary.rfc3161.compact import FixedParts, TokenParts, rebuild, split
from notary.storage.sql.dialect import Cursor, Dialect

COMPACT, WHOLE = 0x01, 0x00


def _leb128(n: int) -> bytes:
    out = bytearray()
    while True:
        b, n = n & 0x7F, n >> 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _read_leb128(buf: bytes, pos: int) -> tuple[int, int]:
    n = shift = 0
    while True:
        b = buf[pos]
        pos += 1
        n |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return n, pos


def _whole(token: bytes) -> bytes:
    """A token stored whole: as is if it starts as DER does, else after a ``00``."""
    return token if token[:1] == b"\x30" else bytes((WHOLE,)) + token


def _fields(parts: TokenParts, sha256: bytes) -> bytes | None:
    digest = b"" if parts.digest == sha256 else parts.digest
    values = (digest, parts.serial, parts.gen_time, parts.nonce or b"", parts.signature)
    if any(len(v) > 0xFF for v in values):
        return None
    return b"".join(bytes((len(v),)) + v for v in values)


def _parts(buf: bytes, pos: int, sha256: bytes) -> TokenParts:
    values = []
    for _ in range(5):
        n = buf[pos]
        values.append(buf[pos + 1 : pos + 1 + n])
        pos += 1 + n
    if pos != len(buf):
        raise IndexError("trailing bytes")
    digest, serial, gen_time, nonce, signature = values
    return TokenParts(digest or sha256, serial, gen_time, nonce or None, signature)


class TokenColumn:
    """Encodes and decodes the ``tst`` column of one database (module docstring)."""

    def __init__(self, d: Dialect) -> None:
        self.d = d
        self._by_id: dict[int, FixedParts] = {}
        self._ids: dict[bytes, int] = {}
        self._lock = threading.Lock()

    def encode(self, cur: Cursor, token: bytes, sha256_hex: str, added: dict[bytes, int]) -> bytes:
        """The column value for ``token`` of an entry about ``sha256_hex``.

        ``cur`` is the sequencing transaction; templates it adds go into
        ``added`` (fixed bytes → id) for :meth:`committed` to cache.
        """
        sha256 = bytes.fromhex(sha256_hex)
        # The newest template first (a copy: readers may add templates meanwhile).
        for known_id, known in reversed(list(self._by_id.items())):
            parts = known.parts_of(token)  # checked: rebuilt from the stored form
            if parts is not None:
                known_fields = _fields(parts, sha256)
                if known_fields is not None:
                    return bytes((COMPACT,)) + _leb128(known_id) + known_fields
        found = split(token, checked=False)  # checked below, through the stored form
        fields = None if found is None else _fields(found[1], sha256)
        if found is None or fields is None:
            return _whole(token)
        fixed_bytes = found[0].to_bytes()
        tid = self._ids.get(fixed_bytes, added.get(fixed_bytes))
        if tid is None:
            tid = added[fixed_bytes] = self._template_id(cur, fixed_bytes)
        value = bytes((COMPACT,)) + _leb128(tid) + fields
        # The fixed parts as they are read back from the database.
        fixed = self._by_id.get(tid) or FixedParts.from_bytes(fixed_bytes)
        if self._rebuild(fixed, value, sha256) != token:
            return _whole(token)
        return value

    def committed(self, added: dict[bytes, int]) -> None:
        """Cache the templates a transaction added, once it has committed."""
        with self._lock:
            for fixed_bytes, tid in added.items():
                self._ids[fixed_bytes] = tid
                self._by_id[tid] = FixedParts.from_bytes(fixed_bytes)

    def decode(self, value: bytes, sha256_hex: str, cursor: Callable[[], Cursor]) -> bytes:
        """The exact token bytes of a ``tst`` column value (``cursor`` reads a template)."""
        if value[:1] == b"\x30":
            return value
        if value[:1] == bytes((WHOLE,)):
            return value[1:]
        try:
            tid, _ = _read_leb128(value, 1)
            fixed = self._by_id.get(tid) or self._load(cursor(), tid)
            return self._rebuild(fixed, value, bytes.fromhex(sha256_hex))
        except (IndexError, ValueError) as e:
            raise StorageError(f"a stored RFC 3161 token is damaged: {e}") from e

    @staticmethod
    def _rebuild(fixed: FixedParts, value: bytes, sha256: bytes) -> bytes:
        _, pos = _read_leb128(value, 1)
        return rebuild(fixed, _parts(value, pos, sha256))

    def _template_id(self, cur: Cursor, fixed_bytes: bytes) -> int:
        row = self.d.run(cur, "SELECT id FROM tst_templates WHERE fixed = ?", (fixed_bytes,))
        found = row.fetchone()
        if found is not None:
            return int(found[0])
        row = self.d.run(
            cur, "INSERT INTO tst_templates (fixed) VALUES (?) RETURNING id", (fixed_bytes,)
        )
        return int(row.fetchone()[0])

    def _load(self, cur: Cursor, tid: int) -> FixedParts:
        row = self.d.run(cur, "SELECT fixed FROM tst_templates WHERE id = ?", (tid,)).fetchone()
        if row is None:
            raise ValueError(f"token template {tid} is missing")
        fixed = FixedParts.from_bytes(bytes(row[0]))
        with self._lock:
            self._by_id[tid] = fixed
            self._ids[bytes(row[0])] = tid
        return fixed
