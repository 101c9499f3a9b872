"""certmail.timeline: the receipt timeline scripts (and ``certmail receipts``) build."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

from certmail.timeline import Event, build_timeline, statement_of, statements
from keys.gpg import Keyring

SHA = "ab" * 32
BOB, CAROL = "bob@example.net", "carol@example.org"


def receipt(event: str, time: str, **members: Any) -> dict[str, Any]:
    stmt = {
        "v": 1,
        "event": event,
        "time": time,
        "notary": "n.test/log",
        "message": {"sha256": SHA, "id": "<m@a.test>"},
        **members,
    }
    return {"entry": base64.b64encode(json.dumps(stmt).encode()).decode(), "proof": "-"}


QUEUED = {"code": 250, "text": "2.0.0 queued as 42"}


def never() -> Keyring:
    raise AssertionError("the keyring is made only when an acknowledgement needs it")


def test_relay_timeline_per_recipient_and_final() -> None:
    got = [
        receipt("SubmissionAcceptance", "t1", channel="smtp", recipients=[BOB, CAROL]),
        receipt("RelayToNonERDS", "t2", recipient=BOB, host="mx.example.net", reply=QUEUED),
    ]
    tl = build_timeline(got, [BOB, CAROL], keyring=never)
    assert [e.step for e in tl.recipients[BOB]] == ["accepted", "delivered"]
    assert tl.status(CAROL) == "accepted" and not tl.final
    assert tl.message_id == "<m@a.test>"
    delivered = tl.recipients[BOB][1]
    assert (delivered.host, delivered.reply) == ("mx.example.net", QUEUED)
    no_user, why = {"code": 550, "text": "no such user"}, "5.1.1 no such user"
    got.append(receipt("RelayToNonERDSFailure", "t3", recipient=CAROL, reason=why, reply=no_user))
    tl = build_timeline(got, [BOB, CAROL])
    assert tl.final and tl.status(CAROL) == "failed"
    assert tl.recipients[CAROL][-1].reason == "5.1.1 no such user"


def test_json_shape_is_what_receipts_json_prints() -> None:
    got = [
        receipt("SubmissionAcceptance", "t1", recipients=[BOB]),
        receipt("RelayToNonERDS", "t2", recipient=BOB, host="mx", reply=None),
        receipt("ContentAccessTracking", "t3", recipient=BOB, strength="weak"),
    ]
    assert build_timeline(got, [BOB]).to_json() == {
        "recipients": {
            BOB: [
                {"step": "accepted", "event": "SubmissionAcceptance", "time": "t1"},
                {
                    "step": "delivered",
                    "event": "RelayToNonERDS",
                    "time": "t2",
                    "host": "mx",
                    "reply": None,
                },
                {
                    "step": "opened (tracking link: weak evidence)",
                    "event": "ContentAccessTracking",
                    "time": "t3",
                    "strength": "weak",
                },
            ]
        },
        "final": True,
    }


def test_a_direct_send_is_final_at_once() -> None:
    tl = build_timeline([receipt("SubmissionAcceptance", "t1", channel="api")], [BOB])
    assert tl.final
    assert tl.status(BOB) == "notarized (sent directly, not through the relay)"


def test_no_evidence_and_undecodable_receipts() -> None:
    tl = build_timeline([{"entry": "not base64!"}, {"proof": "-"}], [BOB])
    assert tl.recipients == {BOB: []} and not tl.final
    assert tl.status(BOB) == "no evidence yet" and tl.message_id is None
    assert statements([{"entry": "not base64!"}]) == []
    assert statement_of({"entry": base64.b64encode(b"[1]").decode()}) is None


def test_acknowledgement_checked_against_the_keyring(tmp_path: Path) -> None:
    ack = receipt(
        "ContentHandover", "t4", recipient=BOB, fingerprint="F" * 40, signed="x", signature="y"
    )
    unchecked = build_timeline([ack], [BOB]).recipients[BOB][0]
    assert unchecked == Event("acknowledged", "ContentHandover", "t4", fingerprint="F" * 40)
    ring = Keyring(tmp_path / "gnupg")  # holds no key for Bob: the ack cannot be his
    checked = build_timeline([ack], [BOB], keyring=lambda: ring).recipients[BOB][0]
    assert checked.step == f"acknowledged by a key that is not {BOB}'s"
    assert checked.key == "not the recipient's key"
    assert checked.detail == f"no key for {BOB} in your keyring"
    assert checked.to_json()["key"] == checked.key


def test_delivery_state_reads_the_relays_answer_and_says_it_in_one_line() -> None:
    from certmail.timeline import delivery_states

    states = delivery_states(
        [
            {
                "recipient": BOB,
                "state": "queued",
                "attempts": 2,
                "last_attempt": "2026-12-01T10:00:00Z",
                "last_reply": {"code": 451, "text": "4.7.1  greylisted"},
                "last_error": "RCPT: 451 4.7.1 greylisted",
                "next_attempt": "2026-12-01T10:05:00Z",
            },
            {
                "recipient": CAROL,
                "state": "failed",
                "attempts": 1,
                "last_reply": None,
                "last_error": "connection refused",
                "attempts_extra": "ignored",
            },
            {"recipient": "odd@example.net", "state": None, "attempts": "many"},
        ]
    )
    assert states[BOB].summary() == (
        "queued, 2 attempts, last reply 451 4.7.1 greylisted, next attempt 2026-12-01T10:05:00Z"
    )
    assert states[CAROL].summary() == "failed, 1 attempt, last reply connection refused"
    assert states["odd@example.net"].summary() == "unknown, 0 attempts"
    assert states[BOB].to_json()["last_reply"] == {"code": 451, "text": "4.7.1  greylisted"}


def test_one_vocabulary_with_the_senders_view() -> None:
    """Every event's step starts with the state word the sender's view (/app) shows for it
    (notary/states.py); a virus and an expired seal read as docs/web.md names them."""
    from notary.states import EVENT_STATES
    from notary.web.app_render import timeline_html

    for event, state in EVENT_STATES.items():
        got = [receipt("SubmissionAcceptance", "t1", channel="smtp", recipients=[BOB])]
        if event != "SubmissionAcceptance":
            got.append(receipt(event, "t2", recipient=BOB, recipients=[BOB]))
        step = build_timeline(got, [BOB]).status(BOB)
        assert step == state.step and step.split(" ")[0] == state.word, (event, step)
        page = timeline_html(statements(got[-1:]), [])
        assert f'<span class="state {state.word}">{state.word}</span>' in page, (event, page)
    virus = [receipt("VirusDetected", "t1", channel="smtp", recipients=[BOB])]
    assert build_timeline(virus, [BOB]).status(BOB) == "virus (the message was refused)"
