"""S/MIME campaigns' revocation checks and pickup links (issue 15, docs/campaigns.md "The
CA bundle and the CRL of an S/MIME campaign" and "S/MIME campaigns with
--pickup-if-no-key"): ``--smime-crl`` refuses a revoked recipient certificate at
``create`` (its row) and fails one revoked before ``send`` (the others delivered); a run
given another CA bundle is refused; ``--pickup-if-no-key`` gives a recipient without a
certificate an S/MIME-signed pickup link, which opens through the notary.

Real components: the test PKI and its CRLs (tests/fixtures/smime.py), ``certmail notary
serve`` with its SMTP relay, an aiosmtpd server for the recipients, ``openssl cms`` as
the recipients' client.
"""

from __future__ import annotations

import base64
import email
import email.policy
import hashlib
import json
import re
from pathlib import Path
from typing import Any

import httpx

from certmail.sealed.pickup import open_pickup
from tests.fixtures.cli import json_of
from tests.fixtures.relay import Relay, as_sender
from tests.fixtures.smime import Smime, SmimePki, openssl
from tests.fixtures.smime_campaign import check_one, create_rent, delivered_by_rcpt, tenants
from tests.fixtures.smime_relay import relay, smime

__all__ = ["relay", "smime"]  # the fixtures

NOCERT = "nocert@example.net"
LINK = re.compile(r"(https?://\S+/p/([A-Za-z0-9_-]{32}))#([A-Za-z0-9_-]{43})")


def _send(s: Smime, relay: Relay, *extra: str) -> Any:
    return as_sender(s.c, relay, "campaign", "send", "rent", "--json", *extra, **s.env)


def _events(p: Any) -> dict[str, dict[str, Any]]:
    return {e["email"]: e for e in map(json.loads, p.stdout.splitlines()[:-1])}


def test_a_revoked_recipient_certificate_is_refused_at_create(
    correspondents: Any, relay: Relay, smime: Smime, tmp_path: Path
) -> None:
    c, s = correspondents, smime
    people = tenants(s, 3)
    emails = [p.email for p in people]
    crl = s.pki.crl([people[1].cert])
    p = create_rent(s, relay, tmp_path, emails, "--smime-crl", str(crl))
    assert p.returncode == 2, p.stderr
    assert (
        f"row 3: no usable S/MIME certificate for {emails[1]}: not encrypting to "
        f"{emails[1]}: the S/MIME certificate is revoked (its CA's CRL lists it)"
    ) in p.stderr, p.stderr
    assert f"hint: ask {emails[1]} for their current certificate" in p.stderr
    assert "row 2" not in p.stderr and "row 4" not in p.stderr and "Traceback" not in p.stderr
    assert json_of(as_sender(c, relay, "campaign", "list", "--json"))["campaigns"] == []
    # A CRL file without the CA's CRL cannot tell: every row says so (never a pickup link).
    other = SmimePki(tmp_path / "other", "Other CA").crl([], "other.crl.pem")
    p = create_rent(s, relay, tmp_path, emails[:1], "--smime-crl", str(other), "--pickup-if-no-key")
    assert p.returncode == 2 and "the CRL file holds no CRL of the" in p.stderr, p.stderr
    assert "hint: give the CA's current CRL with --smime-crl FILE" in p.stderr, p.stderr
    # Not for an OpenPGP campaign.
    args = ("--recipients", str(tmp_path / "r.csv"), "--body-file", str(tmp_path / "body.txt"))
    p = as_sender(c, relay, "campaign", "create", "rent", *args, "--subject", "Rent",
                  "--smime-crl", str(crl), **s.env)  # fmt: skip
    assert p.returncode == 1 and "are for S/MIME, not a campaign without" in p.stderr
    assert json_of(as_sender(c, relay, "campaign", "list", "--json"))["campaigns"] == []
    # With --pickup-if-no-key a revoked certificate is not a usable one: a pickup link.
    p = create_rent(s, relay, tmp_path, emails, "--smime-crl", str(crl), "--pickup-if-no-key")
    assert p.returncode == 0, p.stderr
    assert (
        "3 recipients" in p.stdout and "1 without a usable certificate by pickup link" in p.stdout
    )
    status = json_of(as_sender(c, relay, "campaign", "status", "rent", "--json"))
    assert status["smime_trust"]["crl"] == str(crl.resolve())
    assert c.sink.messages == []


