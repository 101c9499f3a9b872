"""Evidence statements: canonical JSON (RFC 8785), required members, strict parsing."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from notary.errors import MalformedError
from notary.evidence import EVENTS, format_time, parse_statement, parse_time, statement

T = datetime(2026, 11, 21, 17, 0, 0, tzinfo=UTC)
SHA = hashlib.sha256(b"message bytes").hexdigest()
MID = "<20261121170000.1234@sender.example>"


def make(event: str = "SubmissionAcceptance", **extra: object) -> bytes:
    return statement(
        event, time=T, notary="notary.example/log", sha256=SHA, message_id=MID, **extra
    )


def test_exact_canonical_bytes() -> None:
    data = make(sender="alice@sender.example", recipients=["bob@rcpt.example"])
    assert data == (
        b'{"event":"SubmissionAcceptance","message":{"id":"'
        + MID.encode()
        + b'","sha256":"'
        + SHA.encode()
        + b'"},"notary":"notary.example/log","recipients":["bob@rcpt.example"],'
        b'"sender":"alice@sender.example","time":"2026-11-21T17:00:00.000000Z","v":1}'
    )


@pytest.mark.parametrize("event", sorted(EVENTS))
def test_round_trip_every_event(event: str) -> None:
    data = make(event, extra_member={"nested": [1, "two", None, True]})
    obj = parse_statement(data)
    assert obj["v"] == 1
    assert obj["event"] == event
    assert obj["time"] == "2026-11-21T17:00:00.000000Z"
    assert obj["notary"] == "notary.example/log"
    assert obj["message"] == {"sha256": SHA, "id": MID}
    assert obj["extra_member"] == {"nested": [1, "two", None, True]}


def test_events_are_the_design_list() -> None:
    assert EVENTS == {
        "SubmissionAcceptance",
        "SubmissionRejection",
        "RelayToNonERDS",
        "RelayToNonERDSFailure",
        "ContentHandover",
        "ContentAccessTracking",
        "VirusDetected",
        "RejectionByRecipient",  # sealed delivery (docs/sealed.md)
        "ContentHandoverFailure",
    }


def test_format_time() -> None:
    assert format_time(T) == "2026-11-21T17:00:00.000000Z"
    cet = timezone(timedelta(hours=1))
    t = datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=cet)
    assert format_time(t) == "2026-01-02T02:04:05.000006Z"
    assert parse_time(format_time(t)) == t
    with pytest.raises(ValueError):
        format_time(datetime(2026, 1, 1))  # naive


@pytest.mark.parametrize(
    "s", ["2026-11-21T17:00:00Z", "2026-11-21T17:00:00.000000+00:00", "2026-13-01T00:00:00.000000Z"]
)
def test_parse_time_rejects(s: str) -> None:
    with pytest.raises(MalformedError):
        parse_time(s)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"event": "Delivered"},
        {"sha256": SHA.upper()},
        {"sha256": SHA[:-1]},
        {"message_id": ""},
        {"notary": ""},
        {"time": datetime(2026, 1, 1)},
        {"v": 2},
        {"message": {}},
        {"bad": float("nan")},
        {"bad": object()},
        {"big": 2**60},  # beyond I-JSON's exact integer range
    ],
)
def test_statement_rejects(kwargs: dict[str, object]) -> None:
    args: dict[str, object] = {
        "event": "SubmissionAcceptance",
        "time": T,
        "notary": "notary.example/log",
        "sha256": SHA,
        "message_id": MID,
    }
    args.update(kwargs)
    with pytest.raises(ValueError):
        statement(**args)  # type: ignore[arg-type]


def _reencode(obj: Any) -> bytes:
    import rfc8785

    data: bytes = rfc8785.dumps(obj)
    return data


def _good() -> dict[str, object]:
    return json.loads(make())  # type: ignore[no-any-return]


def _with(**changes: object) -> bytes:
    obj = _good()
    obj.update(changes)
    return _reencode(obj)


def _without(member: str) -> bytes:
    obj = _good()
    del obj[member]
    return _reencode(obj)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"[]",
        b"\xff",
        b'"x"',
        make().replace(b'"v":1', b'"v":1.0'),
        make().replace(b'{"event"', b'{ "event"'),  # not canonical: whitespace
        make().replace(b'"v":1}', b'"v":1}\n'),  # not canonical: trailing newline
        json.dumps(_good(), sort_keys=False).encode(),  # not canonical: key order, spaces
        make()[:-1] + b',"v":1}',  # duplicate member
        _with(v=2),
        _with(v=True),
        _with(event="Delivered"),
        _with(time="2026-11-21T17:00:00Z"),
        _with(time=5),
        _with(notary=""),
        _with(message="x"),
        _with(message={"sha256": SHA}),
        _with(message={"sha256": SHA.upper(), "id": MID}),
        _without("v"),
        _without("event"),
        _without("time"),
        _without("notary"),
        _without("message"),
        make()[:-1] + b',"z":NaN}',
        b" " * 70000,
    ],
)
def test_parse_statement_rejects(data: bytes) -> None:
    with pytest.raises(MalformedError):
        parse_statement(data)


@given(st.binary(max_size=300))
def test_parse_statement_arbitrary_bytes(data: bytes) -> None:
    try:
        parse_statement(data)
    except MalformedError:
        pass


@given(st.data())
def test_parse_statement_mutated(data: st.DataObject) -> None:
    raw = bytearray(make(note="x"))
    i = data.draw(st.integers(0, len(raw) - 1))
    raw[i] ^= data.draw(st.integers(1, 255))
    try:
        obj = parse_statement(bytes(raw))
    except MalformedError:
        return
    # A mutation that still parses is itself canonical and well-formed.
    assert _reencode(obj) == bytes(raw)


@given(st.text(max_size=50), st.integers(-(2**53) + 1, 2**53 - 1), st.booleans())
def test_free_members_round_trip(s: str, n: int, b: bool) -> None:
    data = make(s=s, n=n, b=b, arr=[s, n])
    obj = parse_statement(data)
    assert (obj["s"], obj["n"], obj["b"], obj["arr"]) == (s, n, b, [s, n])


@settings(max_examples=500, deadline=None)
@given(
    st.recursive(
        st.none()
        | st.booleans()
        | st.integers(-(2**60), 2**60)
        | st.floats(allow_nan=False, allow_infinity=False)
        | st.text(),
        lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=8), c, max_size=5),
        max_leaves=20,
    )
)
def test_canonical_json_fast_path_equals_rfc8785(obj: object) -> None:
    import rfc8785

    from notary.evidence import canonical_json

    try:
        want = rfc8785.dumps(obj)
    except Exception as e:
        with pytest.raises(type(e)):
            canonical_json(obj)
        return
    assert canonical_json(obj) == want


# ---- the fast parse paths answer exactly as the reference ones they replaced


def _reference_parse_time(s: str) -> datetime:
    """parse_time as it was: the regex, then strptime."""
    import re

    if not re.fullmatch(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z", s):
        raise MalformedError("form")
    try:
        return datetime.strptime(s, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
    except ValueError:
        raise MalformedError("range") from None


def _outcome(f: Any, *args: Any) -> tuple[str, Any]:
    try:
        return "ok", f(*args)
    except MalformedError as e:
        return "error", e.message


_DIGITS = st.text(alphabet="0123456789", min_size=1, max_size=3) | st.sampled_from(
    ["٢", "٠", "00", "60", "61", "24", "29", "31", "13", "0000", "9999"]
)


@settings(max_examples=1500, deadline=None)
@given(
    y=st.integers(0, 10000),
    mo=_DIGITS,
    d=_DIGITS,
    h=_DIGITS,
    mi=_DIGITS,
    sec=_DIGITS,
    frac=st.integers(0, 999999),
    uni=st.booleans(),
)
def test_parse_time_equals_strptime_reference(
    y: int, mo: str, d: str, h: str, mi: str, sec: str, frac: int, uni: bool
) -> None:
    s = f"{y:04d}-{mo:0>2}-{d:0>2}T{h:0>2}:{mi:0>2}:{sec:0>2}.{frac:06d}Z"
    if uni:  # a non-ASCII digit the regex's \d admits
        s = s.replace("0", "\u0660", 1)
    new, ref = _outcome(parse_time, s), _outcome(_reference_parse_time, s)
    assert new[0] == ref[0], s
    if new[0] == "ok":
        assert new[1] == ref[1] and new[1].tzinfo == ref[1].tzinfo
    elif new[1] != ref[1]:  # the same verdict; messages differ only in the regex stage
        assert ("expected" in new[1]) == (ref[1] == "form")


def _reference_parse_statement(data: bytes) -> dict[str, Any]:
    """parse_statement with only the duplicate-refusing parser (the slow path)."""
    from notary import evidence

    fast = evidence._parse_canonical
    evidence._parse_canonical = lambda _data: None  # type: ignore[assignment]
    try:
        return parse_statement(data)
    finally:
        evidence._parse_canonical = fast


_VALID = statement(
    "SubmissionAcceptance",
    time=datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=UTC),
    notary="notary.example/log",
    sha256="ab" * 32,
    message_id="<m@x>",
    extra={"a": [1, "ü", None, True]},
    n=5,
)


@settings(max_examples=1500, deadline=None)
@given(data=st.data())
def test_parse_statement_fast_path_equals_reference(data: st.DataObject) -> None:
    """Valid, mutated, duplicated-member and re-ordered statements: the same verdict,
    message and object with the fast path as with the duplicate-refusing parser alone."""
    kind = data.draw(st.sampled_from(["mutate", "duplicate", "insert", "json"]))
    raw = bytearray(_VALID)
    if kind == "mutate":
        for _ in range(data.draw(st.integers(0, 3))):
            raw[data.draw(st.integers(0, len(raw) - 1))] = data.draw(st.integers(0, 255))
    elif kind == "duplicate":  # a member repeated, in place or at the end
        dup = data.draw(st.sampled_from([b'"n":5,', b'"v":1,', b'"n":6,', b'"a":1,']))
        at = data.draw(st.sampled_from([1, len(raw) - 1]))
        raw[at:at] = dup if at == 1 else b"," + dup[:-1]
    elif kind == "insert":
        at = data.draw(st.integers(0, len(raw)))
        raw[at:at] = data.draw(
            st.sampled_from([b" ", b"NaN", b"1.0", b"\\u00fc", b"\xc3", b'"', b"{}", b"[]", b"\n"])
        )
    else:
        obj = data.draw(
            st.recursive(
                st.none() | st.booleans() | st.integers() | st.text(max_size=5),
                lambda c: (
                    st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=3), c, max_size=3)
                ),
                max_leaves=8,
            )
        )
        raw = bytearray(
            json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode(
                "utf-8", "surrogatepass"
            )
        )
    assert _outcome(parse_statement, bytes(raw)) == _outcome(_reference_parse_statement, bytes(raw))


def test_reference_only_encodes_with_rfc8785_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    """CERTMAIL_REFERENCE_ONLY=1 switches the RFC 8785 fast encoder off: same bytes."""
    import notary.evidence as evidence

    obj = {"b": [1, "é", None, True], "a": {"z": "\u2028", "\u00e9": -5}}
    fast = evidence.canonical_json(obj)
    monkeypatch.setenv("CERTMAIL_REFERENCE_ONLY", "1")

    def unused(*_: object) -> bool:
        raise AssertionError("the fast encoder ran with CERTMAIL_REFERENCE_ONLY=1")

    monkeypatch.setattr(evidence, "_fast", unused)
    assert evidence.canonical_json(obj) == fast
