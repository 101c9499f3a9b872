"""Evidence statements: the entries of the notary's log (DESIGN §4.2).

An evidence statement is a JSON object in RFC 8785 (JCS) canonical form,
UTF-8, with the required members

- ``v``: 1
- ``event``: an ETSI EN 319 522 event name (:data:`EVENTS`)
- ``time``: RFC 3339 UTC with microseconds and ``Z``
- ``notary``: the log origin
- ``message``: ``{"sha256": <64 lowercase hex>, "id": <Message-ID>}``

and any further members the event needs (documented in docs/formats.md).
"""

from __future__ import annotations

import functools
import json
import re
from datetime import UTC, datetime
from json.encoder import encode_basestring  # type: ignore[attr-defined]
from typing import Any

import rfc8785

from notary import fastpath
from notary.errors import MalformedError

__all__ = [
    "EVENTS",
    "MAX_STATEMENT_SIZE",
    "format_time",
    "parse_statement",
    "parse_time",
    "statement",
]

#: Event names, after ETSI EN 319 522-2 (plus VirusDetected for a refused scan).
EVENTS: frozenset[str] = frozenset(
    {
        "SubmissionAcceptance",
        "SubmissionRejection",
        "RelayToNonERDS",
        "RelayToNonERDSFailure",
        "ContentHandover",
        "ContentAccessTracking",
        "VirusDetected",
        "RejectionByRecipient",  # sealed delivery: the recipient refused (notary/seals.py)
        "ContentHandoverFailure",  # sealed delivery: expired before any handover
    }
)

#: Largest statement accepted by :func:`parse_statement`, in bytes.
MAX_STATEMENT_SIZE = 64 * 1024

_RESERVED = frozenset({"v", "event", "time", "notary", "message"})
_HEX64 = re.compile(r"[0-9a-f]{64}")
_TIME = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z")
_MAX_MESSAGE_ID = 998


def format_time(t: datetime) -> str:
    """RFC 3339 UTC with microseconds and ``Z``, e.g. ``2026-11-21T17:00:00.000000Z``."""
    if t.tzinfo is None or t.utcoffset() is None:
        raise ValueError("naive datetime: give a timezone-aware time")
    u = t.astimezone(UTC)
    return (
        f"{u.year:04d}-{u.month:02d}-{u.day:02d}T"
        f"{u.hour:02d}:{u.minute:02d}:{u.second:02d}.{u.microsecond:06d}Z"
    )