def test_a_certificate_revoked_after_create_fails_only_that_recipient(
    correspondents: Any, relay: Relay, smime: Smime, tmp_path: Path
) -> None:
    """``create`` keeps a copy of the CA bundle and the CRL's path: a run given another CA
    bundle, or without the CRL it was created with, is refused before anything is sent;
    the CRL read again at ``send`` lists a certificate revoked since ``create``."""
    c, s = correspondents, smime
    people = tenants(s, 3)
    emails = [p.email for p in people]
    crl = s.pki.crl([])
    made = create_rent(
        s, relay, tmp_path, emails, "--smime-ca", str(s.pki.ca), "--smime-crl", str(crl), "--json"
    )
    assert made.returncode == 0, made.stderr
    copy = c.alice.home / "campaigns" / "rent" / "smime-ca.pem"
    assert copy.read_bytes() == s.pki.ca.read_bytes()
    digest = hashlib.sha256(copy.read_bytes()).hexdigest()
    assert json.loads(made.stdout)["smime_trust"] == {
        "ca": {"path": str(copy), "sha256": digest, "from": str(s.pki.ca.resolve())},
        "crl": str(crl.resolve()),
    }
    other = SmimePki(tmp_path / "other", "Other CA")
    p = _send(s, relay, "--smime-ca", str(other.ca))
    assert p.returncode == 1, p.stderr
    assert f"campaign rent was created to trust the CA bundle {s.pki.ca}" in p.stderr
    assert "hint: certmail campaign send rent without --smime-ca" in p.stderr
    crl.rename(tmp_path / "moved.pem")
    p = _send(s, relay)
    assert p.returncode == 1 and f"the CRL it was created with, {crl}, which is gone" in p.stderr
    assert c.sink.messages == []
    s.pki.crl([people[1].cert])  # the CA's new CRL, at the same place
    p = _send(s, relay, "--smime-ca", str(s.pki.ca))  # the same CA bundle: accepted
    assert p.returncode == 1, p.stderr  # one failed for good
    events = _events(p)
    assert {e: ev["state"] for e, ev in events.items()} == {
        emails[0]: "accepted",
        emails[1]: "failed",
        emails[2]: "accepted",
    }
    assert "the S/MIME certificate is revoked" in events[emails[1]]["error"]
    by_rcpt = delivered_by_rcpt(c, 2)
    assert sorted(by_rcpt) == [emails[0], emails[2]]  # nothing to the revoked one
    for i in (0, 2):
        (data,) = by_rcpt[emails[i]]
        check_one(s, people[i], i, data, tmp_path)


def test_an_smime_campaign_sends_a_pickup_link_to_a_recipient_without_a_certificate(
    correspondents: Any, relay: Relay, smime: Smime, tmp_path: Path
) -> None:
    c, s = correspondents, smime
    people = tenants(s, 2)
    emails = [people[0].email, NOCERT, people[1].email]
    made = create_rent(s, relay, tmp_path, emails, "--pickup-if-no-key", "--json")
    assert made.returncode == 0, made.stderr
    out = json.loads(made.stdout)
    assert out["smime"] is True and out["pickup"] == [NOCERT]
    assert any("relay carries the pickup links" in w for w in out["warnings"])
    p = _send(s, relay)
    assert p.returncode == 0, p.stderr
    events = _events(p)
    assert {e: ev["state"] for e, ev in events.items()} == dict.fromkeys(emails, "accepted")
    by_rcpt = delivered_by_rcpt(c, 3)
    assert sorted(by_rcpt) == sorted(emails) and all(len(v) == 1 for v in by_rcpt.values())
    for i in (0, 2):  # encrypted S/MIME, as before
        (data,) = by_rcpt[emails[i]]
        assert b"application/pkcs7-mime" in data and not LINK.search(data.decode())
        check_one(s, people[0 if i == 0 else 1], i, data, tmp_path)
    # The pickup notice: S/MIME-signed (the campaign's signature), no content, a link.
    (notice,) = by_rcpt[NOCERT]
    top = email.message_from_bytes(notice, policy=email.policy.default)
    assert top.get_content_type() == "multipart/signed"
    assert top.get_param("protocol") == "application/pkcs7-signature"
    assert b"pkcs7-mime" not in notice and b"rent changes" not in notice
    signed = tmp_path / "notice.eml"
    signed.write_bytes(notice)
    content = openssl(
        "cms", "-verify", "-in", str(signed), "-CAfile", str(s.pki.ca), "-purpose", "smimesign",
    )  # fmt: skip
    link = LINK.search(content.replace(b"=\r\n", b"").decode())
    assert link is not None, content
    token, k_link = link.group(2), base64.urlsafe_b64decode(link.group(3) + "=")
    with httpx.Client(timeout=10) as h:  # the pickup page's requests
        api = f"{relay.url}/v1/pickup/{token}"
        assert h.get(api).json()["state"] == "waiting"
        r = h.post(f"{api}/ack", json={"address": NOCERT})
        assert r.status_code == 200, r.text
        share = base64.b64decode(r.json()["share"])
        blob = h.get(f"{api}/content").content
    key = bytes(a ^ b for a, b in zip(k_link, share, strict=True))
    text, _ = open_pickup(blob, key, events[NOCERT]["message_id"])
    assert text == "Dear Tenant 1,\nflat 1: the rent changes in March.\n"
    rep = as_sender(c, relay, "campaign", "report", "rent", "--format", "json", **s.env)
    rows = {r["email"]: r["delivery"] for r in json.loads(rep.stdout)["recipients"]}
    assert rows == {emails[0]: "encrypted", NOCERT: "pickup", emails[2]: "encrypted"}
