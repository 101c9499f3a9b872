"""A transparency-log witness (c2sp.org/tlog-witness) cosigning with cosignature/v1.

:class:`Witness` answers ``add-checkpoint``: it verifies the log's signature on
the checkpoint, that the old size is the size it cosigned last for that origin,
and the RFC 9162 consistency proof from that tree to the new one; only then
does it record the new checkpoint — durably, before it answers — and cosign it.
It never cosigns a checkpoint inconsistent with one it cosigned before, and
never a smaller tree.

The per-log state is one SQLite database (WAL, ``synchronous=FULL``): the
check of the old size and the update are one ``BEGIN IMMEDIATE`` transaction,
so two requests racing cannot roll the state back, and a SIGKILL at any
moment leaves either the old record or the new one (a cosignature is only
handed out after its record is committed). Refused checkpoints that carry a
valid log signature are kept in a ``refused`` table: they may be evidence of a
fork.

The directory (``certmail witness init``): ``witness.toml`` (the name and the
logs' verifier keys), ``witness.key`` (0600, the Ed25519 seed as
``PRIVATE+KEY+<name>+<id>+base64(0x04 ‖ seed)``), ``witness.vkey`` and
``state.db``. :func:`asgi_app` serves ``POST /add-checkpoint``.
"""

from __future__ import annotations

import base64
import json
import os
import sqlite3
import threading
import time
import tomllib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from keys.encoding import Base64Error, b64decode_canonical
from keys.errors import ConflictError, Error, KeyMaterialError, NotFoundError
from notary.body_limit import ASGIApp, Receive, Scope, Send, TooLarge, receive_body
from notary.checkpoint import Checkpoint, open_checkpoint
from notary.cosignature import ALG_COSIGNATURE_V1, CosignatureVerifier, Cosigner
from notary.errors import MalformedError, VerificationError
from notary.merkle import verify_consistency
from notary.note import Verifier, parse_note

__all__ = ["MAX_BODY", "Reply", "Witness", "add_log", "asgi_app", "init_witness"]

MAX_BODY = 128 * 1024
MAX_PROOF_LINES = 63
SIZE_TYPE = "text/x.tlog.size"
_SKEY_PREFIX = "PRIVATE+KEY+"


@dataclass(frozen=True)
class Reply:
    """An add-checkpoint answer."""

    status: int
    content_type: str
    body: bytes


@dataclass
class _Pending:
    """One add-checkpoint request waiting for the group commit."""

    old: int
    proof: list[bytes]
    note: bytes
    text: str
    cp: Checkpoint
    body: bytes
    reply: Reply | None = None
    done: bool = False


def _text(status: int, message: str) -> Reply:
    return Reply(status, "text/plain; charset=utf-8", message.encode() + b"\n")


# --- the directory ---------------------------------------------------------------


def _write_private(path: Path, data: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def _write_config(directory: Path, name: str, logs: Sequence[str]) -> None:
    lines = ["# certmail witness (docs/witness.md)", f"name = {json.dumps(name)}", "logs = ["]
    lines += [f"  {json.dumps(v)}," for v in logs]
    lines.append("]")
    tmp = directory / "witness.toml.tmp"
    tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, directory / "witness.toml")


def init_witness(directory: Path, name: str) -> CosignatureVerifier:
    """Create a witness directory with a new Ed25519 cosigner key named ``name``."""
    if (directory / "witness.toml").exists():
        raise ConflictError(f"{directory} is a witness already", hint="use another --dir")
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(directory, 0o700)
    seed = os.urandom(32)
    try:
        cosigner = Cosigner(name, seed)
    except ValueError as e:
        raise Error(str(e), hint="a schema-less URL, e.g. witness.example/w1") from None
    v = cosigner.verifier
    b64 = base64.b64encode(bytes([ALG_COSIGNATURE_V1]) + seed).decode()
    _write_private(directory / "witness.key", f"{_SKEY_PREFIX}{name}+{v.key_id.hex()}+{b64}\n")
    (directory / "witness.vkey").write_text(v.vkey() + "\n", encoding="utf-8")
    _write_config(directory, name, [])
    return v


