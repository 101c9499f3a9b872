"""Pickup delivery end to end (issue 12 item 2, docs/sealed.md "Pickup"): real gpg, real
``notary serve``, the page's HTTP requests made with httpx (tests/web/test_pickup_page.py
drives the page itself in Chromium).

Alice sends Carol, who has no key, a ``--pickup`` message in direct mode: Carol's email
holds only a link. Before the acknowledgement nothing the notary stores (with or without
the email) decrypts the content; after it, K_link ⊕ K_n does, and Alice's receipts show a
ContentHandover of mode pickup with its identity assurance and release time.
"""

from __future__ import annotations

import base64
import sqlite3
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from certmail.sealed.pickup import open_pickup, passphrase_keys
from keys.errors import VerificationError
from notary.evidence import parse_statement
from tests.fixtures.cli import json_of, one_line_error, run, use_notary
from tests.fixtures.notary import NotaryProcess
from tests.fixtures.pickup import BODY, CAROL, SECRET, api, parts, send_pickup


def notary_share(notary: NotaryProcess, sha: str) -> bytes:
    """K_n, with everything the notary stores (its seal key and seals.db)."""
    key = (notary.directory / "seal.key").read_bytes()
    with sqlite3.connect(notary.directory / "seals.db") as db:
        (wrapped,) = db.execute("SELECT wrapped FROM seals WHERE sha256=?", (sha,)).fetchone()
    return AESGCM(key).decrypt(wrapped[:12], wrapped[12:], sha.encode())


def xor(*keys: bytes) -> bytes:
    out = bytearray(32)
    for k in keys:
        out = bytearray(a ^ b for a, b in zip(out, k, strict=True))
    return bytes(out)


@pytest.fixture
def alice(correspondents: Any, notary_server: NotaryProcess) -> Any:
    use_notary(correspondents, correspondents.alice, notary_server)
    return correspondents


def test_pickup_is_released_only_after_the_handover_is_logged(
    alice: Any, notary_server: NotaryProcess, tmp_path: Path
) -> None:
    sent, eml, url = send_pickup(alice, tmp_path)
    page, token, k_link = parts(url)
    assert b"under the mat" not in eml and b"secret contract" not in eml
    assert b"multipart/alternative" in eml and b'Content-Type: text/html; charset="utf-8"' in eml
    sha, mid = sent["sha256"], sent["message_id"]
    # everything the notary stores: the seal store, the ciphertext file, the token's hash only
    blob = (notary_server.directory / "pickups" / f"{sha}.bin").read_bytes()
    k_n = notary_share(notary_server, sha)
    assert token.encode() not in (notary_server.directory / "seals.db").read_bytes()
    with pytest.raises(VerificationError):
        open_pickup(blob, k_n, mid)  # all the notary holds, without K_link
    with pytest.raises(VerificationError):
        open_pickup(blob, k_link, mid)  # the link alone, no release
    with httpx.Client() as h:
        assert h.get(api(notary_server, token, "/content")).status_code == 409
        info = h.get(api(notary_server, token)).json()
        assert (info["subject"], info["state"], info["passphrase"]) == ("Keys", "waiting", None)
        assert h.get(page).headers["content-security-policy"].startswith("default-src 'none'")
        r = h.post(api(notary_server, token, "/ack"), json={"address": CAROL.upper()})
        assert r.status_code == 200, r.text
        share = base64.b64decode(r.json()["share"])
        assert share == k_n
        text, files = open_pickup(h.get(api(notary_server, token, "/content")).content,
                                  xor(k_link, share), mid)  # fmt: skip
        again = h.post(api(notary_server, token, "/ack"), json={"address": CAROL})
        assert again.json()["receipt"]["entry"] == r.json()["receipt"]["entry"]  # reopened
    assert text == BODY.decode() and [(f.name, f.data) for f in files] == [("contract.pdf", SECRET)]
    stmt = parse_statement(base64.b64decode(r.json()["receipt"]["entry"]))
    assert (stmt["event"], stmt["mode"], stmt["recipient"]) == ("ContentHandover", "pickup", CAROL)
    assert stmt["assurance"] == "holder of the mailbox link" and stmt["released"]
    p = run(alice.alice, "receipts", sha, "--json")
    steps = json_of(p)["recipients"][CAROL]
    (handover,) = [s for s in steps if s["event"] == "ContentHandover"]
    assert handover["mode"] == "pickup" and handover["released"] == stmt["released"]
    assert "pickup page" in handover["step"]
    human = run(alice.alice, "receipts", sha)
    assert human.returncode == 0 and "holder of the mailbox link" in human.stdout + human.stderr
    assert f"key share released {stmt['released']}" in human.stdout + human.stderr


