"""The notary asking its witnesses to cosign (c2sp.org/tlog-witness, the log's side).

The witnesses a notary uses and the quorum it wants are kept in the notary
directory's ``witnesses.toml`` (``certmail notary witnesses add URL VKEY``).
:class:`Cosigning` runs beside the log, never in its way: a background thread
that, whenever the latest committed checkpoint changes, sends it to every
witness with a consistency proof from the size that witness holds
(:func:`notary.witness_client.request_cosignature`), and keeps the newest
checkpoint that a quorum cosigned (``cosigned-checkpoint`` in the directory,
replaced atomically). A witness down or refusing delays cosigning, never the
log: the sequencer does not wait for witnesses. One process of a notary
directory cosigns (``.cosigning.lock``; ``serve --workers N``): a witness is
asked about each checkpoint once.

``GET /checkpoint`` (notary/tiles_api.py) serves the latest checkpoint with the
cosignatures gathered for it so far; ``GET /checkpoint/cosigned`` the newest
one that reached the quorum.
"""

from __future__ import annotations

import json
import logging
import threading
import tomllib
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from keys.errors import ConflictError, Error, NotFoundError
from notary.cosignature import CosignatureVerifier, verify_cosignatures
from notary.durable import atomic_write
from notary.errors import MalformedError
from notary.leader import LeaderJob

__all__ = [
    "Cosigning",
    "WitnessEntry",
    "add_witness",
    "cosigned_receipts",
    "load_witnesses",
    "remove_witness",
]

if TYPE_CHECKING:
    from notary.checkpoint import Checkpoint
    from notary.receipt import Receipt
    from notary.witness_client import Post

CONFIG = "witnesses.toml"
COSIGNED = "cosigned-checkpoint"
#: The newest checkpoint with the cosignatures gathered for it so far (any number).
GATHERED = "cosignatures"
LOCK = ".cosigning.lock"
log = logging.getLogger("certmail.notary.cosigning")


@dataclass(frozen=True)
class WitnessEntry:
    """A witness the notary asks: where it listens and its cosigner key."""

    url: str
    vkey: str

    @property
    def verifier(self) -> CosignatureVerifier:
        return CosignatureVerifier.from_vkey(self.vkey)


