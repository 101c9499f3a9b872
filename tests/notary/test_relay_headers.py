"""Relay header checks (issue 10, item 2): attack scripts against the strict header reader.

An account may send only as its own addresses. Each case is a header section
that a lax parser and a recipient's software could read differently, or an
originator field other than From: naming another address; the relay refuses
each with a 5xx, and nothing is logged or delivered.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from notary.relay.content import RelayRefusal, check_sender, inspect
from tests.notary.relay_helpers import ALICE, BOB, RelayNotary, configure

OWN = frozenset({ALICE})
TAIL = (
    f"To: {BOB}\r\nSubject: test\r\nMessage-ID: <{{mid}}@a.test>\r\n"
    "Date: Sat, 21 Nov 2026 12:00:00 +0000\r\n"
)


def _msg(mid: str, head: str, *, tail: str = TAIL) -> bytes:
    return (head + tail.format(mid=mid) + "\r\nhello\r\n").encode("utf-8", "surrogateescape")


#: (name, header lines before To:, reply code): every one refused.
ATTACKS = [
    # "From :" is a Unix "From " line to Python's parser; a second From: follows.
    ("obs-from-first-line", f"From : ceo@a.test\r\nFrom: {ALICE}\r\n", 554),
    ("obs-from-later", f"From: {ALICE}\r\nFrom : ceo@a.test\r\n", 554),
    ("space-before-colon", f"From: {ALICE}\r\nSender : ceo@a.test\r\n", 554),
    ("from-hidden-by-bare-cr", f"X-Note: x\rFrom: ceo@a.test\r\nFrom: {ALICE}\r\n", 550),
    ("from-hidden-by-bare-lf", f"X-Note: x\nFrom: ceo@a.test\r\nFrom: {ALICE}\r\n", 550),
    ("duplicate-from", f"From: {ALICE}\r\nFrom: ceo@a.test\r\n", 554),
    (
        "duplicate-content-type",
        f"From: {ALICE}\r\nContent-Type: text/plain\r\nContent-Type: multipart/encrypted\r\n",
        554,
    ),
    ("nul", f"From: {ALICE}\r\nX-Note: a\0b\r\n", 550),  # NUL anywhere in DATA
    ("folded-whitespace-only", f"From: {ALICE}\r\n \r\nX-Note: b\r\n", 554),
    ("first-line-folded", f" X-Note: b\r\nFrom: {ALICE}\r\n", 554),
    ("line-without-colon", f"From: {ALICE}\r\nFrom ceo@a.test\r\n", 554),
    ("sender", f"From: {ALICE}\r\nSender: ceo@a.test\r\n", 550),
    ("resent-from", f"From: {ALICE}\r\nResent-From: ceo@a.test\r\n", 550),
    ("resent-sender", f"From: {ALICE}\r\nResent-Sender: ceo@a.test\r\n", 550),
    (
        "second-resent-block",
        f"From: {ALICE}\r\nResent-From: {ALICE}\r\nResent-From: ceo@a.test\r\n",
        550,
    ),
    ("quoted-display-name", f'From: "{ALICE}" <ceo@a.test>\r\n', 550),
    ("comment", f"From: ceo@a.test ({ALICE})\r\n", 550),
    ("two-parsers-disagree", f"From: {ALICE} <ceo@a.test>\r\n", 554),
    ("angle-in-local-part", "From: a<ceo@a.test>@a.test\r\n", 554),
    ("group", f"From: friends: {ALICE};\r\n", 554),
    ("second-mailbox", f"From: {ALICE}, ceo@a.test\r\nSender: {ALICE}\r\n", 550),
    ("several-mailboxes-no-sender", f"From: {ALICE}, {ALICE}\r\n", 554),
    ("encoded-word-address", f"From: =?utf-8?q?{ALICE}?= <ceo@a.test>\r\n", 554),
    ("not-utf8", f"From: {ALICE}\r\nSender: \udcff <{ALICE}>\r\n", 554),
]


def _refusal(data: bytes) -> str:
    with pytest.raises(RelayRefusal) as e:
        check_sender(inspect(data), OWN)
    return e.value.reply


@pytest.mark.parametrize(("name", "head", "code"), ATTACKS, ids=[a[0] for a in ATTACKS])
def test_header_attack_is_refused(name: str, head: str, code: int) -> None:
    assert _refusal(_msg(name, head)).startswith(f"{code} ")


def test_every_originator_field_is_named_in_the_reply() -> None:
    for field in ("Sender", "Resent-From", "Resent-Sender"):
        reply = _refusal(_msg("f", f"From: {ALICE}\r\n{field}: ceo@a.test\r\n"))
        assert (
            reply == f"550 5.7.1 {field}: ceo@a.test is not an address of the authenticated account"
        )


@pytest.mark.parametrize(
    "head",
    [
        f"From: {ALICE}\r\n",
        f"From: Alice <{ALICE}>\r\n",
        f"From: John Q. Public <{ALICE}>\r\n",  # obsolete phrase: both parsers agree
        f'From: "Smith, Alice" <{ALICE}>\r\nSender: {ALICE}\r\n',
        f"From: Alice\r\n <{ALICE}>\r\nResent-From: {ALICE}\r\nResent-Sender: {ALICE}\r\n",
        f"From: =?utf-8?q?M=C3=BCller?= <{ALICE}>\r\nX-Folded: a\r\n\tb\r\n",
        f"From: Müller <{ALICE}>\r\n",
    ],
)
def test_honest_headers_pass(head: str) -> None:
    info = inspect(_msg("ok", head))
    check_sender(info, OWN)
    assert set(info.senders) == {ALICE}


# --- through the relay -------------------------------------------------------------------


@pytest.fixture(scope="module")
def relay(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RelayNotary, Any]]:
    from tests.fixtures.notary import init_notary_dir
    from tests.fixtures.smtp import SmtpSink

    sink = SmtpSink(tmp_path_factory.mktemp("sink"))
    sink.start()
    d: Path = init_notary_dir(tmp_path_factory.mktemp("headers") / "notary")
    configure(d, relay_retry_initial=0.2)
    r = RelayNotary(d, sink.port)
    r.start()
    yield r, sink
    r.proc.stop()
    sink.stop()


def test_header_attacks_through_the_relay(relay: tuple[RelayNotary, Any]) -> None:
    r, sink = relay
    s = r.connect()
    s.login(ALICE, r.token)
    for name, head, code in ATTACKS:
        data = _msg(name, head)
        assert s.mail(ALICE)[0] == 250 and s.rcpt(BOB)[0] == 250
        s.putcmd("DATA")
        assert s.getreply()[0] == 354
        s.send(data + b".\r\n")  # raw: smtplib would "fix" bare CR and LF
        got, text = s.getreply()
        assert got == code, (name, got, text)
        assert r.events(hashlib.sha256(data).hexdigest()) == [], name
    s.close()
    assert sink.messages == []
