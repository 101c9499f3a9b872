"""certmail.ledger: durable state transitions, the outbox, and the stored exact bytes."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from certmail.ledger import Ledger
from keys.errors import ConflictError, NotFoundError


def ledger(tmp: Path) -> Ledger:
    return Ledger(tmp / "ledger.sqlite", tmp / "outbox", tmp / "sent")


def queued(
    lg: Ledger, tmp: Path, data: bytes = b"Subject: x\r\n\r\nhello\r\n", notarize: bool = True
) -> str:
    src = tmp / "m.eml"
    src.write_bytes(data)
    sha = hashlib.sha256(data).hexdigest()
    lg.enqueue(
        src,
        sha256=sha,
        message_id="<a@b>",
        mail_from="alice@example.org",
        recipients=["bob@example.net"],
        via="smtp",
        notarize=notarize,
    )
    return sha


def test_lifecycle_and_files(tmp_path: Path) -> None:
    lg = ledger(tmp_path)
    sha = queued(lg, tmp_path)
    assert lg.get(sha).status == "queued"
    assert lg.message_path(sha) == tmp_path / "outbox" / f"{sha}.eml"
    assert [e.sha256 for e in lg.outbox()] == [sha]
    assert lg.claim_send(sha)
    assert lg.get(sha).status == "uncertain"  # in flight: not retried on its own
    lg.mark_sent(sha, "250 ok")
    assert lg.get(sha).status == "notarizing"
    assert [e.sha256 for e in lg.outbox()] == [sha]
    lg.add_receipt(sha, {"entry": "e", "proof": "p"})
    e = lg.get(sha)
    assert e.status == "sent" and e.smtp_reply == "250 ok" and e.attempts == 1
    assert lg.outbox() == []
    assert lg.receipts(sha) == [{"entry": "e", "proof": "p"}]
    p = lg.message_path(sha)
    assert p == tmp_path / "sent" / f"{sha}.eml"
    assert hashlib.sha256(p.read_bytes()).hexdigest() == sha


def test_claim_is_exclusive(tmp_path: Path) -> None:
    lg = ledger(tmp_path)
    other = ledger(tmp_path)  # a second process
    sha = queued(lg, tmp_path)
    assert lg.claim_send(sha)
    assert not other.claim_send(sha)
    assert not lg.claim_send(sha)
    assert other.claim_send(sha, include_uncertain=True)


def test_transient_failure_stays_queued_and_survives_reopen(tmp_path: Path) -> None:
    lg = ledger(tmp_path)
    sha = queued(lg, tmp_path)
    lg.claim_send(sha)
    lg.mark_send_failed(sha, "421 later", permanent=False)
    lg.close()
    again = ledger(tmp_path)
    e = again.get(sha)
    assert e.status == "queued" and e.last_error == "421 later"
    assert again.claim_send(sha)


def test_uncertain_and_failed(tmp_path: Path) -> None:
    lg = ledger(tmp_path)
    a = queued(lg, tmp_path, b"a\r\n")
    b = queued(lg, tmp_path, b"b\r\n")
    lg.claim_send(a)
    lg.mark_send_failed(a, "connection lost after DATA", permanent=False, uncertain=True)
    lg.claim_send(b)
    lg.mark_send_failed(b, "550 no", permanent=True)
    assert lg.get(a).status == "uncertain" and not lg.claim_send(a)
    assert lg.get(b).status == "failed"
    assert [e.sha256 for e in lg.outbox()] == [a]


def test_crash_while_sending_is_recovered_as_uncertain(tmp_path: Path) -> None:
    lg = ledger(tmp_path)
    sha = queued(lg, tmp_path)
    lg.claim_send(sha)
    lg.close()  # the process died here
    again = ledger(tmp_path)
    assert again.recover() == [sha]
    assert again.get(sha).smtp == "uncertain"


def test_duplicate_and_lookup(tmp_path: Path) -> None:
    lg = ledger(tmp_path)
    sha = queued(lg, tmp_path, notarize=False)
    with pytest.raises(ConflictError):
        queued(lg, tmp_path, notarize=False)
    assert lg.find(sha[:10]).sha256 == sha
    assert lg.find("<a@b>").sha256 == sha
    with pytest.raises(NotFoundError):
        lg.find("deadbeefdeadbeef")
    lg.claim_send(sha)
    lg.mark_sent(sha, "250")
    assert lg.get(sha).status == "sent"  # notary skipped
    assert (tmp_path / "sent" / f"{sha}.eml").is_file()


def test_kept_and_remove(tmp_path: Path) -> None:
    """Issue 10 item 11: a refused message's copy is listed (kept) and can be removed."""
    lg = ledger(tmp_path)
    sha = queued(lg, tmp_path)
    assert lg.claim_send(sha)
    with pytest.raises(ConflictError):
        lg.remove(sha[:12])  # being sent right now
    lg.mark_send_failed(sha, "554 no", permanent=True)
    assert lg.outbox() == [] and [e.sha256 for e in lg.kept()] == [sha]
    copy = tmp_path / "outbox" / f"{sha}.eml"
    assert copy.is_file()
    assert lg.remove(sha[:12]).sha256 == sha
    assert not copy.exists() and lg.kept() == [] and lg.all() == []
    with pytest.raises(NotFoundError):
        lg.remove(sha[:12])
    sent = queued(lg, tmp_path, data=b"Subject: y\r\n\r\nsent\r\n", notarize=False)
    assert lg.claim_send(sent)
    lg.mark_sent(sent, "250 ok")
    with pytest.raises(NotFoundError, match="not in the outbox"):
        lg.remove(sent)