def test_hostile_requests_release_nothing(
    alice: Any, notary_server: NotaryProcess, tmp_path: Path
) -> None:
    _, _, url = send_pickup(alice, tmp_path)
    _, token, _ = parts(url)
    guessed = base64.urlsafe_b64encode(bytes(24)).decode()
    with httpx.Client() as h:
        for bad in (guessed, "short", token[:-1] + ("A" if token[-1] != "A" else "B")):
            r = h.post(api(notary_server, bad, "/ack"), json={"address": CAROL})
            assert r.status_code == 404 and "no such pickup link" in r.json()["message"]
        r = h.post(api(notary_server, token, "/ack"), json={"address": "mallory@example.net"})
        assert r.status_code == 403 and "another address" in r.json()["message"]
        r = h.post(api(notary_server, token, "/ack"), json={"address": CAROL, "share": "x"})
        assert r.status_code == 400  # an edited request: unknown member
        r = h.post(api(notary_server, token, "/ack"), content=b"{" * 5000)
        assert r.status_code == 413
        r = h.post(api(notary_server, token, "/ack"), content=b"not json")
        assert r.status_code == 400 and "JSON" in r.json()["message"]
        assert h.get(api(notary_server, token, "/content")).status_code == 409
        # nothing was lost: the right address still opens it
        r = h.post(api(notary_server, token, "/ack"), json={"address": CAROL})
        assert r.status_code == 200 and h.get(api(notary_server, token)).json()["tries_left"] == 4


def test_passphrase_is_needed_and_wrong_ones_lock_it(
    alice: Any, notary_server: NotaryProcess, tmp_path: Path
) -> None:
    pp = tmp_path / "pp.txt"
    pp.write_text("correct horse battery\n")
    sent, _, url = send_pickup(alice, tmp_path, "--pickup-passphrase-file", str(pp))
    _, token, k_link = parts(url)
    sha, mid = sent["sha256"], sent["message_id"]
    blob = (notary_server.directory / "pickups" / f"{sha}.bin").read_bytes()
    k_n = notary_share(notary_server, sha)
    with pytest.raises(VerificationError):  # all the notary holds plus the whole email
        open_pickup(blob, xor(k_link, k_n), mid)
    with httpx.Client() as h:
        info = h.get(api(notary_server, token)).json()
        salt = base64.b64decode(info["passphrase"]["salt"])
        p, verifier = passphrase_keys(b"correct horse battery", salt)
        _, wrong = passphrase_keys(b"incorrect horse", salt)
        body = {"address": CAROL, "verifier": base64.b64encode(wrong).decode()}
        for left in (4, 3, 2, 1):
            r = h.post(api(notary_server, token, "/ack"), json=body)
            assert r.status_code == 403 and f"{left} tries left" in r.json()["message"]
        r = h.post(api(notary_server, token, "/ack"), json=body)
        assert r.status_code == 423 and "locked" in r.json()["message"]
        right = {"address": CAROL, "verifier": base64.b64encode(verifier).decode()}
        r = h.post(api(notary_server, token, "/ack"), json=right)
        assert r.status_code == 423  # locked for good: nothing released
        assert h.get(api(notary_server, token)).json()["state"] == "locked"
        assert h.get(api(notary_server, token, "/content")).status_code == 409
    assert open_pickup(blob, xor(k_link, k_n, p), mid)[0] == BODY.decode()


@pytest.mark.notary_settings(pickup_purge_every=0.5)
def test_ack_after_expiry_is_gone(alice: Any, notary_server: NotaryProcess, tmp_path: Path) -> None:
    import time
    from datetime import UTC, datetime

    from notary.evidence import parse_time

    sent, _, url = send_pickup(alice, tmp_path, "--seal-expires", "4")
    _, token, _ = parts(url)
    with httpx.Client() as h:
        expires = parse_time(h.get(api(notary_server, token)).json()["expires"])
        time.sleep(max(0.0, (expires - datetime.now(UTC)).total_seconds()) + 0.3)
        r = h.post(api(notary_server, token, "/ack"), json={"address": CAROL})
        assert r.status_code == 410 and "expired" in r.json()["message"]
        assert h.get(api(notary_server, token)).json()["state"] == "expired"
        assert h.get(api(notary_server, token, "/content")).status_code in (409, 410)
    # the sweep logs the handover failure and destroys the share, the purge the content
    blob = notary_server.directory / "pickups" / f"{sent['sha256']}.bin"
    deadline = time.monotonic() + 60
    events: list[str] = []
    while time.monotonic() < deadline and ("ContentHandoverFailure" not in events or blob.exists()):
        time.sleep(0.5)
        p = run(alice.alice, "receipts", sent["sha256"], "--json")
        events = [e["event"] for e in json_of(p)["recipients"][CAROL]]
    assert "ContentHandoverFailure" in events and "ContentHandover" not in events
    assert not blob.exists()


