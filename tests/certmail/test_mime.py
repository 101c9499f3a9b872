"""certmail.mime: header fields, and the strict From reading the sender checks use (RFC 5322)."""

from __future__ import annotations

import pytest

from certmail.mime import header_fields, parse_entity, same_address, single_mailbox


@pytest.mark.parametrize(
    ("value", "want"),
    [
        ("alice@example.org", "alice@example.org"),
        ("Alice <alice@example.org>", "alice@example.org"),
        ("<alice@example.org>", "alice@example.org"),
        ('"Smith, Alice" <alice@example.org>', "alice@example.org"),
        ("Alice\r\n <alice@example.org>", "alice@example.org"),  # folded
        ("=?utf-8?q?Al=C3=AFce?= <alice@example.org>", "alice@example.org"),
        # Display names and comments are not addresses.
        ('"bob@example.net" <ceo@example.org>', "ceo@example.org"),
        ("ceo@example.org (bob@example.net)", "ceo@example.org"),
        ("=?utf-8?q?bob@example.net?= <ceo@example.org>", "ceo@example.org"),
        # Not exactly one mailbox, or not parseable without a defect: nothing.
        ("bob@example.net, ceo@example.org", None),
        ("friends: bob@example.net;", None),
        ("bob@example.net <ceo@example.org>", None),
        ("bob@example.net ceo@example.org", None),
        ("bob", None),
        ("", None),
        ("bob@example.net\rFrom: ceo@example.org", None),
        (None, None),
    ],
)
def test_single_mailbox(value: str | None, want: str | None) -> None:
    assert single_mailbox(value) == want


def test_single_mailbox_of_raw_8bit_field() -> None:
    e = parse_entity('From: "Ärger" <alice@example.org>\r\nTo: b@example.net\r\n\r\n'.encode())
    assert single_mailbox(e.headers["From"]) == "alice@example.org"
    e = parse_entity(b'From: "\xc4" <alice@example.org>\r\n\r\n')  # not UTF-8: name unreadable
    assert single_mailbox(e.headers["From"]) == "alice@example.org"
    e = parse_entity(b"From: alic\xc4@example.org\r\n\r\n")
    assert single_mailbox(e.headers["From"]) != "alice@example.org"
    assert single_mailbox("alic\udcc4@example.org") is None  # surrogate-escaped, not UTF-8


def test_same_address_is_whole_and_case_insensitive() -> None:
    assert same_address("Bob@Example.NET", "bob@example.net")
    assert not same_address("jimbob@example.net", "bob@example.net")
    assert not same_address("bob@example.net.attacker.test", "bob@example.net")


def test_header_fields_decoded() -> None:
    e = parse_entity(
        b"From: =?utf-8?q?Al=C3=AFce?= <a@example.org>\r\nSubject: a\r\n b\r\n"
        b"Certmail-Notary: one\r\nCertmail-Notary: two\r\nX-Other: x\r\n\r\n"
    )
    assert header_fields(e.headers) == {
        "From": "Al\u00efce <a@example.org>",
        "Subject": "a b",
        "Certmail-Notary": "one",
    }
