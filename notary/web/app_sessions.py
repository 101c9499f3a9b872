"""Sessions and one-time sign-in links of the sender's view (``GET /app``, docs/web.md).

A session id and a sign-in link token are 32 random bytes (256 bits,
URL-safe base64); only their SHA-256 is stored (``web.db``, :mod:`notary.web.app_db`),
and a presented one is looked up by its hash, so the stored table gives no
way in. A sign-in link is good once (consumed in the transaction that makes
the session) and for :data:`LINK_TTL`; a session lives :data:`SESSION_TTL`
and dies on sign-out in every worker at once (the row is deleted). Each
session carries the CSRF token its forms must send back.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from notary.web.app_db import WebDB

__all__ = ["LINK_TTL", "SCHEMA", "SESSION_TTL", "Session", "SessionStore", "new_secret"]

LINK_TTL = timedelta(minutes=10)
SESSION_TTL = timedelta(hours=8)
#: A presented secret longer than this is refused before it is hashed.
MAX_SECRET = 128

SCHEMA = """
CREATE TABLE IF NOT EXISTS sessions (
  id_hash BLOB PRIMARY KEY,
  account_id INTEGER NOT NULL,
  csrf TEXT NOT NULL,
  expires REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS login_links (
  token_hash BLOB PRIMARY KEY,
  account_id INTEGER NOT NULL,
  expires REAL NOT NULL
);
"""


def new_secret() -> str:
    """32 random bytes as URL-safe base64 (no padding): 256 bits."""
    return secrets.token_urlsafe(32)


def _hash(secret: str) -> bytes:
    return hashlib.sha256(secret.encode("ascii", "replace")).digest()


@dataclass(frozen=True)
class Session:
    """A live session: its account and the CSRF token of its forms."""

    account_id: int
    csrf: str
    expires: datetime

    def csrf_ok(self, sent: str | None) -> bool:
        """Whether ``sent`` is this session's CSRF token (constant time)."""
        return bool(sent) and hmac.compare_digest(self.csrf.encode(), (sent or "").encode())


class SessionStore:
    """Sessions and sign-in links in ``web.db`` (its tables: :data:`SCHEMA`); ``clock``
    is the service's."""

    def __init__(self, db: WebDB, clock: Callable[[], datetime]) -> None:
        self.db, self.clock = db, clock

    def _now(self) -> float:
        return self.clock().timestamp()

    def add_link(self, account_id: int) -> tuple[str, datetime]:
        """A new one-time sign-in link token for the account, and when it expires."""
        token, expires = new_secret(), self.clock() + LINK_TTL
        with self.db.write() as cur:
            cur.execute("DELETE FROM login_links WHERE expires < ?", (self._now(),))
            cur.execute(
                "INSERT INTO login_links VALUES (?, ?, ?)",
                (_hash(token), account_id, expires.timestamp()),
            )
        return token, expires

    def use_link(self, token: str) -> tuple[str, Session] | None:
        """Consume a sign-in link: a new session (id, session), or None if it is not good."""
        if not token or len(token) > MAX_SECRET:
            return None
        with self.db.write() as cur:
            row = cur.execute(
                "DELETE FROM login_links WHERE token_hash = ? RETURNING account_id, expires",
                (_hash(token),),
            ).fetchone()
            if row is None or row[1] < self._now():
                return None
            return self._add_session(cur, int(row[0]))

    def add_session(self, account_id: int) -> tuple[str, Session]:
        """A new session for the account (signed in with its API token)."""
        with self.db.write() as cur:
            return self._add_session(cur, account_id)

    def _add_session(self, cur: sqlite3.Cursor, account_id: int) -> tuple[str, Session]:
        sid, csrf = new_secret(), new_secret()
        expires = self.clock() + SESSION_TTL
        cur.execute("DELETE FROM sessions WHERE expires < ?", (self._now(),))
        cur.execute(
            "INSERT INTO sessions VALUES (?, ?, ?, ?)",
            (_hash(sid), account_id, csrf, expires.timestamp()),
        )
        return sid, Session(account_id, csrf, expires)

    def session(self, sid: str | None) -> Session | None:
        """The live session of a cookie value, or None (unknown, ended or expired)."""
        if not sid or len(sid) > MAX_SECRET:
            return None
        row = (
            self.db.read()
            .execute(
                "SELECT account_id, csrf, expires FROM sessions WHERE id_hash = ?", (_hash(sid),)
            )
            .fetchone()
        )
        if row is None or row[2] < self._now():
            return None
        return Session(int(row[0]), str(row[1]), datetime.fromtimestamp(row[2], UTC))

    def end(self, sid: str) -> None:
        """Sign out: the session is gone for every worker."""
        with self.db.write() as cur:
            cur.execute("DELETE FROM sessions WHERE id_hash = ?", (_hash(sid),))

    def close(self) -> None:
        self.db.close()
