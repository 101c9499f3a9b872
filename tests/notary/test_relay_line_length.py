"""RFC 5321 §4.5.3.1.6 through the relay: text lines of at most 998 octets + CRLF.

The relay must not accept (log ``SubmissionAcceptance``, answer ``250``) a
message its next hop would refuse, nor rewrite it (the notary hashes the exact
bytes). A line of 998 octets, counted as the client means it (a transparency
dot not counted), passes byte for byte to a loopback aiosmtpd (which takes
999 + CRLF as sent); one of 999 is refused with ``500`` after the real end of
the data, and nothing is logged or delivered.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from notary.relay.incoming import LINE_LIMIT, TOO_LONG
from tests.fixtures.notary import configure
from tests.notary.relay_helpers import (
    ALICE,
    BOB,
    RelayNotary,
    delivered_as_submitted,
    message,
    submit_accepted,
    wait_for,
)


def test_998_octets_pass_byte_for_byte_999_are_refused_unlogged(
    notary_dir: Path, smtp_sink: Any
) -> None:
    assert LINE_LIMIT == 998
    # smtplib doubles a leading dot on the wire (RFC 5321 §4.5.2): the dotted line
    # is 999 octets as sent, 998 as meant.
    longest = "x" * 998 + "\r\n." + "y" * 997 + "\r\n.."
    taken = message("longest", body=longest)
    over = [message("over", body="z" * 999), message("overdot", body="." + "z" * 998)]
    configure(notary_dir, relay_retry_initial=0.2)
    relay = RelayNotary(notary_dir, smtp_sink.port)
    relay.start()
    try:
        with relay.connect() as s:
            s.login(ALICE, relay.token)
            for data in over:
                s.mail(ALICE)
                s.rcpt(BOB)
                code, text = s.data(data)  # the session goes on after the refusal
                assert (code, text.decode()) == (500, TOO_LONG[4:])
            submit_accepted(s, taken)
        wait_for(lambda: smtp_sink.messages, what="the delivery")
        for data in over:  # never logged (no SubmissionAcceptance), so never spooled
            assert relay.receipts(hashlib.sha256(data).hexdigest()) == []
    finally:
        relay.proc.stop()
    delivered_as_submitted(smtp_sink, taken)  # only the message taken reached the next hop