def _config(directory: Path) -> tuple[str, list[str]]:
    try:
        cfg = tomllib.loads((directory / "witness.toml").read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise NotFoundError(
            f"{directory} is not a witness directory",
            hint=f"create one: certmail witness init --dir {directory} --name NAME",
        ) from None
    return str(cfg["name"]), [str(v) for v in cfg.get("logs", [])]


def add_log(directory: Path, vkey: str) -> Verifier:
    """Follow the log whose checkpoint key is ``vkey`` (its name is the log's origin)."""
    try:
        v = Verifier.from_vkey(vkey.strip())
    except (MalformedError, ValueError) as e:
        raise Error(f"not a log verifier key: {e}", hint="the log's GET /v1/vkey") from None
    name, logs = _config(directory)
    if any(Verifier.from_vkey(x).name == v.name for x in logs):
        raise ConflictError(f"the witness follows {v.name} already")
    _write_config(directory, name, [*logs, v.vkey()])
    return v


def _load_cosigner(directory: Path, name: str) -> Cosigner:
    text = (directory / "witness.key").read_text(encoding="utf-8").strip()
    rest = text.removeprefix(_SKEY_PREFIX)
    key_name, _, tail = rest.partition("+")
    _, _, b64 = tail.partition("+")
    try:
        raw = b64decode_canonical(b64)
    except Base64Error:
        raw = b""
    if not text.startswith(_SKEY_PREFIX) or key_name != name or len(raw) != 33:
        raise KeyMaterialError(f"{directory / 'witness.key'} is not this witness's key")
    return Cosigner(name, raw[1:])


# --- the witness -------------------------------------------------------------------


def _parse_request(body: bytes) -> tuple[int, list[bytes], bytes]:
    """``old N``, proof lines, an empty line, the checkpoint note; MalformedError."""
    split = body.find(b"\n\n")
    if split < 0:
        raise MalformedError("no empty line after the consistency proof")
    head, note = body[: split + 1].decode("ascii", "replace").split("\n")[:-1], body[split + 2 :]
    if not head or not head[0].startswith("old "):
        raise MalformedError("the first line must be 'old <size>'")
    from notary.checkpoint import parse_decimal

    old = parse_decimal(head[0][4:], "old size")
    if len(head) - 1 > MAX_PROOF_LINES:
        raise MalformedError(f"more than {MAX_PROOF_LINES} consistency proof lines")
    proof = []
    for line in head[1:]:
        try:
            h = b64decode_canonical(line)
        except Base64Error:
            raise MalformedError("a consistency proof line is not base64") from None
        if len(h) != 32:
            raise MalformedError("a consistency proof line is not a 32-byte hash")
        proof.append(h)
    return old, proof, note


class Witness:
    """The witness of a directory (see the module docstring)."""

    def __init__(self, directory: Path, *, clock: Callable[[], float] = time.time) -> None:
        self.directory = directory
        self.name, logs = _config(directory)
        self.cosigner = _load_cosigner(directory, self.name)
        self.logs = {v.name: v for v in (Verifier.from_vkey(x) for x in logs)}
        self.clock = clock
        self._queue_lock = threading.Lock()
        self._commit_lock = threading.Lock()
        self._pending: list[_Pending] = []
        self._db = sqlite3.connect(
            directory / "state.db", isolation_level=None, check_same_thread=False
        )
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS logs (origin TEXT PRIMARY KEY, size INTEGER NOT NULL,"
            " root BLOB NOT NULL, note BLOB NOT NULL)"
        )
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS refused (id INTEGER PRIMARY KEY, origin TEXT NOT NULL,"
            " at REAL NOT NULL, reason TEXT NOT NULL, body BLOB NOT NULL)"
        )

    def close(self) -> None:
        self._db.close()

    def latest(self, origin: str) -> tuple[int, bytes, bytes] | None:
        """The size, root and note of the latest checkpoint cosigned for ``origin``."""
        row = self._db.execute(
            "SELECT size, root, note FROM logs WHERE origin = ?", (origin,)
        ).fetchone()
        return None if row is None else (int(row[0]), bytes(row[1]), bytes(row[2]))

    def add_checkpoint(self, body: bytes) -> Reply:
        """Answer one add-checkpoint request (c2sp.org/tlog-witness)."""
        if len(body) > MAX_BODY:
            return _text(413, f"request over {MAX_BODY} bytes")
        try:
            old, proof, note = _parse_request(body)
            cp = Checkpoint.from_text(parse_note(note).text)
        except MalformedError as e:
            return _text(400, e.message)
        verifier = self.logs.get(cp.origin)
        if verifier is None:
            return _text(404, f"unknown log {cp.origin}")
        try:
            open_checkpoint(note, verifier)
        except VerificationError as e:
            return _text(403, f"no valid signature by the log: {e.message}")
        if old > cp.size:
            return _text(400, f"old size {old} is larger than the checkpoint's {cp.size}")
        item = _Pending(old, proof, note, parse_note(note).text, cp, body)
        with self._queue_lock:
            self._pending.append(item)
        with self._commit_lock:  # group commit: whoever holds it commits every request queued
            if not item.done:
                with self._queue_lock:
                    batch, self._pending = self._pending, []
                self._commit(batch)
        if item.reply is not None:
            return item.reply
        line = self.cosigner.cosign(item.text, int(self.clock()))
        return Reply(200, "text/plain; charset=utf-8", line.encode())

    def _commit(self, batch: list[_Pending]) -> None:
        """Check each request in order against the state (and the batch's earlier ones),
        then record the accepted ones and the refusals in one durable transaction."""
        db = self._db
        view: dict[str, tuple[int, bytes, bytes] | None] = {}
        updates: dict[str, tuple[int, bytes, bytes]] = {}
        refused: list[tuple[str, float, str, bytes]] = []
        try:
            db.execute("BEGIN IMMEDIATE")
            for it in batch:
                origin = it.cp.origin
                if origin not in view:
                    view[origin] = self.latest(origin)
                latest = view[origin]
                size = latest[0] if latest else 0
                if it.old != size:
                    it.reply = Reply(409, SIZE_TYPE, f"{size}\n".encode())
                    continue
                it.reply = self._refusal(it.old, it.proof, it.cp, latest)
                if it.reply is not None:
                    reason = it.reply.body.decode().strip()
                    refused.append((origin, self.clock(), reason, it.body))
                elif latest is None or it.cp.size > size:
                    view[origin] = updates[origin] = (it.cp.size, it.cp.root_hash, it.note)
            for origin, (size, root, note) in updates.items():
                db.execute(
                    "INSERT INTO logs (origin, size, root, note) VALUES (?, ?, ?, ?)"
                    " ON CONFLICT (origin) DO UPDATE SET size = excluded.size,"
                    " root = excluded.root, note = excluded.note",
                    (origin, size, root, note),
                )
            db.executemany(
                "INSERT INTO refused (origin, at, reason, body) VALUES (?, ?, ?, ?)", refused
            )
            db.execute("COMMIT")  # durable (synchronous=FULL) before any cosignature leaves
        except sqlite3.Error as e:
            if db.in_transaction:
                db.execute("ROLLBACK")
            for it in batch:
                it.reply = _text(503, f"the witness could not record its state: {e}")
        finally:
            for it in batch:
                it.done = True

    @staticmethod
    def _refusal(
        old: int, proof: list[bytes], cp: Checkpoint, latest: tuple[int, bytes, bytes] | None
    ) -> Reply | None:
        if old == 0:
            return _text(422, "the proof must be empty from size 0") if proof else None
        assert latest is not None
        if cp.size == old:
            if cp.root_hash != latest[1]:
                return _text(409, f"a different root for size {old}: a fork")
            return None if not proof else _text(422, "the proof must be empty for equal sizes")
        try:
            verify_consistency(old, cp.size, proof, latest[1], cp.root_hash)
        except VerificationError as e:
            return _text(422, f"the consistency proof does not verify: {e.message}")
        return None


def asgi_app(witness: Witness) -> ASGIApp:
    """Raw ASGI: ``POST /add-checkpoint``; anything else 404/405."""
    from starlette.concurrency import run_in_threadpool

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        if scope["path"] != "/add-checkpoint":
            reply = _text(404, "not found")
        elif scope["method"] != "POST":
            reply = _text(405, "use POST")
        else:
            try:
                body = await receive_body(scope, receive, MAX_BODY)
            except TooLarge:
                reply = _text(413, f"request over {MAX_BODY} bytes")
            else:
                if body is None:  # the client went away
                    return
                reply = await run_in_threadpool(witness.add_checkpoint, body)
        headers = [
            (b"content-type", reply.content_type.encode()),
            (b"content-length", str(len(reply.body)).encode()),
        ]
        await send({"type": "http.response.start", "status": reply.status, "headers": headers})
        await send({"type": "http.response.body", "body": reply.body})

    return app
