"""Sealed delivery's request bodies and refusal text (notary/sealformat.py, docs/formats.md §8)."""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from typing import Any

import pytest

from keys.errors import MalformedError
from notary.ackformat import Ack, ack_text, parse_ack_text
from notary.sealformat import parse_refusal_request, parse_registration, refusal_text

SHA = "ab" * 32
FPR = "0123456789ABCDEF0123456789ABCDEF01234567"


def _reg(**changes: Any) -> dict[str, Any]:
    body = {
        "sha256": SHA,
        "message_id": "<1@example.org>",
        "share": base64.b64encode(bytes(range(32))).decode(),
        "fingerprints": [FPR],
        "recipients": ["Bob@Example.net"],
        "expires": "2026-12-15T17:00:00.000000Z",
    }
    body.update(changes)
    return body


def test_registration_parsed() -> None:
    r = parse_registration(_reg())
    assert r.share == bytes(range(32)) and r.fingerprints == (FPR,)
    assert r.recipients == ("bob@example.net",) and r.expires.year == 2026


@pytest.mark.parametrize(
    "changes",
    [
        {"sha256": "AB" * 32},
        {"share": base64.b64encode(b"short").decode()},
        {"share": "not base64!"},
        {"fingerprints": []},
        {"fingerprints": [FPR.lower()]},
        {"recipients": ["no-at-sign"]},
        {"expires": "tomorrow"},
        {"message_id": "<a\r\nBcc: x@y>"},
        {"extra": 1},
    ],
)
def test_bad_registrations_refused(changes: dict[str, Any]) -> None:
    with pytest.raises(MalformedError):
        parse_registration(_reg(**changes))


def test_refusal_text_is_not_an_acknowledgement() -> None:
    ack = Ack(SHA, "<1@example.org>", "bob@example.net", datetime(2026, 12, 1, tzinfo=UTC), "n")
    text = refusal_text(ack)
    assert text.startswith("certmail refusal of a sealed message v1\n")
    with pytest.raises(MalformedError):
        parse_ack_text(text)  # a refusal can never be posted as an acknowledgement
    body = {
        "sha256": SHA,
        "message_id": "<1@example.org>",
        "recipient": "bob@example.net",
        "signed": text,
        "signature": "sig",
        "public_key": "key",
    }
    assert parse_refusal_request(body).ack == ack
    with pytest.raises(MalformedError):  # and an acknowledgement is no refusal
        parse_refusal_request(dict(body, signed=ack_text(ack)))
    with pytest.raises(MalformedError):
        parse_refusal_request(dict(body, sha256="cd" * 32))
