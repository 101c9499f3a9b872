"""The frames between a worker and the sequencing worker (notary/sequencer_wire.py):
what goes over the socket comes back as the local sequencer's values and errors."""

from __future__ import annotations

import pytest

from keys.errors import Error, MalformedError
from notary import sequencer_wire as wire
from notary.errors import SequencerError, StorageError
from notary.receipt import Receipt
from notary.sequencer import Submission
from notary.tlogproof import TlogProof


def test_submissions_round_trip() -> None:
    items = [
        Submission("SubmissionAcceptance", "ab" * 32, "<1@x>", 7, {"channel": "api"}, True),
        Submission("ContentHandover", "cd" * 32, "<é@x>", None, {"n": [1, "ü"]}, False),
    ]
    assert wire.decode_submissions(wire.encode_submissions(items)) == items


def test_receipts_round_trip_and_share_the_note() -> None:
    note = "notary.test/log\n2\nroot\n\n\u2014 sig\n".encode()
    receipts = [
        Receipt(b'{"v":1}', TlogProof(0, (b"\x01" * 32,), note), b"\x30\x03tst"),
        Receipt(b'{"v":2}', TlogProof(1, (b"\x02" * 32, b"\x03" * 32), note), None),
        Receipt(b'{"v":3}', TlogProof(2, (), b"other note\n", b"extra"), b""),
    ]
    payload = wire.encode_receipts(receipts)
    assert wire.decode_receipts(payload) == receipts
    assert payload.count(note) == 1  # a batch's checkpoint is sent once
    with pytest.raises(MalformedError):
        wire.decode_receipts(payload[:-1])
    with pytest.raises(MalformedError):
        wire.decode_receipts(payload + b"\x00")


@pytest.mark.parametrize(
    "error",
    [
        SequencerError("refusing to sign: time", hint="wait"),
        StorageError("database is locked"),
        Error("plain"),
        ValueError("bad hash"),
    ],
)
def test_errors_come_back_as_the_same_class(error: Exception) -> None:
    got, fatal = wire.decode_error(wire.encode_error(error, fatal=True))
    assert type(got) is type(error) and str(got) == str(error) and fatal
    if isinstance(error, Error):
        assert isinstance(got, Error) and got.hint == error.hint


def test_an_unknown_error_is_a_runtime_error() -> None:
    class Odd(SequencerError):
        pass

    got, fatal = wire.decode_error(wire.encode_error(Odd("x"), fatal=False))
    assert type(got) is SequencerError and not fatal  # the nearest class sent by name
    got, _ = wire.decode_error(wire.encode_error(KeyError("k"), fatal=False))
    assert isinstance(got, RuntimeError) and "KeyError" in str(got)


def test_frame_header() -> None:
    f = wire.frame(wire.COMMITTED, 0, wire.encode_committed(42))
    length, kind, request = wire.HEADER.unpack(f[: wire.HEADER.size])
    assert (length, kind, request) == (8, wire.COMMITTED, 0)
    assert wire.decode_committed(f[wire.HEADER.size :]) == 42
