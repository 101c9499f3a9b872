"""``certmail open --ack`` end to end: a real notary process, real gpg, an SMTP sink.

Alice sends to Bob in direct mode (her SMTP server is the sink, her notary the
real ``certmail notary serve``); Bob opens the delivered bytes with ``--ack``;
the notary logs ContentHandover for Alice's account; Alice's ``certmail
receipts --json`` shows it checked against Bob's key.
"""

from __future__ import annotations

import hashlib
import json
from email import message_from_bytes
from pathlib import Path
from typing import Any

import httpx
import pytest

from certmail.ack import notarized_sha256
from keys.errors import VerificationError
from tests.fixtures.cli import json_of, run, send_args, send_contract, signed_ack, use_notary
from tests.fixtures.notary import NotaryProcess

#: (correspondents, Alice's ``send --json``, Bob's copy of the message)
Contract = tuple[Any, dict[str, Any], Path]


def _setup(c: Any, notary: NotaryProcess) -> None:
    use_notary(c, c.alice, notary)
    c.settings(c.bob, smtp_url=c.sink.url)


@pytest.fixture
def contract(correspondents: Any, notary_server: NotaryProcess, tmp_path: Path) -> Contract:
    """Alice (with the notary) has sent Bob the contract: (correspondents, send --json, copy)."""
    _setup(correspondents, notary_server)
    sent, eml = send_contract(correspondents, tmp_path)
    return correspondents, sent, eml


def _bob_row(c: Any, sha: str) -> list[dict[str, Any]]:
    p = run(c.alice, "receipts", sha, "--json")
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    steps: list[dict[str, Any]] = out["recipients"][c.bob.email]
    return steps


def test_open_ack_logs_content_handover_seen_by_the_sender(
    contract: Contract, notary_server: NotaryProcess, tmp_path: Path
) -> None:
    c, sent, eml = contract
    p = run(c.bob, "open", str(eml), "--ack", "--json")
    assert p.returncode == 0, p.stderr
    ack = json.loads(p.stdout)["ack"]
    bob_fpr = c.bob.keyring.key_for(c.bob.email).fingerprint
    assert ack["sha256"] == sent["sha256"] and ack["fingerprint"] == bob_fpr
    assert ack["notary"] == notary_server.url and ack["mdn_to"] is None

    steps = _bob_row(c, sent["sha256"])
    assert [s["event"] for s in steps] == ["SubmissionAcceptance", "ContentHandover"]
    handover = steps[-1]
    assert handover["step"] == "acknowledged"
    assert handover["fingerprint"] == bob_fpr and handover["key"] == "recipient's key"
    # The human view says the same.
    p = run(c.alice, "receipts", sent["sha256"])
    assert p.returncode == 0 and f"{c.bob.email}: acknowledged" in p.stdout


def test_ack_by_a_key_that_is_not_the_recipients_is_reported(
    contract: Contract,
    notary_server: NotaryProcess,
    tmp_path: Path,
    keyring_factory: Any,
) -> None:
    c, sent, _ = contract
    # Mallory made a key with Bob's address; the notary accepts the signature
    # (the key does name bob), but Alice encrypted to another key.
    mallory, mallory_fpr = keyring_factory(c.bob.email, "Not Bob")
    forged = signed_ack(mallory, sent, c.bob.email, notary_server.url)
    r = httpx.post(notary_server.url + "/v1/ack", json=forged.to_json())
    assert r.status_code == 200, r.text
    steps = _bob_row(c, sent["sha256"])
    handover = steps[-1]
    assert handover["event"] == "ContentHandover" and handover["fingerprint"] == mallory_fpr
    assert handover["key"] == "not the recipient's key"
    assert handover["step"] == f"acknowledged by a key that is not {c.bob.email}'s"
    p = run(c.alice, "receipts", sent["sha256"])
    assert f"acknowledged by a key that is not {c.bob.email}'s" in p.stdout


def test_forged_signature_is_refused_by_the_notary(
    contract: Contract, notary_server: NotaryProcess, tmp_path: Path
) -> None:
    c, sent, _ = contract
    good = signed_ack(c.bob.keyring, sent, c.bob.email, notary_server.url).to_json()
    forged = dict(good, signed=good["signed"].replace("Time: 2", "Time: 1"))
    r = httpx.post(notary_server.url + "/v1/ack", json=forged)
    assert r.status_code == 422 and r.json()["error"] == "bad_signature"
    steps = _bob_row(c, sent["sha256"])
    assert [s["event"] for s in steps] == ["SubmissionAcceptance"]


