"""A monitor for a tiled log (c2sp.org/tlog-tiles, c2sp.org/tlog-checkpoint).

:func:`follow` fetches a log's checkpoint, verifies its signature, and checks
that the tree it commits to extends the last tree this monitor verified: the
RFC 9162 consistency proof between the two is built from the log's public
hash tiles (:class:`notary.tiles.TileHashReader`) and verified against both
signed roots. Only then is the new checkpoint kept as the state. A log that
misbehaves raises :class:`MonitorError` naming both checkpoints:

- ``fork``: the same tree size with a different root;
- ``rollback``: a smaller tree than one it signed before;
- ``inconsistent``: a larger tree that does not extend the old one (a fork
  that grew), or tiles that do not reproduce its own checkpoint's root;
- ``bad_signature``: a checkpoint that does not verify under the log's key.

The first checkpoint seen is trusted once its tiles reproduce its root (trust
on first use; pass a state taken from elsewhere to anchor it).

:class:`StateStore` keeps one JSON file per log origin in a directory,
replaced atomically (written, fsynced, renamed, the directory fsynced), so a
crash leaves the old state or the new one, never a torn file. Conflicting
checkpoints are kept beside it as evidence: both are signed by the log.

:class:`HttpLog` reads a log over HTTP (httpx); the checks do no I/O of their
own and take any :class:`Log`.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from keys.errors import Error, NotFoundError, TemporaryError
from notary.checkpoint import Checkpoint, open_checkpoint
from notary.durable import atomic_write
from notary.errors import StorageError, VerificationError
from notary.merkle import prove_consistency, tree_hash, verify_consistency
from notary.note import Verifier
from notary.tiles import Tile, TileHashReader

if TYPE_CHECKING:
    import httpx

__all__ = [
    "HttpLog",
    "Log",
    "LogState",
    "MonitorError",
    "MonitorResult",
    "StateStore",
    "follow",
]

MAX_CHECKPOINT_BYTES = 64 * 1024
STATE_VERSION = 1


class Log(Protocol):
    """A tiled log as a monitor reads it."""

    def checkpoint(self) -> bytes:
        """The log's current signed checkpoint note."""
        ...

    def tiles(self, tiles: Sequence[Tile]) -> list[bytes]:
        """The bytes of each tile (untrusted)."""
        ...


@dataclass(frozen=True)
class LogState:
    """The last checkpoint a monitor verified for one log."""

    origin: str
    vkey: str
    size: int
    root_hash: bytes
    note: bytes
    verified: str  # RFC 3339 UTC

    def to_json(self) -> dict[str, Any]:
        return {
            "v": STATE_VERSION,
            "origin": self.origin,
            "vkey": self.vkey,
            "size": self.size,
            "root": base64.b64encode(self.root_hash).decode(),
            "checkpoint": self.note.decode("utf-8"),
            "verified": self.verified,
        }

    @classmethod
    def from_json(cls, obj: Any, verifier: Verifier) -> LogState:
        """Read a state file's object; its checkpoint is verified again under ``verifier``."""
        if not isinstance(obj, dict) or obj.get("v") != STATE_VERSION:
            raise ValueError("not a monitor state (version 1)")
        note = str(obj["checkpoint"]).encode("utf-8")
        cp = open_checkpoint(note, verifier)
        return cls(cp.origin, str(obj["vkey"]), cp.size, cp.root_hash, note, str(obj["verified"]))


def _summary(cp: Checkpoint | LogState, note: bytes) -> dict[str, Any]:
    return {
        "size": cp.size,
        "root": base64.b64encode(cp.root_hash).decode(),
        "checkpoint": note.decode("utf-8", "replace"),
    }