def parse_time(s: str) -> datetime:
    """Parse the exact form :func:`format_time` writes; raise MalformedError."""
    if not _TIME.fullmatch(s):
        raise MalformedError(f"malformed time {s!r}: expected YYYY-MM-DDTHH:MM:SS.ffffffZ")
    try:  # the regex pins the form; fromisoformat checks the ranges as strptime does
        return datetime.fromisoformat(s)
    except ValueError:
        pass
    try:  # what fromisoformat refuses (non-ASCII digits \d admits) strptime decides
        return datetime.strptime(s, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
    except ValueError:
        raise MalformedError(f"malformed time {s!r}") from None


def _check_common(event: object, notary: object, sha256: object, message_id: object) -> None:
    if event not in EVENTS:
        raise MalformedError(f"unknown evidence event {event!r}")
    if not isinstance(notary, str) or not notary:
        raise MalformedError("notary must be a non-empty string (the log origin)")
    if not isinstance(sha256, str) or not _HEX64.fullmatch(sha256):
        raise MalformedError("message sha256 must be 64 lowercase hex digits")
    if not isinstance(message_id, str) or not message_id or len(message_id) > _MAX_MESSAGE_ID:
        raise MalformedError("message id must be a non-empty string of at most 998 characters")


_MAX_SAFE_INT = 2**53 - 1
_str = encode_basestring  # the C encoder json.dumps(ensure_ascii=False) uses


@functools.lru_cache(maxsize=1024)
def _member_order(shape: tuple[str, ...]) -> tuple[str, ...]:
    """RFC 8785 §3.2.3: member names sorted by their UTF-16 code units."""
    return tuple(sorted(shape, key=lambda k: k.encode("utf-16-be", "surrogatepass")))


def _fast(obj: Any, out: list[str]) -> bool:
    """Append the RFC 8785 form of ``obj`` to ``out``; False when only rfc8785 can say.

    Covers what statements hold (objects, arrays, strings, safe integers,
    booleans, null) with the C JSON string encoder, whose escapes are exactly
    ECMAScript's JSON.stringify ones for well-formed strings; floats and lone
    surrogates go to the rfc8785 package.
    """
    if isinstance(obj, str):
        out.append(_str(obj))
    elif obj is True:
        out.append("true")
    elif obj is False:
        out.append("false")
    elif obj is None:
        out.append("null")
    elif isinstance(obj, int):
        if not -_MAX_SAFE_INT <= obj <= _MAX_SAFE_INT:
            return False
        out.append(str(obj))
    elif isinstance(obj, dict):
        for k in obj:
            if not isinstance(k, str):
                return False
        out.append("{")
        first = True
        for k in _member_order(tuple(obj)):
            if not first:
                out.append(",")
            first = False
            out.append(_str(k))
            out.append(":")
            if not _fast(obj[k], out):
                return False
        out.append("}")
    elif isinstance(obj, list | tuple):
        out.append("[")
        for i, v in enumerate(obj):
            if i:
                out.append(",")
            if not _fast(v, out):
                return False
        out.append("]")
    else:
        return False
    return True


def canonical_json(obj: Any) -> bytes:
    """RFC 8785 canonical JSON bytes of ``obj`` (fast path, rfc8785 for the rest).

    With ``CERTMAIL_REFERENCE_ONLY=1`` (:mod:`notary.fastpath`) the rfc8785 package alone.
    """
    out: list[str] = []
    if fastpath.enabled() and _fast(obj, out):
        try:
            return "".join(out).encode("utf-8")
        except UnicodeEncodeError:
            pass  # a lone surrogate: let rfc8785 decide
    data: bytes = rfc8785.dumps(obj)
    return data


def statement(
    event: str,
    *,
    time: datetime,
    notary: str,
    sha256: str,
    message_id: str,
    **extra: object,
) -> bytes:
    """The canonical (RFC 8785) bytes of an evidence statement.

    Raises ValueError for an unknown event, bad hash or id, a naive time, an
    extra member that shadows a required one, or a value JSON cannot carry.
    """
    try:
        _check_common(event, notary, sha256, message_id)
    except MalformedError as e:
        raise ValueError(e.message) from None
    clash = _RESERVED.intersection(extra)
    if clash:
        raise ValueError(f"extra members shadow required ones: {sorted(clash)}")
    obj: dict[str, Any] = {
        "v": 1,
        "event": event,
        "time": format_time(time),
        "notary": notary,
        "message": {"sha256": sha256, "id": message_id},
        **extra,
    }
    try:
        data: bytes = canonical_json(obj)
    except (rfc8785.CanonicalizationError, TypeError, ValueError) as e:
        raise ValueError(f"statement cannot be canonicalised: {e}") from None
    if len(data) > MAX_STATEMENT_SIZE:
        raise ValueError("statement too large")
    return data


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj: dict[str, Any] = {}
    for k, v in pairs:
        if k in obj:
            raise MalformedError(f"duplicate member {k!r}")
        obj[k] = v
    return obj


def _no_constant(name: str) -> Any:
    raise MalformedError(f"{name} is not JSON")


def parse_statement(data: bytes) -> dict[str, Any]:
    """Parse an evidence statement strictly; raise MalformedError.

    The bytes must be UTF-8 JSON in RFC 8785 canonical form (re-serialising
    gives the same bytes), ``v`` must be 1, the event known and the required
    members well-formed.
    """
    if len(data) > MAX_STATEMENT_SIZE:
        raise MalformedError("statement too large")
    obj = _parse_canonical(data)
    if obj is None:
        obj = _parse_slow(data)
    v = obj.get("v")
    if type(v) is not int or v != 1:
        raise MalformedError("unsupported statement version: v must be 1")
    for member in ("event", "time", "notary", "message"):
        if member not in obj:
            raise MalformedError(f"statement lacks {member!r}")
    message = obj["message"]
    if not isinstance(message, dict):
        raise MalformedError("statement 'message' is not an object")
    _check_common(obj["event"], obj["notary"], message.get("sha256"), message.get("id"))
    if not isinstance(obj["time"], str):
        raise MalformedError("statement 'time' is not a string")
    parse_time(obj["time"])
    return obj


def _parse_canonical(data: bytes) -> dict[str, Any] | None:
    """The statement object when ``data`` is UTF-8 JSON in RFC 8785 form, else None (and
    :func:`_parse_slow` decides and words the error). Parsed without the duplicate-member
    hook: when re-serialising gives ``data`` back, every object has as many members as
    its text names, so none was a duplicate."""
    try:
        obj = json.loads(data.decode("utf-8"), parse_constant=_no_constant)
    except (MalformedError, UnicodeDecodeError, ValueError, RecursionError):
        return None
    if type(obj) is not dict:
        return None
    out: list[str] = []
    try:
        if not _fast(obj, out) or "".join(out).encode("utf-8") != data:
            return None
    except (UnicodeEncodeError, RecursionError):
        return None
    return obj


def _parse_slow(data: bytes) -> dict[str, Any]:
    """The statement object, with duplicate members refused as they are parsed."""
    try:
        text = data.decode("utf-8")
        obj = json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_no_constant)
    except MalformedError:
        raise
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise MalformedError("statement is not UTF-8 JSON") from None
    if not isinstance(obj, dict):
        raise MalformedError("statement is not a JSON object")
    try:
        canonical = canonical_json(obj)
    except (rfc8785.CanonicalizationError, TypeError, ValueError, RecursionError):
        raise MalformedError("statement cannot be canonicalised") from None
    if canonical != data:
        raise MalformedError("statement is not in RFC 8785 canonical form")
    return obj