def test_the_notarized_hash_rule(tmp_path: Path) -> None:
    body = b"From: a@x.test\r\nMessage-ID: <1@x.test>\r\n\r\nhello\r\n"
    sha = hashlib.sha256(body).hexdigest()
    assert notarized_sha256(body) == (sha, 0)
    # The recipient's servers prepend trace fields: stripped.
    traced = b"Return-Path: <a@x.test>\r\nReceived: from x\r\n by y; now\r\n" + body
    assert notarized_sha256(traced)[0] == sha
    # The relay names the hash in Certmail-Evidence, under its own prepended fields.
    relayed = (
        b"Received: from relay\r\nDKIM-Signature: v=1; a=rsa-sha256;\r\n b=abc\r\n"
        + f"Certmail-Evidence: sha256={sha}; notary=notary.test/log\r\n".encode()
        + b"X-Other: 1\r\n"
        + body
    )
    relayed = b"Received: by mx\r\n" + relayed
    assert notarized_sha256(relayed)[0] == sha
    # A changed body no longer has the named hash.
    try:
        notarized_sha256(relayed.replace(b"hello", b"jello"))
    except VerificationError:
        pass
    else:
        raise AssertionError("a changed message passed")


def _open_with_mdn(c: Any, raw: bytes, tmp_path: Path) -> tuple[dict[str, Any], Any]:
    """Bob opens ``raw`` with ``--ack --mdn``: the ack JSON, and the one message (the MDN)
    that reached the sink, sent to Alice."""
    eml = tmp_path / "in.eml"
    eml.write_bytes(raw)
    before = len(c.sink.messages)
    p = run(c.bob, "open", str(eml), "--ack", "--mdn", "--json")
    assert p.returncode == 0, p.stderr
    ack: dict[str, Any] = json.loads(p.stdout)["ack"]
    assert ack["mdn_to"] == c.alice.email and ack["mdn_reply"].startswith("250")
    (got,) = c.sink.messages[before:]
    return ack, got


def test_mdn_arrives_signed(
    correspondents: Any, notary_server: NotaryProcess, tmp_path: Path
) -> None:
    """A message asking for an MDN (Disposition-Notification-To), sealed and notarized
    through the library; Bob opens it with --ack --mdn; the MDN reaches the sink."""
    from certmail.api import Certmail
    from certmail.compose import Headers, new_message_id, now_date
    from certmail.mime import canonicalize, parse_entity
    from certmail.notary_client import NotaryClient
    from certmail.rfc3156 import signed_parts
    from certmail.seal import seal

    c = correspondents
    _setup(c, notary_server)
    mid = new_message_id("example.org")
    h = Headers(
        from_addr=c.alice.email,
        to=(c.bob.email,),
        cc=(),
        subject="Read me",
        message_id=mid,
        date=now_date(),
        from_name="Alice",
    )
    with Certmail(c.alice.settings) as cm:
        sealed = seal(
            cm.keyring,
            tmp_path / "w",
            h,
            b"Tell me when you read it.\n",
            extra_outer=[
                f"Certmail-Notary: {notary_server.url}",
                f"Disposition-Notification-To: {c.alice.email}",
            ],
        )
    data = sealed.path.read_bytes()
    with NotaryClient(notary_server.url, c.alice.settings.notary_token) as nc:
        nc.notarize(hashlib.sha256(data).hexdigest(), mid)
    _ack, got = _open_with_mdn(c, data, tmp_path)
    assert got.rcpt_tos == [c.alice.email] and got.mail_from in ("", "<>")
    msg = message_from_bytes(got.data)
    assert msg.get_content_type() == "multipart/signed"
    sp = signed_parts(parse_entity(canonicalize(got.data)))
    sig = c.alice.keyring.verify_detached(sp.signed, sp.signature)
    assert sig.primary_fingerprint == c.bob.keyring.key_for(c.bob.email).fingerprint
    report = message_from_bytes(sp.signed)
    assert report.get_content_type() == "multipart/report"
    assert report.get_param("report-type") == "disposition-notification"
    parts = report.get_payload()
    assert isinstance(parts, list) and len(parts) == 2
    dn: Any = parts[1]
    assert dn.get_content_type() == "message/disposition-notification"
    text = sp.signed.decode().split("Content-Type: message/disposition-notification", 1)[1]
    assert f"Original-Message-ID: {mid}" in text
    assert f"Final-Recipient: rfc822;{c.bob.email}" in text
    assert "Disposition: manual-action/MDN-sent-manually; displayed" in text
    # A flipped byte in the report breaks the signature.
    try:
        c.alice.keyring.verify_detached(sp.signed.replace(b"displayed", b"deleted!!"), sp.signature)
    except VerificationError:
        pass
    else:
        raise AssertionError("a changed MDN verified")


def test_send_request_mdn_gets_a_signed_read_receipt(
    correspondents: Any, notary_server: NotaryProcess, tmp_path: Path
) -> None:
    """``certmail send --request-mdn`` asks for the MDN; Bob's ``open --ack --mdn`` answers
    it; without the flag (the test above) nothing asks and no MDN is sent."""
    c = correspondents
    _setup(c, notary_server)
    args = send_args(c.bob.email, "Read me", "--via", "smtp", "--request-mdn")
    sent = json_of(run(c.alice, *args, stdin=b"Tell me when you read it.\n"))
    raw = c.sink.messages[-1].data
    outer = message_from_bytes(raw)
    assert outer["Disposition-Notification-To"] == c.alice.email
    ack, got = _open_with_mdn(c, raw, tmp_path)
    assert ack["sha256"] == sent["sha256"]
    assert got.rcpt_tos == [c.alice.email]
    assert sent["message_id"].encode() in got.data  # Original-Message-ID
