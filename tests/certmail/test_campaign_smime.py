"""``campaign create --smime`` (issue 15, docs/campaigns.md "S/MIME campaigns"): each
recipient its own S/MIME message, signed with the sender's S/MIME key and encrypted to
the recipient's certificate and to the sender's, notarized and relayed like an OpenPGP
campaign's, exactly once after a SIGKILL; a recipient without a certificate refused at
``create`` with its row.

Real components: a test PKI (tests/fixtures/smime.py), ``certmail notary serve`` with
its SMTP relay, an aiosmtpd server for the recipients, and ``openssl cms`` as the
recipients' independent client (decrypt with their key, verify against the CA).
"""

from __future__ import annotations

import email
import email.policy
import functools
import hashlib
import json
import sqlite3
import subprocess
from pathlib import Path
from typing import Any

from certmail.ledger import Ledger
from certmail.sealed.box import CONTENT_NAME, KEY_NAME
from notary.receipt import Receipt
from tests.fixtures.campaign import kill_agent, kill_and_resume, make_recipients
from tests.fixtures.cli import CERTMAIL, clean_env, json_of, run
from tests.fixtures.relay import Relay, as_sender
from tests.fixtures.smime import Smime, SmimePerson, openssl
from tests.fixtures.smime_campaign import (
    check_one,
    cms_decrypt,
    create_rent,
    delivered_by_rcpt,
    tenants,
)
from tests.fixtures.smime_relay import relay, smime

__all__ = ["relay", "smime"]  # the fixtures

N = 5


def _popen(s: Smime, relay: Relay, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*CERTMAIL, "campaign", "send", "rent", "--json", "--settle-timeout", "20", *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=clean_env(s.c.alice.home, **{**relay.env, **s.env}),
    )


def _check_hashes(s: Smime, relay: Relay, by_rcpt: dict[str, list[bytes]]) -> None:
    """Each delivered message is the ledger's bytes, whose SHA-256 the relay's verified
    SubmissionAcceptance names, for that recipient alone."""
    c = s.c
    rep = as_sender(c, relay, "campaign", "report", "rent", "--format", "json", **s.env)
    assert rep.returncode == 0, rep.stderr
    rows = {r["email"]: r for r in json.loads(rep.stdout)["recipients"]}
    h = c.alice.home
    with Ledger(h / "ledger.db", h / "outbox", h / "sent") as ledger:
        for email, (data,) in by_rcpt.items():
            sha = rows[email]["sha256"]
            stored = ledger.message_path(sha).read_bytes()
            assert data.endswith(stored) and hashlib.sha256(stored).hexdigest() == sha
            (acc, *_) = ledger.receipts(sha)
            stmt = Receipt.from_json(acc).verify(relay.verifier())
            assert stmt["message"]["sha256"] == sha and stmt["recipients"] == [email]
            assert stmt["content"] == {"encrypted": True}


def test_an_smime_campaign_through_the_relay(
    correspondents: Any, relay: Relay, smime: Smime, tmp_path: Path
) -> None:
    c, s = correspondents, smime
    people = tenants(s)
    emails = [t.email for t in people]
    made = create_rent(s, relay, tmp_path, emails, "--json")
    assert made.returncode == 0, made.stderr
    assert json.loads(made.stdout)["smime"] is True
    p = as_sender(c, relay, "campaign", "send", "rent", "--json", "--concurrency", "2", **s.env)
    assert p.returncode == 0, p.stderr
    events = [json.loads(x) for x in p.stdout.splitlines()[:-1]]
    assert {e["email"]: e["state"] for e in events} == dict.fromkeys(emails, "accepted")
    by_rcpt = delivered_by_rcpt(c, N)
    assert sorted(by_rcpt) == sorted(emails)
    assert all(len(v) == 1 for v in by_rcpt.values())
    _check_hashes(s, relay, by_rcpt)
    for i, t in enumerate(people):
        (data,) = by_rcpt[t.email]
        assert b"rent changes" not in data and b"application/pkcs7-mime" in data
        check_one(s, t, i, data, tmp_path)
        # Encrypted to the sender too; not to another recipient.
        assert cms_decrypt(s.alice, data, tmp_path).returncode == 0
        other = people[(i + 1) % N]
        refused = cms_decrypt(other, data, tmp_path)
        assert refused.returncode != 0 and b"rent changes" not in refused.stdout
    # Each recipient's proof bundle verifies (the S/MIME signature is inside the
    # encryption: unchecked, as for `send --smime`).
    out = tmp_path / "proofs"
    pr = as_sender(c, relay, "campaign", "proofs", "rent", "-o", str(out), **s.env)
    assert pr.returncode == 0, pr.stderr
    index = (out / "index.csv").read_text().splitlines()
    assert index[0] == "bundle,recipient,state,sha256" and len(index) == N + 1
    shas = {e["sha256"] for e in events}
    for line in index[1:]:
        bundle, _, _, sha = line.split(",")
        verify = ("proof", "verify", str(out / bundle), "--trust-bundle-key")
        v = json_of(
            as_sender(c, relay, *verify, "--trust-bundle-root", "--json", "--allow-partial",
                      "--smime-ca", str(s.pki.ca))
        )  # fmt: skip
        assert v["valid"] and v["sha256"] == sha and sha in shas
        assert v["events"][0]["event"] == "SubmissionAcceptance"