def test_queued_acks(tmp_path: Path) -> None:
    """Issue 10 item 9: a signed acknowledgement kept until the notary takes it."""
    lg = ledger(tmp_path)
    sha = "ab" * 32
    body = {"sha256": sha, "message_id": "<m@x>", "signed": "s", "fingerprint": "F"}
    to = {
        "sha256": sha,
        "message_id": "<m@x>",
        "recipient": "bob@example.net",
        "notary": "http://n",
    }
    a = lg.enqueue_ack(**to, body=body, error="down")
    assert a.status == "ack queued" and a.body == body and a.attempts == 1
    again = lg.enqueue_ack(**to, body={**body, "signed": "t"}, error="still down")
    assert again.id == a.id and again.attempts == 2 and again.last_error == "still down"
    assert [x.id for x in lg.pending_acks()] == [a.id]
    lg.mark_ack_failed(a.id, "timeout", permanent=False)
    assert lg.pending_acks()[0].attempts == 3
    lg.mark_ack_sent(a.id, {"entry": "e"})
    assert lg.pending_acks(include_failed=True) == []
    done = lg.ack(sha, "bob@example.net", "http://n")
    assert done.state == "sent" and done.receipt == {"entry": "e"}
    # Posted: a later enqueue does not replace it.
    lg.enqueue_ack(**to, body=body, error="x")
    assert lg.ack(sha, "bob@example.net", "http://n").state == "sent"


def test_orphaned_copies_are_listed_and_removable(tmp_path: Path) -> None:
    """A copy stored but never recorded (a crash inside enqueue) is not hidden."""
    lg = ledger(tmp_path)
    sha = queued(lg, tmp_path)
    stray = tmp_path / "outbox" / f"{'cd' * 32}.eml"
    stray.write_bytes(b"x")
    tmp = tmp_path / "outbox" / ".in-abcdefgh"
    tmp.write_bytes(b"y")
    assert lg.orphans() == sorted([stray, tmp])
    assert lg.find_orphan("cdcdcdcd") == stray
    with pytest.raises(NotFoundError):
        lg.find_orphan(sha[:12])  # recorded: not an orphan
    lg.remove_orphan(stray)
    assert lg.orphans() == [tmp] and not stray.exists()
