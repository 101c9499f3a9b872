"""``certmail send --track-open`` end to end: a real notary process, real gpg, an SMTP sink.

The link travels inside the encrypted content; following it logs
ContentAccessTracking (weak) for the sender's account; the notary keeps only
the token's hash; unknown tokens are 404.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
import sqlite3
from pathlib import Path
from typing import Any

import httpx

from tests.fixtures.cli import json_of, run, send_args, use_notary
from tests.fixtures.notary import NotaryProcess


def test_track_open_link_logs_weak_evidence(
    correspondents: Any, notary_server: NotaryProcess, tmp_path: Path
) -> None:
    c = correspondents
    use_notary(c, c.alice, notary_server)
    sent = json_of(
        run(
            c.alice,
            *send_args(c.bob.email, "Offer", "--via", "smtp", "--track-open"),
            stdin=b"Our offer.\n",
        )
    )
    raw = c.sink.messages[-1].data
    # The link is inside the encryption (a URL has ':' so base64 armor cannot hold it).
    assert (notary_server.url + "/r/").encode() not in raw
    eml = tmp_path / "in.eml"
    eml.write_bytes(raw)
    save = tmp_path / "save"
    p = run(c.bob, "open", str(eml), "--save-dir", str(save), "--no-ack", "--json")
    assert p.returncode == 0, p.stderr
    page = (save / "read-receipt.html").read_text()
    (link,) = set(re.findall(r'href="([^"]+)"', page))
    assert link.startswith(notary_server.url + "/r/")
    assert link.encode() not in raw
    token = link.rsplit("/", 1)[1]
    assert len(token) >= 43  # 256 bits, URL-safe base64

    # Only the token's hash is stored.
    db = sqlite3.connect(notary_server.directory / "notary.db")
    try:
        rows = db.execute("SELECT token_hash, recipient, sha256 FROM tracking_tokens").fetchall()
    finally:
        db.close()
    assert rows == [(hashlib.sha256(token.encode()).digest(), c.bob.email, sent["sha256"])]
    assert token.encode() not in (notary_server.directory / "notary.db").read_bytes()

    r = httpx.get(link, headers={"User-Agent": "ProxyFetcher/2"})
    assert r.status_code == 200 and r.headers["content-type"] == "image/gif"
    p = run(c.alice, "receipts", sent["sha256"], "--json")
    assert p.returncode == 0, p.stderr
    steps = json.loads(p.stdout)["recipients"][c.bob.email]
    assert [s["event"] for s in steps] == ["SubmissionAcceptance", "ContentAccessTracking"]
    assert steps[-1]["strength"] == "weak" and "weak evidence" in steps[-1]["step"]
    stmts = [
        json.loads(__import__("base64").b64decode(x["entry"]))
        for x in json.loads(p.stdout)["receipts"]
    ]
    hit = stmts[-1]
    assert hit["user_agent"] == "ProxyFetcher/2" and hit["remote_address"] == "127.0.0.1"
    assert "proxies" in hit["note"]

    unknown = httpx.get(f"{notary_server.url}/r/{secrets.token_urlsafe(32)}")
    assert unknown.status_code == 404 and unknown.json()["error"] == "not_found"


def test_track_open_several_recipients_links_without_images(
    correspondents: Any, notary_server: NotaryProcess, tmp_path: Path
) -> None:
    """Two recipients share one encrypted part: each gets a link naming them and no
    image (one client loading images would otherwise report both); following Bob's
    link logs ContentAccessTracking for Bob only."""
    c = correspondents
    use_notary(c, c.alice, notary_server)
    sent = json_of(
        run(
            c.alice,
            *send_args(
                c.bob.email, "Offer", "--cc", c.alice.email, "--via", "smtp", "--track-open"
            ),
            stdin=b"Our offer.\n",
        )
    )
    eml = tmp_path / "in.eml"
    eml.write_bytes(c.sink.messages[-1].data)
    save = tmp_path / "save"
    p = run(c.bob, "open", str(eml), "--save-dir", str(save), "--no-ack", "--json")
    assert p.returncode == 0, p.stderr
    page = (save / "read-receipt.html").read_text()
    assert "<img" not in page
    links = dict(
        (who, url)
        for url, who in re.findall(
            r'<a href="([^"]+)">Confirm that ([^ ]+) opened this message</a>', page
        )
    )
    assert set(links) == {c.bob.email, c.alice.email}
    assert len(set(links.values())) == 2
    db = sqlite3.connect(notary_server.directory / "notary.db")
    try:
        rows = db.execute(
            "SELECT recipient FROM tracking_tokens WHERE sha256 = ?", (sent["sha256"],)
        ).fetchall()
    finally:
        db.close()
    assert sorted(r[0] for r in rows) == sorted([c.bob.email, c.alice.email])

    assert httpx.get(links[c.bob.email]).status_code == 200
    p = run(c.alice, "receipts", sent["sha256"], "--json")
    assert p.returncode == 0, p.stderr
    per = json.loads(p.stdout)["recipients"]
    assert [s["event"] for s in per[c.bob.email]][-1] == "ContentAccessTracking"
    assert "ContentAccessTracking" not in [s["event"] for s in per[c.alice.email]]