def test_a_recipient_without_a_certificate_is_refused_at_create(
    correspondents: Any, relay: Relay, smime: Smime, tmp_path: Path
) -> None:
    c, s = correspondents, smime
    people = tenants(s, 2)
    emails = [people[0].email, "nocert@example.net", people[1].email]
    p = create_rent(s, relay, tmp_path, emails)
    assert p.returncode == 2, p.stderr
    assert "row 3: no usable S/MIME certificate for nocert@example.net" in p.stderr, p.stderr
    assert "keys smime import-cert" in p.stderr and "Traceback" not in p.stderr
    listed = json_of(as_sender(c, relay, "campaign", "list", "--json"))
    assert listed["campaigns"] == []
    # --sealed --smime needs each recipient's OpenPGP key too (the release's ack).
    p = create_rent(s, relay, tmp_path, [people[0].email], "--sealed")
    assert p.returncode == 2 and "row 2: sealed delivery needs" in p.stderr, p.stderr
    assert c.sink.messages == []
    # A certificate removed after create: that recipient fails at send (checked again),
    # with the reason; nothing is sent to them.
    assert create_rent(s, relay, tmp_path, [people[0].email]).returncode == 0
    for pem in (c.alice.home / "smime" / "certs").glob("*.pem"):
        pem.unlink()
    p = as_sender(c, relay, "campaign", "send", "rent", "--json", **s.env)
    assert p.returncode == 1, p.stderr
    (ev,) = [json.loads(x) for x in p.stdout.splitlines()[:-1]]
    assert ev["state"] == "failed" and "no usable S/MIME certificate" in ev["error"], ev
    assert c.sink.messages == []


def test_an_smime_campaign_killed_mid_way_is_exactly_once_on_resume(
    correspondents: Any, relay: Relay, smime: Smime, tmp_path: Path
) -> None:
    c, s = correspondents, smime
    people = tenants(s)
    emails = [t.email for t in people]
    assert create_rent(s, relay, tmp_path, emails).returncode == 0
    kill_and_resume(functools.partial(_popen, s, relay), c.alice.home / "ledger.db", N)
    by_rcpt = delivered_by_rcpt(c, N)
    assert sorted(by_rcpt) == sorted(emails)
    assert all(len(v) == 1 for v in by_rcpt.values()), by_rcpt.keys()
    _check_hashes(s, relay, by_rcpt)
    last = N - 1  # one sent after the kill
    check_one(s, people[last], last, by_rcpt[emails[last]][0], tmp_path)


def _smime_parts(s: Smime, who: SmimePerson, data: bytes, tmp: Path) -> dict[str, bytes]:
    """The S/MIME layer of ``who``'s copy opened by openssl: the signed entity's files."""
    dec = cms_decrypt(who, data, tmp)
    assert dec.returncode == 0, dec.stderr.decode()
    content = openssl("cms", "-verify", "-CAfile", str(s.pki.ca), "-purpose", "smimesign",
                      stdin=dec.stdout)  # fmt: skip
    msg = email.message_from_bytes(content, policy=email.policy.default)
    return {
        str(p.get_filename()): bytes(p.get_payload(decode=True))
        for p in msg.walk()
        if p.get_filename()
    }


