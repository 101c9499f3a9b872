"""The frames the workers of one notary exchange with their shared sequencer.

Pure (no I/O): :mod:`notary.sequencer_share` sends them over a Unix socket in
the notary directory. A frame is a 9-byte header, ``length`` (u32, of the
payload), ``kind`` (u8) and ``request`` (u32, chosen by the follower, echoed
in the answer), then the payload:

========  =====================  ==================================================
kind      from                   payload
========  =====================  ==================================================
SUBMIT    follower               the submissions, JSON ``[[event, sha256,
                                 message_id, account_id, extra, timestamp], ...]``
RECEIPTS  leader                 the receipts in order (binary, below)
ERROR     leader                 JSON ``{"kind", "message", "hint", "fatal"}``
COMMITTED leader (request 0)     the log's new size (u64), after each batch
========  =====================  ==================================================

RECEIPTS: the distinct checkpoint notes (u16 count, each u32 length + bytes),
then u32 count and per receipt: index (u64), its note's number (u16), the
proof's hash count (u8) and hashes (32 bytes each), the entry (u32 length +
bytes), the RFC 3161 token and the proof's ``extra`` (u32 length + bytes, or
``0xFFFFFFFF`` for none). A batch's receipts share one note, sent once.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Sequence
from typing import Any

from keys.errors import Error, MalformedError
from notary.errors import NotaryError, SequencerError, StorageError
from notary.receipt import Receipt
from notary.sequencer import Submission
from notary.tlogproof import TlogProof

__all__ = [
    "COMMITTED",
    "ERROR",
    "HEADER",
    "MAX_FRAME",
    "RECEIPTS",
    "SUBMIT",
    "decode_committed",
    "decode_error",
    "decode_receipts",
    "decode_submissions",
    "encode_committed",
    "encode_error",
    "encode_receipts",
    "encode_submissions",
    "frame",
]

SUBMIT, RECEIPTS, ERROR, COMMITTED = 1, 2, 3, 4
HEADER = struct.Struct(">IBI")
#: Largest payload either side accepts (a full batch of 16,384 receipts fits).
MAX_FRAME = 1 << 28

_NONE = 0xFFFFFFFF
_U16, _U32, _U64 = struct.Struct(">H"), struct.Struct(">I"), struct.Struct(">Q")
_RECEIPT = struct.Struct(">QHB")

#: The errors sent by name and raised again on the follower; any other is a RuntimeError.
_ERRORS: dict[str, type[Exception]] = {
    "SequencerError": SequencerError,
    "StorageError": StorageError,
    "NotaryError": NotaryError,
    "MalformedError": MalformedError,
    "Error": Error,
    "ValueError": ValueError,
}


def frame(kind: int, request: int, payload: bytes) -> bytes:
    """One frame: the header, then ``payload``."""
    return HEADER.pack(len(payload), kind, request) + payload


def encode_submissions(items: Sequence[Submission]) -> bytes:
    rows = [
        [s.event, s.sha256, s.message_id, s.account_id, dict(s.extra), s.timestamp] for s in items
    ]
    return json.dumps(rows, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def decode_submissions(payload: bytes) -> list[Submission]:
    try:
        rows = json.loads(payload)
        return [
            Submission(str(e), str(h), str(m), a, dict(x), bool(t)) for e, h, m, a, x, t in rows
        ]
    except (ValueError, TypeError) as e:
        raise MalformedError(f"malformed submissions from a worker: {e}") from None


def _blob(value: bytes | None) -> bytes:
    return _U32.pack(_NONE) if value is None else _U32.pack(len(value)) + value


def encode_receipts(receipts: Sequence[Receipt]) -> bytes:
    notes: dict[bytes, int] = {}
    body: list[bytes] = [_U32.pack(len(receipts))]
    for r in receipts:
        p = r.proof
        number = notes.setdefault(p.checkpoint, len(notes))
        body += [_RECEIPT.pack(p.index, number, len(p.hashes)), *p.hashes]
        body += [_blob(r.entry), _blob(r.tst), _blob(p.extra)]
    head = [_U16.pack(len(notes)), *(_blob(n) for n in notes)]
    return b"".join(head + body)


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data, self.at = memoryview(data), 0

    def take(self, n: int) -> bytes:
        if self.at + n > len(self.data):
            raise MalformedError("truncated receipts from the sequencer")
        self.at += n
        return bytes(self.data[self.at - n : self.at])

    def unpack(self, s: struct.Struct) -> tuple[Any, ...]:
        return s.unpack(self.take(s.size))

    def blob(self) -> bytes | None:
        (n,) = self.unpack(_U32)
        return None if n == _NONE else self.take(n)


def decode_receipts(payload: bytes) -> list[Receipt]:
    r = _Reader(payload)
    (n_notes,) = r.unpack(_U16)
    notes = [r.blob() or b"" for _ in range(n_notes)]
    (count,) = r.unpack(_U32)
    out = []
    for _ in range(count):
        index, number, n_hashes = r.unpack(_RECEIPT)
        hashes = tuple(r.take(32) for _ in range(n_hashes))
        entry, tst, extra = r.blob() or b"", r.blob(), r.blob()
        out.append(Receipt(entry, TlogProof(index, hashes, notes[number], extra), tst))
    if r.at != len(payload):
        raise MalformedError("trailing bytes after the receipts from the sequencer")
    return out


def encode_error(e: BaseException, *, fatal: bool) -> bytes:
    """The error a batch failed with, by class name (see :data:`_ERRORS`)."""
    kind = next(
        (c.__name__ for c in type(e).__mro__ if _ERRORS.get(c.__name__) is c), type(e).__name__
    )
    message = e.message if isinstance(e, Error) else str(e)
    hint = e.hint if isinstance(e, Error) else None
    doc = {"kind": kind, "message": message, "hint": hint, "fatal": fatal}
    return json.dumps(doc, separators=(",", ":")).encode("utf-8")


def decode_error(payload: bytes) -> tuple[Exception, bool]:
    """The exception a local sequencer would have raised, and whether it is fatal."""
    doc = json.loads(payload)
    cls = _ERRORS.get(doc["kind"])
    message = str(doc["message"])
    if cls is None:
        return RuntimeError(f"{doc['kind']}: {message}"), bool(doc["fatal"])
    if issubclass(cls, Error):
        return cls(message, hint=doc.get("hint")), bool(doc["fatal"])
    return cls(message), bool(doc["fatal"])


def encode_committed(size: int) -> bytes:
    return _U64.pack(size)


def decode_committed(payload: bytes) -> int:
    (size,) = _U64.unpack(payload)
    return int(size)
