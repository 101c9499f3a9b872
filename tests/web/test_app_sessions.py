"""The sender's view's sessions and sign-in links (notary/web/app_sessions.py) with the
clock moved by hand: a link expires after 10 minutes and is good once, a session expires
and ends, only hashes are stored, and two processes' stores share one ``web.db``."""

from __future__ import annotations

import hashlib
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

from notary.web.app_db import WEB_DB, WebDB
from notary.web.app_sessions import LINK_TTL, SCHEMA, SESSION_TTL, SessionStore


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


def store(tmp_path: Path, clock: Clock) -> SessionStore:
    return SessionStore(WebDB(tmp_path / WEB_DB, SCHEMA), clock)


def test_a_link_is_good_once_and_for_ten_minutes(tmp_path: Path) -> None:
    clock = Clock()
    s = store(tmp_path, clock)
    token, expires = s.add_link(7)
    assert expires == clock.now + LINK_TTL and LINK_TTL == timedelta(minutes=10)
    got = s.use_link(token)
    assert got is not None and got[1].account_id == 7
    assert s.use_link(token) is None  # single use
    late, _ = s.add_link(7)
    clock.now += LINK_TTL + timedelta(seconds=1)
    assert s.use_link(late) is None  # expired
    clock.now -= timedelta(minutes=30)
    assert s.use_link(late) is None  # and gone: an expired try consumed it
    assert s.use_link("") is None and s.use_link("x" * 10_000) is None


def test_a_session_expires_and_ends(tmp_path: Path) -> None:
    clock = Clock()
    s = store(tmp_path, clock)
    sid, session = s.add_session(3)
    assert s.session(sid) == session and session.csrf_ok(session.csrf)
    assert not session.csrf_ok(None) and not session.csrf_ok("") and not session.csrf_ok("x")
    s.end(sid)
    assert s.session(sid) is None
    sid, _ = s.add_session(3)
    clock.now += SESSION_TTL + timedelta(seconds=1)
    assert s.session(sid) is None
    assert s.session(None) is None and s.session("y" * 10_000) is None


def test_only_hashes_are_stored_and_every_process_sees_one_table(tmp_path: Path) -> None:
    clock = Clock()
    a, b = store(tmp_path, clock), store(tmp_path, clock)  # as two worker processes
    sid, _ = a.add_session(1)
    token, _ = a.add_link(1)
    assert b.session(sid) is not None
    b.end(sid)
    assert a.session(sid) is None  # signed out for every worker
    assert b.use_link(token) is not None and a.use_link(token) is None
    raw = sqlite3.connect(tmp_path / WEB_DB)
    stored = [bytes(r[0]) for r in raw.execute("SELECT id_hash FROM sessions")]
    stored += [bytes(r[0]) for r in raw.execute("SELECT token_hash FROM login_links")]
    live, _ = a.add_session(2)
    dump = "\n".join(raw.iterdump())
    assert "sessions" in dump and live not in dump and sid not in dump and token not in dump
    assert hashlib.sha256(live.encode()).hexdigest().upper() in dump.upper()  # its hash only
    assert hashlib.sha256(sid.encode()).digest() not in stored  # the session ended
    assert (tmp_path / WEB_DB).stat().st_mode & 0o077 == 0
    assert len(token) >= 43 and len(sid) >= 43  # 256-bit secrets