def test_refusal_is_logged_and_destroys_the_content(
    alice: Any, notary_server: NotaryProcess, tmp_path: Path
) -> None:
    sent, _, url = send_pickup(alice, tmp_path)
    _, token, _ = parts(url)
    with httpx.Client() as h:
        r = h.post(api(notary_server, token, "/refuse"), json={"address": CAROL})
        assert r.status_code == 200, r.text
        assert h.post(api(notary_server, token, "/ack"), json={"address": CAROL}).status_code == 410
        assert h.get(api(notary_server, token)).json()["state"] == "refused"
    assert not (notary_server.directory / "pickups" / f"{sent['sha256']}.bin").exists()
    steps = json_of(run(alice.alice, "receipts", sent["sha256"], "--json"))["recipients"][CAROL]
    assert "RejectionByRecipient" in [s["event"] for s in steps]


def test_pickup_cli_errors_are_one_line(alice: Any, tmp_path: Path) -> None:
    p = run(alice.alice, "send", "--to", CAROL, "--subject", "x", "--pickup", "--sealed",
            stdin=b"x\n")  # fmt: skip
    assert p.returncode != 0 and "exclude each other" in one_line_error(p)
    p = run(
        alice.alice,
        *("send", "--to", CAROL, "--to", "dave@example.com", "--subject", "x", "--pickup"),
        stdin=b"x\n",
    )
    assert p.returncode != 0 and "one recipient" in one_line_error(p)


def test_a_registered_pickup_survives_a_kill(
    alice: Any, notary_server: NotaryProcess, tmp_path: Path
) -> None:
    """Registered, then the notary SIGKILLed: after restart the link still opens."""
    sent, _, url = send_pickup(alice, tmp_path)
    _, token, k_link = parts(url)
    notary_server.kill()
    notary_server.start()
    with httpx.Client() as h:
        r = h.post(api(notary_server, token, "/ack"), json={"address": CAROL})
        assert r.status_code == 200, r.text
        blob = h.get(api(notary_server, token, "/content")).content
    share = base64.b64decode(r.json()["share"])
    assert open_pickup(blob, xor(k_link, share), sent["message_id"])[0] == BODY.decode()


def test_the_sealed_routes_release_no_pickup_share(
    alice: Any, notary_server: NotaryProcess, tmp_path: Path
) -> None:
    """A pickup's K_n lives in the seal store, but no signed ack on /v1/seals opens it: the
    seal has no registered key."""
    from tests.fixtures.cli import signed_ack

    sent, _, _ = send_pickup(alice, tmp_path)
    url = f"{notary_server.url}/v1/seals/{sent['sha256']}"
    ack = signed_ack(alice.bob.keyring, sent, alice.bob.email, notary_server.url).to_json()
    for what in ("/open", "/refuse"):
        r = httpx.post(url + what, json=ack)
        assert r.status_code in (400, 422) and "share" not in r.json(), r.text
    steps = json_of(run(alice.alice, "receipts", sent["sha256"], "--json"))["recipients"][CAROL]
    assert [s["event"] for s in steps] == ["SubmissionAcceptance"]


def test_a_handover_logged_before_a_crash_is_answered_again(
    alice: Any, notary_server: NotaryProcess, tmp_path: Path
) -> None:
    """The log says what happened: a ContentHandover committed but not yet recorded in
    seals.db (a crash between the two) is answered with the same entry, content included."""
    sent, _, url = send_pickup(alice, tmp_path)
    _, token, k_link = parts(url)
    first = httpx.post(api(notary_server, token, "/ack"), json={"address": CAROL})
    assert first.status_code == 200, first.text
    notary_server.kill()
    with sqlite3.connect(notary_server.directory / "seals.db") as db:  # as if it died then
        db.execute("UPDATE pickups SET released = NULL")
        db.execute("UPDATE seals SET state = 'sealed'")
    notary_server.start()
    with httpx.Client() as h:
        # the log decides, not the lost mark: the (still encrypted) content is served
        assert h.get(api(notary_server, token, "/content")).status_code == 200
        again = h.post(api(notary_server, token, "/ack"), json={"address": CAROL})
        assert again.status_code == 200
        assert again.json()["receipt"]["entry"] == first.json()["receipt"]["entry"]
        blob = h.get(api(notary_server, token, "/content")).content
    share = base64.b64decode(again.json()["share"])
    assert open_pickup(blob, xor(k_link, share), sent["message_id"])[0] == BODY.decode()
    steps = json_of(run(alice.alice, "receipts", sent["sha256"], "--json"))["recipients"][CAROL]
    assert [s["event"] for s in steps].count("ContentHandover") == 1
