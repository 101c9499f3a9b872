"""``certmail send --sealed --smime`` (issue 12, docs/sealed.md "S/MIME"): K_r inside the
S/MIME layer (RFC 8551 signed, then enveloped), released by the notary only against the
recipient's acknowledgement, which is OpenPGP-signed (docs/ack.md).

Real components: gpg, openssl (the independent peer that decrypts the S/MIME layer with
Bob's key), ``certmail notary serve``, an aiosmtpd server as Bob's mail server.
"""

from __future__ import annotations

import dataclasses
import email
import email.policy
import tempfile
from pathlib import Path
from typing import Any

import httpx
import pytest

from certmail.sealed.box import CONTENT_NAME, KEY_NAME, KeyPart, open_content
from keys.errors import VerificationError
from notary.evidence import parse_statement
from notary.receipt import Receipt
from tests.fixtures.cli import delivered, json_of, one_line_error, run, signed_ack, use_notary
from tests.fixtures.notary import NotaryProcess
from tests.fixtures.smime import Smime, openssl, smime_homes
from tests.fixtures.terminal import on_a_terminal

BODY = b"Please sign the contract by Friday.\n"
SECRET = b"clause 1: the secret terms\n"


def _send(s: Smime, tmp_path: Path, *extra: str, to: str | None = None) -> Any:
    att = tmp_path / "contract.txt"
    att.write_bytes(SECRET)
    return run(
        s.c.alice,
        *("send", "--to", to or s.c.bob.email, "--subject", "Contract", "--sealed", "--smime"),
        *("--via", "smtp", "--json", "--attach", str(att), *extra),
        stdin=BODY,
        **s.env,
    )


@pytest.fixture
def sealed(correspondents: Any, notary_server: NotaryProcess, tmp_path: Path) -> Any:
    s = smime_homes(correspondents, tmp_path)
    use_notary(correspondents, correspondents.alice, notary_server)
    sent = json_of(_send(s, tmp_path))
    return s, sent, delivered(correspondents, tmp_path, "sealed.eml")


def _names(c: Any, sha: str) -> list[str]:
    p = run(c.alice, "receipts", sha, "--json")
    assert p.returncode == 0, p.stderr
    return [st["event"] for st in json_of(p)["recipients"][c.bob.email]]


def _smime_parts(s: Smime, eml: Path) -> dict[str, bytes]:
    """The S/MIME layer opened by openssl with Bob's key: the signed entity's parts."""
    signed = openssl(
        "cms", "-decrypt", "-in", str(eml), "-recip", str(s.bob.cert_pem),
        "-inkey", str(s.bob.key_pem),
    )  # fmt: skip
    content = openssl("cms", "-verify", "-CAfile", str(s.pki.ca), "-purpose", "smimesign",
                      stdin=signed)  # fmt: skip
    msg = email.message_from_bytes(content, policy=email.policy.default)
    return {
        str(p.get_filename()): bytes(p.get_payload(decode=True))
        for p in msg.walk()
        if p.get_filename()
    }


def test_k_r_travels_in_the_smime_layer_and_opens_only_after_the_ack(
    sealed: Any, notary_server: NotaryProcess, tmp_path: Path
) -> None:
    s, sent, eml = sealed
    c = s.c
    raw = eml.read_bytes()
    assert b"application/pkcs7-mime" in raw and b"BEGIN PGP MESSAGE" not in raw
    # Everything Bob holds before acknowledging: his S/MIME key opens the layer (openssl),
    # which gives K_r and the sealed content, and K_r alone does not decrypt it.
    parts = _smime_parts(s, eml)
    assert sorted(parts) == ["certmail-manifest.json", CONTENT_NAME, KEY_NAME]
    assert SECRET not in b"".join(parts.values()) and b"Friday" not in b"".join(parts.values())
    kp = KeyPart.from_bytes(parts[KEY_NAME])
    assert kp.notary == notary_server.url and kp.size > len(BODY)
    with pytest.raises(VerificationError):
        open_content(parts[CONTENT_NAME], kp.k_r, sent["message_id"])

    # No terminal, no --ack: explained, exit 2 (nothing logged: the receipts below).
    p = run(c.bob, "open", str(eml), **s.env)
    assert p.returncode == 2 and "sealed" in one_line_error(p)

    saved = tmp_path / "saved"
    out = json_of(
        run(c.bob, "open", str(eml), "--ack", "--json", "--save-dir", str(saved), **s.env)
    )
    assert out["body"] == BODY.decode() and out["manifest"] == "verified"
    assert out["signer"] == c.alice.email and out["trust"] == "x509"
    assert out["headers"]["Subject"] == "Contract"
    assert (saved / "contract.txt").read_bytes() == SECRET
    assert out["sealed"]["outcome"] == "opened" and out["sealed"]["size"] == kp.size
    stmt = parse_statement(Receipt.from_json(out["sealed"]["receipt"]).entry)
    assert stmt["event"] == "ContentHandover" and stmt["mode"] == "sealed"
    assert stmt["fingerprint"] == c.bob.keyring.key_for(c.bob.email).fingerprint
    assert _names(c, sent["sha256"]) == ["SubmissionAcceptance", "ContentHandover"]


