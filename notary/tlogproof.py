"""C2SP transparency-log proofs (c2sp.org/tlog-proof), version ``c2sp.org/tlog-proof@v1``.

::

    c2sp.org/tlog-proof@v1
    extra <base64 opaque data>          (optional, unauthenticated)
    index <decimal zero-based index>
    <base64 hash>                       (zero or more: the RFC 6962 inclusion proof,
    ...                                  from the leaf's sibling up to the root's child)
    <blank line>
    <the signed checkpoint, verbatim>

Stored with the file extension ``.tlog-proof``.
"""

from __future__ import annotations

import base64
import binascii
import functools
import re
from dataclasses import dataclass

from keys.encoding import Base64Error, b64decode_canonical
from notary import merkle
from notary.checkpoint import Checkpoint, open_checkpoint, parse_decimal, verify_opened
from notary.errors import MalformedError, VerificationError
from notary.note import MAX_NOTE_SIZE, Note, Verifier, parse_note

__all__ = ["HEADER", "MAX_PROOF_HASHES", "MAX_PROOF_SIZE", "TlogProof"]

HEADER = "c2sp.org/tlog-proof@v1"
#: An inclusion proof in a tree of at most 2**63 - 1 leaves has at most 63 hashes.
MAX_PROOF_HASHES = 63
#: Largest proof accepted: the checkpoint note cap plus the proof lines.
MAX_PROOF_SIZE = MAX_NOTE_SIZE + 64 * 1024
#: The canonical base64 of a 32-byte hash: 43 characters, the last with its two
#: unused low bits zero, and one "=".
_HASH_LINE = re.compile(r"[A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]=")


def _b64(s: str, what: str) -> bytes:
    try:
        return b64decode_canonical(s)
    except Base64Error as e:
        raise MalformedError(f"malformed tlog-proof: {e} in {what}") from None


#: Parsed signed checkpoints are remembered by their exact bytes (receipts of one log
#: share a few): :func:`parsed_checkpoint` is a pure function of the bytes; only
#: successes are kept (lru_cache does not keep exceptions), only notes up to
#: ``_MEMO_NOTE_SIZE`` bytes, at most ``_MEMO_ENTRIES`` of them.
_MEMO_ENTRIES = 1024
_MEMO_NOTE_SIZE = 4096


def _parse_checkpoint_note(note: bytes) -> tuple[Note, Checkpoint]:
    parsed = parse_note(note)
    return parsed, Checkpoint.from_text(parsed.text)


_parse_small_checkpoint_note = functools.lru_cache(maxsize=_MEMO_ENTRIES)(_parse_checkpoint_note)


def parsed_checkpoint(note: bytes) -> tuple[Note, Checkpoint]:
    """``parse_note(note)`` and the checkpoint its text holds, NOT verified; MalformedError.
    Remembered for small notes (a pure function of the bytes)."""
    note = bytes(note)
    if len(note) <= _MEMO_NOTE_SIZE:
        return _parse_small_checkpoint_note(note)
    return _parse_checkpoint_note(note)


@dataclass(frozen=True)
class TlogProof:
    """An entry's index, its inclusion proof and the signed checkpoint the proof is against."""

    index: int
    hashes: tuple[bytes, ...]
    checkpoint: bytes
    extra: bytes | None = None

    def to_bytes(self) -> bytes:
        """The tlog-proof text."""
        if self.index < 0:
            raise ValueError("index must not be negative")
        if any(len(h) != 32 for h in self.hashes):
            raise ValueError("proof hashes must be 32 bytes")
        lines = [HEADER]
        if self.extra is not None:
            lines.append("extra " + base64.b64encode(self.extra).decode("ascii"))
        lines.append(f"index {self.index}")
        lines.extend(base64.b64encode(h).decode("ascii") for h in self.hashes)
        head = "".join(line + "\n" for line in lines) + "\n"
        return head.encode("ascii") + self.checkpoint

    @classmethod
    def from_bytes(cls, data: bytes) -> TlogProof:
        """Parse a tlog-proof strictly; raise MalformedError.

        The checkpoint must parse as a signed note carrying a checkpoint that
        covers the index; its signature is checked only by :meth:`verify`.
        """
        if len(data) > MAX_PROOF_SIZE:
            raise MalformedError("malformed tlog-proof: too large")
        # The proof lines end at the first empty line; the signed checkpoint follows.
        blank = data.find(b"\n\n")
        if blank < 0:
            raise MalformedError("malformed tlog-proof: truncated")
        try:
            lines = data[:blank].decode("ascii").split("\n")
        except UnicodeDecodeError:
            raise MalformedError("malformed tlog-proof: non-ASCII proof line") from None
        if lines[0] != HEADER:
            raise MalformedError(f"malformed tlog-proof: first line must be {HEADER}")
        at = 1
        extra: bytes | None = None
        if at < len(lines) and lines[at].startswith("extra "):
            extra = _b64(lines[at][len("extra ") :], "extra")
            at += 1
        if at >= len(lines) or not lines[at].startswith("index "):
            raise MalformedError("malformed tlog-proof: missing index line")
        index = parse_decimal(lines[at][len("index ") :], "tlog-proof index")
        hash_lines = lines[at + 1 :]
        if len(hash_lines) > MAX_PROOF_HASHES:
            raise MalformedError("malformed tlog-proof: too many hashes")
        hashes: list[bytes] = []
        for cur in hash_lines:
            if _HASH_LINE.fullmatch(cur):  # canonical base64 of 32 bytes: no re-encoding
                hashes.append(binascii.a2b_base64(cur))
                continue
            h = _b64(cur, "proof hash")
            if len(h) != 32:
                raise MalformedError("malformed tlog-proof: proof hash is not 32 bytes")
            hashes.append(h)
        pos = blank + 2
        checkpoint = data[pos:]
        cp = parsed_checkpoint(checkpoint)[1]
        if index >= cp.size:
            raise MalformedError("malformed tlog-proof: index is beyond the checkpoint's tree")
        return cls(index, tuple(hashes), checkpoint, extra)

    def verify(self, entry: bytes, verifier: Verifier) -> Checkpoint:
        """Check ``entry`` is at ``index`` in the tree of the checkpoint signed by ``verifier``.

        Returns the verified checkpoint; raises VerificationError.
        """
        try:
            note, cp = parsed_checkpoint(self.checkpoint)
        except MalformedError:  # the full check, for its own verdict and message
            cp = open_checkpoint(self.checkpoint, verifier)
        else:
            cp = verify_opened(note, cp, verifier)
        if not 0 <= self.index < cp.size:
            raise VerificationError("tlog-proof index is beyond the checkpoint's tree")
        merkle.verify_inclusion(
            merkle.leaf_hash(entry), self.index, cp.size, list(self.hashes), cp.root_hash
        )
        return cp