def test_a_sealed_smime_campaign_opens_only_with_the_ack(
    correspondents: Any, relay: Relay, smime: Smime, tmp_path: Path
) -> None:
    """``--sealed --smime``: K_r and the sealed content in each S/MIME layer, each K_n
    registered; Bob (S/MIME key and OpenPGP key) reads his row only by acknowledging."""
    c, s = correspondents, smime
    tenant = tenants(s, 1)[0]
    rs = make_recipients(1, Path(c.alice.keyring.gnupghome))  # r0000's OpenPGP key
    try:
        assert rs.emails == [tenant.email]
        made = create_rent(s, relay, tmp_path, [c.bob.email, tenant.email], "--sealed", "--json")
        assert made.returncode == 0, made.stderr
        assert json.loads(made.stdout)["sealed"] is True
        p = as_sender(c, relay, "campaign", "send", "rent", "--json", **s.env)
        assert p.returncode == 0, p.stderr
    finally:
        kill_agent(rs.home)
    events = [json.loads(x) for x in p.stdout.splitlines()[:-1]]
    assert {e["email"]: (e["state"], e["seal"]) for e in events} == {
        c.bob.email: ("accepted", "registered"),
        tenant.email: ("accepted", "registered"),
    }
    by_rcpt = delivered_by_rcpt(c, 2)
    assert sorted(by_rcpt) == sorted([c.bob.email, tenant.email])
    assert all(len(v) == 1 for v in by_rcpt.values())
    with sqlite3.connect(relay.proc.directory / "seals.db") as db:
        seals = {r[0] for r in db.execute("SELECT sha256 FROM seals")}
    assert {e["sha256"] for e in events} <= seals
    for who, i in ((s.bob, 0), (tenant, 1)):
        (data,) = by_rcpt[who.email]
        assert b"application/pkcs7-mime" in data and b"BEGIN PGP MESSAGE" not in data
        parts = _smime_parts(s, who, data, tmp_path)
        assert sorted(parts) == ["certmail-manifest.json", CONTENT_NAME, KEY_NAME]
        assert b"rent changes" not in b"".join(parts.values())
    eml = tmp_path / "bob.eml"
    eml.write_bytes(by_rcpt[c.bob.email][0])
    out = json_of(run(c.bob, "open", str(eml), "--ack", "--json", **s.env))
    assert out["body"] == "Dear Tenant 0,\nflat 0: the rent changes in March.\n"
    assert out["signer"] == c.alice.email and out["trust"] == "x509"
    assert out["sealed"]["outcome"] == "opened"


def test_an_smime_campaign_direct_via_smtp_is_notarized(
    correspondents: Any, relay: Relay, smime: Smime, tmp_path: Path
) -> None:
    """``--via smtp``: Alice's own server takes each message, then ``POST /v1/notarize``."""
    c, s = correspondents, smime
    people = tenants(s, 2)
    smtp = {"CERTMAIL_SMTP_URL": c.sink.url}
    made = create_rent(s, relay, tmp_path, [t.email for t in people], "--via", "smtp", **smtp)
    assert made.returncode == 0, made.stderr
    p = as_sender(c, relay, "campaign", "send", "rent", "--json", **s.env, **smtp)
    assert p.returncode == 0, p.stderr
    events = {json.loads(x)["email"]: json.loads(x) for x in p.stdout.splitlines()[:-1]}
    assert {e: ev["state"] for e, ev in events.items()} == dict.fromkeys(
        [t.email for t in people], "accepted"
    )
    by_rcpt = delivered_by_rcpt(c, 2)
    h = c.alice.home
    with Ledger(h / "ledger.db", h / "outbox", h / "sent") as ledger:
        for i, t in enumerate(people):
            (data,) = by_rcpt[t.email]
            sha = events[t.email]["sha256"]
            assert hashlib.sha256(ledger.message_path(sha).read_bytes()).hexdigest() == sha
            assert data.endswith(ledger.message_path(sha).read_bytes())
            (rc, *_) = ledger.receipts(sha)
            assert Receipt.from_json(rc).verify(relay.verifier())["message"]["sha256"] == sha
            check_one(s, t, i, data, tmp_path)
