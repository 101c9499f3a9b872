"""RFC 8098 read receipts coming back (issue 11 item 5), end to end.

Alice sends with ``--request-mdn`` (direct mode, a real notary process, an SMTP
sink); Bob's ``open --ack --mdn`` sends a signed MDN; Alice's ``open`` (or
``inbox list`` over a Maildir) recognises it, matches it to her message by
Original-Message-ID, keeps it in her ledger, and ``receipts`` shows it labelled.
An unsigned MDN (as Thunderbird writes one) is kept as weak; a forged one, or
one for a message she never sent, is refused with nothing stored.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from certmail.mdn_in import stored
from tests.fixtures.cli import json_of, one_line_error, run
from tests.fixtures.mdn import thunderbird_mdn

pytestmark = pytest.mark.timeout(240)


def test_a_signed_mdn_is_kept_and_shown_in_receipts(
    sent_and_mdn: tuple[Any, dict[str, Any], bytes], tmp_path: Path
) -> None:
    c, sent, raw = sent_and_mdn
    f = tmp_path / "mdn.eml"
    f.write_bytes(raw.replace(b"\r\n", b"\n"))  # as a Maildir keeps it
    got = json_of(run(c.alice, "open", str(f), "--json"))["mdn"]
    assert got["label"] == "signed" and got["sha256"] == sent["sha256"]
    assert got["final_recipient"] == c.bob.email
    assert got["signer_fingerprint"] == c.bob.keyring.key_for(c.bob.email).fingerprint
    assert got["disposition"].endswith("displayed")
    # Opened twice: kept once.
    json_of(run(c.alice, "open", str(f), "--json"))
    assert len(stored(c.alice.settings.ledger_path, sent["sha256"])) == 1
    doc = json_of(run(c.alice, "receipts", sent["sha256"], "--json"))
    assert [m["label"] for m in doc["mdns"]] == ["signed"]
    text = run(c.alice, "receipts", sent["sha256"])
    assert "signed MDN from the recipient's key" in text.stdout


def test_an_unsigned_mdn_is_kept_as_weak_and_found_by_inbox(
    sent_and_mdn: tuple[Any, dict[str, Any], bytes], tmp_path: Path
) -> None:
    c, sent, _ = sent_and_mdn
    maildir = tmp_path / "Maildir"
    for d in ("cur", "new", "tmp"):
        (maildir / d).mkdir(parents=True)
    mdn = thunderbird_mdn(c.bob.email, c.alice.email, sent["message_id"])
    (maildir / "new" / "1700000000.M1P1.mx").write_bytes(mdn.replace(b"\r\n", b"\n"))
    p = run(c.alice, "inbox", "list", "--maildir", str(maildir))
    assert p.returncode == 0, p.stderr
    assert "unsigned MDN (weak" in p.stdout
    [m] = stored(c.alice.settings.ledger_path, sent["sha256"])
    assert (m.label, m.reporting_ua) == ("unsigned", "example.net; Thunderbird 115.3.1")
    doc = json_of(run(c.alice, "receipts", sent["sha256"], "--json"))
    assert [x["label"] for x in doc["mdns"]] == ["unsigned"]


def test_a_forged_signed_mdn_is_refused_and_nothing_kept(
    sent_and_mdn: tuple[Any, dict[str, Any], bytes], tmp_path: Path
) -> None:
    c, sent, raw = sent_and_mdn
    f = tmp_path / "forged.eml"
    f.write_bytes(raw.replace(b"displayed", b"deleted!!", 1))
    p = run(c.alice, "open", str(f))
    assert p.returncode == 3
    one_line_error(p)
    assert stored(c.alice.settings.ledger_path, sent["sha256"]) == []


def test_an_mdn_for_a_message_never_sent_is_refused(
    sent_and_mdn: tuple[Any, dict[str, Any], bytes], tmp_path: Path
) -> None:
    c, sent, _ = sent_and_mdn
    f = tmp_path / "other.eml"
    f.write_bytes(thunderbird_mdn(c.bob.email, c.alice.email, "<never@example.org>"))
    p = run(c.alice, "open", str(f), "--json")
    assert p.returncode == 6
    assert "not a message you sent" in one_line_error(p)
    assert stored(c.alice.settings.ledger_path, sent["sha256"]) == []
    assert json.loads(run(c.alice, "receipts", sent["sha256"], "--json").stdout)["mdns"] == []


def test_label_says_who_signed() -> None:
    from certmail.mdn_in import IncomingMdn, label_of

    base = IncomingMdn("<m@x>", "bob@example.net", None, "a/b; displayed", None, "0" * 64)
    assert label_of(base, ("bob@example.net",)) == "unsigned"
    by_bob = IncomingMdn(
        **{**base.__dict__, "signer_fingerprint": "F" * 40, "signer_emails": ("Bob@Example.net",)}
    )
    assert label_of(by_bob, ("bob@example.net",)) == "signed"
    # Signed by the key it names, but the message never went to that address.
    assert label_of(by_bob, ("carol@example.net",)) == "signed-other"
    by_eve = IncomingMdn(**{**by_bob.__dict__, "signer_emails": ("eve@evil.test",)})
    assert label_of(by_eve, ("bob@example.net",)) == "signed-other"
