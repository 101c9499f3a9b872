"""Where each discovered key came from, and the Autocrypt peer state (``HOME/peers.db``).

One SQLite file in the certmail home (0600, WAL, ``synchronous=FULL``: a
write is durable once the call returns), two tables:

- ``key_sources``: per (fingerprint, address) the source that found the key
  (``wkd``, ``keyserver``, ``autocrypt``), its label (``domain-verified``,
  ``keyserver``, ``tofu``), the URL and when;
- ``autocrypt_peers``: Autocrypt Level 1 §2.3 state per peer address:
  ``last_seen``, ``autocrypt_timestamp``, ``keydata`` (the key from the
  header, not yet in the keyring), ``prefer_encrypt`` (``mutual`` or
  ``nopreference``).
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from certmail.sqlitedb import session

SCHEMA = """
CREATE TABLE IF NOT EXISTS key_sources (
    fingerprint TEXT NOT NULL, addr TEXT NOT NULL, source TEXT NOT NULL,
    label TEXT NOT NULL, url TEXT, found_at TEXT NOT NULL,
    PRIMARY KEY (fingerprint, addr));
CREATE TABLE IF NOT EXISTS autocrypt_peers (
    addr TEXT PRIMARY KEY, last_seen TEXT NOT NULL, autocrypt_timestamp TEXT,
    keydata BLOB, prefer_encrypt TEXT NOT NULL DEFAULT 'nopreference');
"""


@dataclass(frozen=True)
class KeySource:
    fingerprint: str
    addr: str
    source: str
    label: str
    url: str | None
    found_at: str


@dataclass(frozen=True)
class Peer:
    """Autocrypt Level 1 peer state (§2.3); times are aware UTC datetimes."""

    addr: str
    last_seen: datetime
    autocrypt_timestamp: datetime | None
    keydata: bytes | None
    prefer_encrypt: str


def peers_path(home: Path) -> Path:
    return home / "peers.db"


@contextmanager
def connect(home: Path) -> Iterator[sqlite3.Connection]:
    """The peers database of ``home``, created 0600 on first use; one transaction."""
    path = peers_path(home)
    home.mkdir(mode=0o700, parents=True, exist_ok=True)
    if not path.exists():
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
    with session(path, SCHEMA) as conn:
        yield conn


def record_source(home: Path, src: KeySource) -> None:
    with connect(home) as c:
        c.execute(
            "INSERT OR REPLACE INTO key_sources VALUES (?, ?, ?, ?, ?, ?)",
            (src.fingerprint, src.addr.lower(), src.source, src.label, src.url, src.found_at),
        )


def sources_of(home: Path, fingerprint: str) -> list[KeySource]:
    if not peers_path(home).exists():
        return []
    with connect(home) as c:
        rows = c.execute(
            "SELECT * FROM key_sources WHERE fingerprint = ? ORDER BY found_at", (fingerprint,)
        ).fetchall()
    return [KeySource(*r) for r in rows]


def get_peer(home: Path, addr: str) -> Peer | None:
    if not peers_path(home).exists():
        return None
    with connect(home) as c:
        row = c.execute("SELECT * FROM autocrypt_peers WHERE addr = ?", (addr.lower(),)).fetchone()
    if row is None:
        return None
    return Peer(row[0], _dt(row[1]), _dt(row[2]) if row[2] else None, row[3], row[4])


def put_peer(home: Path, peer: Peer) -> None:
    with connect(home) as c:
        c.execute(
            "INSERT OR REPLACE INTO autocrypt_peers VALUES (?, ?, ?, ?, ?)",
            (
                peer.addr.lower(),
                peer.last_seen.isoformat(),
                peer.autocrypt_timestamp.isoformat() if peer.autocrypt_timestamp else None,
                peer.keydata,
                peer.prefer_encrypt,
            ),
        )


def now_text() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _dt(text: str) -> datetime:
    return datetime.fromisoformat(text)
