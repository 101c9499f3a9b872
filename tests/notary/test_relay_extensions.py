"""The relay's delivery and SMTP extensions, end to end (a notary subprocess, aiosmtpd).

Issue 10 item 6c: the relay advertises SMTPUTF8 (RFC 6531), so it must carry mail to
internationalised addresses: submitted with SMTPUTF8, delivered with SMTPUTF8 to a
recipient server that offers it, and failed with clear evidence where it does not.
SIZE (RFC 1870): a message larger than the recipient server's SIZE is not sent."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from certmail.relay_client import submit
from tests.notary.relay_helpers import ALICE, BOB, RelayNotary, configure, message

RECIPIENT = "用户@例子.测试"


@pytest.fixture
def utf8_sink(smtp_sink_factory: Any) -> Any:
    return smtp_sink_factory(smtputf8=True)


@pytest.fixture
def relay(notary_dir: Path, utf8_sink: Any) -> Iterator[RelayNotary]:
    configure(notary_dir, relay_retry_initial=0.2, relay_max_message_bytes=200_000)
    r = RelayNotary(notary_dir, utf8_sink.port)
    r.start()
    yield r
    r.proc.stop()


def test_internationalised_recipient_is_accepted_and_delivered(
    relay: RelayNotary, utf8_sink: Any
) -> None:
    data = message("utf8-1", to=RECIPIENT, body="你好")
    sha = submit(
        data, mail_from=ALICE, recipients=[RECIPIENT], notary_url=relay.url, token=relay.token
    )
    events = relay.wait_events(sha, "RelayToNonERDS")
    delivered = next(e for e in events if e["event"] == "RelayToNonERDS")
    assert delivered["recipient"] == RECIPIENT
    (got,) = utf8_sink.messages
    assert got.rcpt_tos == [RECIPIENT] and "SMTPUTF8" in got.mail_options
    assert got.data.endswith(data)  # only trace and evidence header lines prepended


def test_a_recipient_server_without_smtputf8_gets_failure_evidence(
    notary_dir: Path, smtp_sink: Any
) -> None:
    configure(notary_dir, relay_retry_initial=0.2, relay_max_message_bytes=200_000)
    r = RelayNotary(notary_dir, smtp_sink.port)  # smtp_sink does not offer SMTPUTF8
    r.start()
    try:
        sha = submit(
            message("utf8-2", to=RECIPIENT),
            mail_from=ALICE,
            recipients=[RECIPIENT],
            notary_url=r.url,
            token=r.token,
        )
        events = r.wait_events(sha, "RelayToNonERDSFailure")
    finally:
        r.proc.stop()
    failure = next(e for e in events if e["event"] == "RelayToNonERDSFailure")
    assert failure["reason"] == "rejected" and failure["stage"] == "SMTPUTF8"
    assert failure["reply"]["code"] == 550 and "5.6.7" in failure["reply"]["text"]
    # the message never reached the server: at most the failure DSN to Alice did (<>)
    assert [m for m in smtp_sink.messages if m.mail_from != "<>"] == []
    assert RECIPIENT not in smtp_sink.handler.rcpt_seen
    assert all(m.rcpt_tos == [ALICE] for m in smtp_sink.messages)


def test_utf8_header_addresses_are_read_as_utf8() -> None:
    from notary.relay.content import inspect

    info = inspect(message("utf8-3", to=f"Zhang <{RECIPIENT}>"))
    assert RECIPIENT in info.recipients  # the UTF-8 address, read as UTF-8 from the To: field


def test_a_message_over_the_recipient_servers_size_fails_with_evidence(
    notary_dir: Path, smtp_sink_factory: Any
) -> None:
    sink = smtp_sink_factory(size_limit=2000)
    configure(notary_dir, relay_retry_initial=0.2, relay_max_message_bytes=200_000)
    r = RelayNotary(notary_dir, sink.port)
    r.start()
    try:
        small = submit(
            message("size-1"), mail_from=ALICE, recipients=[BOB], notary_url=r.url, token=r.token
        )
        r.wait_events(small, "RelayToNonERDS")
        big = submit(
            message("size-2", body="\r\n".join(["x" * 70] * 60)),
            mail_from=ALICE,
            recipients=[BOB],
            notary_url=r.url,
            token=r.token,
        )
        events = r.wait_events(big, "RelayToNonERDSFailure")
    finally:
        r.proc.stop()
    failure = next(e for e in events if e["event"] == "RelayToNonERDSFailure")
    assert failure["reason"] == "rejected" and failure["stage"] == "SIZE"
    assert failure["reply"]["code"] == 552 and "2000" in failure["reply"]["text"]
    sent = [m for m in sink.messages if m.mail_from != "<>"]  # not the failure DSN to Alice
    assert len(sent) == 1 and any(o.startswith("SIZE=") for o in sent[0].mail_options)