def test_a_forged_ack_releases_nothing(
    sealed: Any, notary_server: NotaryProcess, keyring_factory: Any
) -> None:
    s, sent, eml = sealed
    c = s.c
    url = f"{notary_server.url}/v1/seals/{sent['sha256']}/open"
    mallory, _ = keyring_factory(c.bob.email, "Not Bob")  # Bob's address, another key
    r = httpx.post(url, json=signed_ack(mallory, sent, c.bob.email, notary_server.url).to_json())
    assert r.status_code == 422 and r.json()["error"] == "bad_signature" and "share" not in r.json()
    good = signed_ack(c.bob.keyring, sent, c.bob.email, notary_server.url).to_json()
    bad = dict(good, signed=good["signed"].replace("Time: 2", "Time: 1"))
    r = httpx.post(url, json=bad)
    assert r.status_code == 422 and "share" not in r.json()
    assert _names(c, sent["sha256"]) == ["SubmissionAcceptance"]
    # Bob's own acknowledgement, from his Maildir (inbox open): released, read.
    maildir = eml.parent / "Maildir"
    for sub in ("cur", "new", "tmp"):
        (maildir / sub).mkdir(parents=True)
    (maildir / "new" / "1.sealed").write_bytes(eml.read_bytes())
    listed = json_of(run(c.bob, "inbox", "list", "--maildir", str(maildir), "--json", **s.env))
    (m,) = listed["messages"]
    assert m["sha256"] == sent["sha256"]
    p = run(c.bob, "inbox", "open", m["id"], "--maildir", str(maildir), "--ack", "--json", **s.env)
    out = json_of(p)
    assert out["body"] == BODY.decode() and out["sealed"]["outcome"] == "opened"
    assert _names(c, sent["sha256"]) == ["SubmissionAcceptance", "ContentHandover"]


def test_a_recipient_without_an_openpgp_key_is_told_why(sealed: Any) -> None:
    s, sent, eml = sealed
    c = s.c
    # Bob with his S/MIME key only (a home without an OpenPGP key): he cannot acknowledge.
    home = Path(tempfile.mkdtemp(prefix="cm", dir="/tmp"))
    bare = dataclasses.replace(c.bob, home=home)
    json_of(run(bare, "keys", "smime", "import", str(s.bob.p12), "--json", **s.env))
    p = run(bare, "open", str(eml), "--ack", **s.env)
    err = one_line_error(p)
    assert p.returncode == 6 and "opening a sealed message needs your OpenPGP key" in err
    assert "also for S/MIME mail: the acknowledgement is OpenPGP-signed" in err
    assert _names(c, sent["sha256"]) == ["SubmissionAcceptance"]


def test_sealing_to_a_recipient_without_an_openpgp_key_is_refused(
    correspondents: Any, notary_server: NotaryProcess, tmp_path: Path
) -> None:
    s = smime_homes(correspondents, tmp_path)
    c = s.c
    use_notary(c, c.alice, notary_server)
    # Alice sealing to Carol, whose S/MIME certificate she has but no OpenPGP key: refused.
    carol = s.pki.person("carol@example.com")
    json_of(run(c.alice, "keys", "smime", "import-cert", str(carol.cert_pem), "--json", **s.env))
    before = len(c.sink.messages)
    p = _send(s, tmp_path, "--no-locate", to=carol.email)
    err = one_line_error(p)
    assert p.returncode == 6 and "sealed delivery needs carol@example.com's OpenPGP key" in err
    assert "also with --smime" in err and len(c.sink.messages) == before


def test_on_a_terminal_sender_protected_subject_and_size_come_before_the_question(
    sealed: Any,
) -> None:
    s, sent, eml = sealed
    c = s.c
    code, seen = on_a_terminal(c.bob, ["open", str(eml)], b"y", **s.env)
    before, after = seen.split(b"[y/N]", 1)
    assert b"alice@example.org" in before and b"Subject: Contract" in before
    assert b"Size:" in before and b"Friday" not in before
    assert code == 0 and b"Friday" in after, seen
    assert _names(c, sent["sha256"]) == ["SubmissionAcceptance", "ContentHandover"]