class MonitorError(VerificationError):
    """The log misbehaved: ``kind`` is fork, rollback, inconsistent or bad_signature.

    ``old`` and ``new`` describe the two checkpoints (``size``, ``root``, the
    signed ``checkpoint`` note); ``old`` is None for a bad signature on first
    contact. ``evidence`` is where the conflicting checkpoint was kept, if it was.
    """

    def __init__(
        self,
        kind: str,
        message: str,
        *,
        old: dict[str, Any] | None,
        new: dict[str, Any] | None,
        hint: str | None = None,
    ) -> None:
        super().__init__(message, hint=hint)
        self.kind, self.old, self.new = kind, old, new
        self.evidence: Path | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "error": self.kind,
            "message": self.message,
            "old": self.old,
            "new": self.new,
            "evidence": str(self.evidence) if self.evidence else None,
        }


@dataclass(frozen=True)
class MonitorResult:
    """What one :func:`follow` found: ``first`` (no state before), ``unchanged`` or ``grew``."""

    status: str
    origin: str
    old: LogState | None
    new: LogState

    def to_json(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "origin": self.origin,
            "old": None if self.old is None else _summary(self.old, self.old.note),
            "new": _summary(self.new, self.new.note),
        }


class StateStore:
    """One state file per log origin in ``directory`` (0700), replaced atomically."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def _name(self, origin: str) -> str:
        safe = re.sub(r"[^A-Za-z0-9._-]", "_", origin)[:80]
        return f"{safe}-{hashlib.sha256(origin.encode()).hexdigest()[:12]}"

    def path(self, origin: str) -> Path:
        return self.directory / f"{self._name(origin)}.json"

    def load(self, origin: str, verifier: Verifier) -> LogState | None:
        """The state kept for ``origin``, or None; a damaged file is an error, never ignored."""
        path = self.path(origin)
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            return None
        try:
            state = LogState.from_json(json.loads(raw), verifier)
        except (ValueError, KeyError, TypeError, VerificationError) as e:
            raise Error(
                f"the monitor state {path} is damaged or not for this key: {e}",
                hint="restore it from a backup, or move it away to start over (trust on first use)",
            ) from None
        if state.origin != origin or state.vkey != verifier.vkey():
            raise Error(
                f"the monitor state {path} is for another log or key",
                hint="use another --state directory for a new key",
            )
        return state

    def save(self, state: LogState) -> Path:
        """Write the state durably: temporary file, fsync, rename, fsync of the directory."""
        data = json.dumps(state.to_json(), indent=2).encode() + b"\n"
        return self._write(self.path(state.origin), data)

    def keep_evidence(self, origin: str, error: MonitorError) -> Path:
        """Keep both checkpoints of a conflict beside the state (they are the log's signatures)."""
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
        path = self.directory / f"{self._name(origin)}.{error.kind}-{stamp}.json"
        return self._write(path, json.dumps(error.to_json(), indent=2).encode() + b"\n")

    def _write(self, path: Path, data: bytes) -> Path:
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        atomic_write(path, data)
        return path


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _check_tiles(cp: Checkpoint, note: bytes, log: Log, old: LogState | None) -> TileHashReader:
    """The new tree's tiles, once they reproduce its signed root."""
    tiles = TileHashReader(cp.size, log.tiles)
    try:
        root = tree_hash(cp.size, tiles)
    except StorageError as e:
        raise MonitorError(
            "inconsistent",
            f"the log's tiles for its checkpoint of size {cp.size} are unusable: {e.message}",
            old=None if old is None else _summary(old, old.note),
            new=_summary(cp, note),
        ) from None
    if root != cp.root_hash:
        raise MonitorError(
            "inconsistent",
            f"the log's tiles do not reproduce the root of its own checkpoint of size {cp.size}",
            old=None if old is None else _summary(old, old.note),
            new=_summary(cp, note),
        )
    return tiles


def follow(log: Log, verifier: Verifier, store: StateStore) -> MonitorResult:
    """Check the log's current checkpoint against the kept state; keep it if it extends it.

    Raises :class:`MonitorError` on misbehaviour (after keeping the evidence),
    :class:`~keys.errors.TemporaryError` when the log cannot be read.
    """
    origin = verifier.name
    old = store.load(origin, verifier)
    note = log.checkpoint()
    try:
        cp = open_checkpoint(note, verifier)
    except VerificationError as e:
        raise MonitorError(
            "bad_signature",
            f"the log's checkpoint does not verify under {verifier.vkey()}: {e.message}",
            old=None if old is None else _summary(old, old.note),
            new={"checkpoint": note.decode("utf-8", "replace")},
            hint="is --vkey the log's key? a valid log never serves this",
        ) from None
    try:
        result = _compare(old, cp, note, log, verifier)
    except MonitorError as e:
        e.evidence = store.keep_evidence(origin, e)
        raise
    if result.status != "unchanged":
        store.save(result.new)
    return result


def _compare(
    old: LogState | None, cp: Checkpoint, note: bytes, log: Log, verifier: Verifier
) -> MonitorResult:
    new = LogState(cp.origin, verifier.vkey(), cp.size, cp.root_hash, note, _now())
    if old is None:
        _check_tiles(cp, note, log, None)
        return MonitorResult("first", cp.origin, None, new)
    was, now = _summary(old, old.note), _summary(cp, note)
    if cp.size < old.size:
        raise MonitorError(
            "rollback",
            f"rollback: the log now shows a tree of size {cp.size}, "
            f"after signing one of size {old.size}",
            old=was,
            new=now,
        )
    if cp.size == old.size:
        if cp.root_hash != old.root_hash:
            raise MonitorError(
                "fork",
                f"fork: two checkpoints of size {cp.size} with different roots "
                f"({was['root']} and {now['root']})",
                old=was,
                new=now,
            )
        return MonitorResult("unchanged", cp.origin, old, old)
    tiles = _check_tiles(cp, note, log, old)
    try:
        proof = prove_consistency(old.size, cp.size, tiles) if old.size else []
        if old.size:
            verify_consistency(old.size, cp.size, proof, old.root_hash, cp.root_hash)
    except (VerificationError, StorageError) as e:
        raise MonitorError(
            "inconsistent",
            f"fork: the tree of size {cp.size} does not extend the one of size {old.size} "
            f"the log signed before ({e.message})",
            old=was,
            new=now,
        ) from None
    return MonitorResult("grew", cp.origin, old, new)


class HttpLog:
    """A log's ``/checkpoint`` and ``/tile/...`` at ``url``, read with httpx (bounded).

    Through ``client`` when given (its owner closes it), else through a client of its own.
    """

    def __init__(
        self, url: str, *, timeout: float = 30.0, client: httpx.Client | None = None
    ) -> None:
        import httpx

        self.url = url.rstrip("/")
        self._own = client is None
        self._client = client or httpx.Client(timeout=timeout, follow_redirects=False)

    def __enter__(self) -> HttpLog:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._own:
            self._client.close()

    def _get(self, path: str, limit: int) -> bytes:
        import httpx

        url = f"{self.url}/{path}"
        try:
            with self._client.stream("GET", url) as r:
                if r.status_code == 404:
                    raise NotFoundError(f"{url} answered 404", hint="is the URL a tiled log?")
                if r.status_code != 200:
                    raise TemporaryError(f"{url} answered HTTP {r.status_code}")
                body = b""
                for chunk in r.iter_bytes():
                    body += chunk
                    if len(body) > limit:
                        raise VerificationError(f"{url} answered more than {limit} bytes")
                return body
        except httpx.HTTPError as e:
            raise TemporaryError(
                f"cannot read {url}: {e}", hint="is the log up? run the monitor again later"
            ) from None

    def checkpoint(self) -> bytes:
        return self._get("checkpoint", MAX_CHECKPOINT_BYTES)

    def tiles(self, tiles: Sequence[Tile]) -> list[bytes]:
        out = []
        for t in tiles:
            try:
                out.append(self._get(t.path(), t.width * 32))
            except NotFoundError:
                raise TemporaryError(
                    f"the log does not serve {t.path()}, which its checkpoint needs",
                    hint="run the monitor again later; a log that keeps it back cannot be audited",
                ) from None
        return out