def load_witnesses(directory: Path) -> tuple[list[WitnessEntry], int]:
    """The witnesses and quorum of a notary directory (none, 0 without the file)."""
    try:
        cfg = tomllib.loads((directory / CONFIG).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return [], 0
    except tomllib.TOMLDecodeError as e:
        raise Error(f"{directory / CONFIG} is not valid TOML: {e}") from None
    entries = [WitnessEntry(str(w["url"]), str(w["vkey"])) for w in cfg.get("witness", [])]
    return entries, int(cfg.get("quorum", len(entries)))


def _save(directory: Path, entries: list[WitnessEntry], quorum: int) -> None:
    if not 0 <= quorum <= len(entries):
        raise Error(f"a quorum of {quorum} with {len(entries)} witness(es) can never be met")
    lines = ["# witnesses this notary asks to cosign (docs/witness.md)", f"quorum = {quorum}"]
    for e in entries:
        lines += ["", "[[witness]]", f"url = {json.dumps(e.url)}", f"vkey = {json.dumps(e.vkey)}"]
    atomic_write(directory / CONFIG, ("\n".join(lines) + "\n").encode())


def add_witness(directory: Path, url: str, vkey: str, quorum: int | None) -> WitnessEntry:
    """Add a witness (and set the quorum: default, every witness)."""
    try:
        v = CosignatureVerifier.from_vkey(vkey)
    except MalformedError as e:
        raise Error(f"not a witness key: {e}", hint="the witness's witness.vkey") from None
    if not url.startswith(("http://", "https://")):
        raise Error(f"the witness URL must be http:// or https://, got {url!r}")
    entries, _ = load_witnesses(directory)
    if any(e.verifier.name == v.name for e in entries):
        raise ConflictError(f"witness {v.name} is configured already")
    entries.append(WitnessEntry(url.rstrip("/"), v.vkey()))
    _save(directory, entries, len(entries) if quorum is None else quorum)
    return entries[-1]


def remove_witness(directory: Path, name: str, quorum: int | None) -> None:
    """Remove the witness named ``name`` (its key name or URL)."""
    entries, old_quorum = load_witnesses(directory)
    kept = [e for e in entries if name not in (e.verifier.name, e.url)]
    if len(kept) == len(entries):
        raise NotFoundError(f"no witness {name!r}", hint="certmail notary witnesses list")
    _save(directory, kept, min(old_quorum, len(kept)) if quorum is None else quorum)


class Cosigning(LeaderJob):
    """Gathers cosignatures on the log's checkpoints in a background thread.

    One process of a notary directory cosigns at a time (an exclusive lock on
    ``.cosigning.lock``: with ``serve --workers N`` every worker starts the
    thread, one asks the witnesses, the others wait to take over if it dies).
    What it gathered reaches the other workers through the directory: the
    newest checkpoint with its cosignatures so far (``cosignatures``) and the
    newest a quorum cosigned (``cosigned-checkpoint``), both replaced atomically.
    """

    def __init__(
        self,
        directory: Path,
        latest: Callable[[], Any],
        consistency: Callable[[int, int], list[bytes]],
        *,
        post: Post | None = None,
        interval: float = 1.0,
    ) -> None:
        self.directory = directory
        self.witnesses, self.quorum = load_witnesses(directory)
        self._latest, self._consistency = latest, consistency
        super().__init__(directory / LOCK, interval, "cosigning")
        self._post = post or self._httpx_post
        self._held: dict[str, int] = {}  # witness name -> the size it is believed to hold
        self._lines: dict[bytes, dict[str, bytes]] = {}  # note -> witness name -> line
        self._lock = threading.Lock()
        self._files: dict[str, tuple[tuple[int, int, int], bytes | None]] = {}

    @property
    def cosigned(self) -> bytes | None:
        """The newest checkpoint a quorum cosigned (``cosigned-checkpoint``), or None."""
        return self._read(COSIGNED)

    def start(self) -> None:
        if self.witnesses:
            self.start_thread()

    def _httpx_post(self, url: str, body: bytes) -> tuple[int, str, bytes]:
        """POST through the job's one HTTP client."""
        from notary.witness_client import http_post

        return http_post(self.http(), url, body)

    def with_cosignatures(self, note: bytes) -> bytes:
        """``note`` with every cosignature gathered for it so far (by any worker)."""
        with self._lock:
            mine = self._lines.get(note)
        if mine is not None:
            return note + b"".join(mine.values())
        shared = self._read(GATHERED)
        if shared is not None and shared.startswith(note):
            return shared
        return note

    def _read(self, name: str) -> bytes | None:
        """A file of the directory, read again only when it was replaced."""
        path = self.directory / name
        try:
            st = path.stat()
        except FileNotFoundError:
            return None
        stamp = (st.st_ino, st.st_mtime_ns, st.st_size)
        with self._lock:
            seen = self._files.get(name)
        if seen is not None and seen[0] == stamp:
            return seen[1]
        try:
            data: bytes | None = path.read_bytes()
        except FileNotFoundError:
            data = None
        with self._lock:
            self._files[name] = (stamp, data)
        return data

    def step(self) -> None:
        cp = self._latest()
        if cp is not None and cp.size > 0:
            self.round(cp.note, cp.size)

    def round(self, note: bytes, size: int) -> None:
        """Ask each witness that has not cosigned ``note`` yet; keep it once a quorum has."""
        from notary.witness_client import request_cosignature

        with self._lock:
            got = dict(self._lines.get(note, {}))
        before = len(got)
        for w in self.witnesses:
            v = w.verifier
            if v.name in got:
                continue
            try:
                cosigned, _ = request_cosignature(
                    w.url, note, self._consistency, v, self._post, old=self._held.get(v.name, 0)
                )
            except Error as e:
                log.warning("witness %s did not cosign: %s", v.name, e.message)
                continue
            got[v.name] = cosigned[len(note) :]
            self._held[v.name] = size
        with self._lock:
            self._lines = {note: got}  # only the newest checkpoint's cosignatures are kept
        full = self.with_cosignatures(note)
        if len(got) > before:  # for GET /checkpoint in the other workers
            atomic_write(self.directory / GATHERED, full)
        if len(got) >= self.quorum and self.cosigned != full:
            verify_cosignatures(full, [w.verifier for w in self.witnesses], self.quorum)
            atomic_write(self.directory / COSIGNED, full)


def cosigned_receipts(directory: Path, receipts: list[Receipt], storage: Any) -> list[Receipt]:
    """``receipts`` proved against the newest checkpoint a quorum cosigned
    (``cosigned-checkpoint``), with its cosignature lines after the notary's own
    signature, where that checkpoint covers the entry; the others as they are.

    Old verifiers verify the notary's signature and ignore the other lines
    (C2SP signed-note); ``proof export`` puts the cosigned note in the bundle.
    The proofs are remembered (:func:`_inclusion`): a receipt asked for again
    against the same cosigned checkpoint is not proved again.
    """
    from notary.receipt import Receipt
    from notary.tlogproof import TlogProof, parsed_checkpoint

    try:
        note = (directory / COSIGNED).read_bytes()
    except FileNotFoundError:
        return receipts
    cp = parsed_checkpoint(note)[1]
    out = []
    for r in receipts:
        if r.index >= cp.size:
            out.append(r)
            continue
        same = r.checkpoint().size == cp.size
        hashes = r.proof.hashes if same else _inclusion(cp, r.index, storage)
        out.append(Receipt(r.entry, TlogProof(r.index, hashes, note, r.proof.extra), r.tst))
    return out


#: Inclusion proofs kept by :func:`_inclusion` (a few hundred KB at most).
PROOF_CACHE = 4096
# Not functools.lru_cache: it keys on every argument, and the storage the proof is read
# through must not be in the key. A module-level lru_cache would hold a strong reference
# to each storage object (and its database connections) in its keys until evicted, long
# after its service closed; and the same tree read through another storage object of the
# same log would be proved again. Keyed on what names the tree (origin, size, root hash)
# and the index, a proof is the same whatever read it. Nothing to invalidate: the log is
# append-only, so only the least recently used entry is dropped, as lru_cache would.
_proofs: OrderedDict[tuple[str, int, bytes, int], tuple[bytes, ...]] = OrderedDict()
_proofs_lock = threading.Lock()


def _inclusion(cp: Checkpoint, index: int, storage: Any) -> tuple[bytes, ...]:
    """The inclusion proof of entry ``index`` against the tree of ``cp``, remembered.

    Safe to keep: the log is append-only, so the proof of an entry against the
    tree of one size never changes. The key is (origin, size, root hash, index):
    the root hash names the tree, so two logs in one process never share a proof.
    """
    from notary.merkle import prove_inclusion

    key = (cp.origin, cp.size, cp.root_hash, index)
    with _proofs_lock:
        hit = _proofs.get(key)
        if hit is not None:
            _proofs.move_to_end(key)
            return hit
    hashes = tuple(prove_inclusion(cp.size, index, storage))
    with _proofs_lock:
        _proofs[key] = hashes
        while len(_proofs) > PROOF_CACHE:
            _proofs.popitem(last=False)
    return hashes
