"""certmail.compose: the inner entity is canonical 7-bit MIME and its manifest is exact."""

from __future__ import annotations

import base64
import email
import hashlib
import io
import json
import os
from email import policy
from pathlib import Path

import pytest

from certmail.compose import (
    MANIFEST_TYPE,
    Headers,
    ScanRecord,
    canonical_text,
    check_address,
    compose_inner,
)
from keys.errors import Error, MalformedError

HEADERS = Headers(
    from_addr="alice@example.org",
    to=("bob@example.net",),
    cc=("carol@example.com",),
    subject="Vertrag — Grüße",
    message_id="<abc@example.org>",
    date="Mon, 01 Jan 2024 00:00:00 +0000",
)


def compose(body: bytes, files: list[Path], **kw: object) -> tuple[bytes, object]:
    out = io.BytesIO()
    m = compose_inner(
        out, HEADERS, body, [(f, ScanRecord("clean", "ClamAV 1.0/1")) for f in files], **kw
    )  # type: ignore[arg-type]
    return out.getvalue(), m


def test_canonical_7bit_crlf(tmp_path: Path) -> None:
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(3 * 1024 * 1024 + 17))
    raw, _ = compose("línea 1\nline 2\r\n.\nFrom me\n".encode(), [big])
    assert b"\n" not in raw.replace(b"\r\n", b"")
    assert raw.isascii()
    assert max(len(line) for line in raw.split(b"\r\n")) <= 78


def test_manifest_matches_content(tmp_path: Path) -> None:
    a = tmp_path / "a.pdf"
    a.write_bytes(b"%PDF-1.4 " + os.urandom(100_000))
    empty = tmp_path / "empty.txt"
    empty.write_bytes(b"")
    raw, manifest = compose(b"Hello\n", [a, empty])
    msg = email.message_from_bytes(raw, policy=policy.default)
    parts = list(msg.iter_parts())
    assert [p.get_content_type() for p in parts] == [
        "text/plain",
        "application/pdf",
        "text/plain",
        MANIFEST_TYPE,
    ]
    payload = parts[-1].get_payload(decode=True)
    assert isinstance(payload, bytes)
    data = json.loads(payload)
    assert data["message_id"] == "<abc@example.org>"
    assert data["subject"] == HEADERS.subject
    assert data["to"] == ["bob@example.net"] and data["cc"] == ["carol@example.com"]
    assert data["body"]["sha256"] == hashlib.sha256(b"Hello\r\n").hexdigest()
    got = [(x["filename"], x["size"], x["sha256"]) for x in data["attachments"]]
    assert got == [
        ("a.pdf", a.stat().st_size, hashlib.sha256(a.read_bytes()).hexdigest()),
        ("empty.txt", 0, hashlib.sha256(b"").hexdigest()),
    ]
    assert parts[1].get_payload(decode=True) == a.read_bytes()
    assert parts[2].get_payload(decode=True) == b""
    assert data["attachments"][0]["scan"] == {"status": "clean", "engine": "ClamAV 1.0/1"}
    assert manifest.to_json() == data  # type: ignore[attr-defined]


def test_protected_headers(tmp_path: Path) -> None:
    raw, _ = compose(b"x", [], hp="cipher", outer_subject="[...]")
    msg = email.message_from_bytes(raw, policy=policy.default)
    assert msg.get_param("hp") == "cipher"
    assert str(msg["Subject"]) == HEADERS.subject
    assert msg["HP-Outer"] == "Subject: [...]"
    assert msg["Message-ID"] == "<abc@example.org>"


def test_non_ascii_filename_rfc2231(tmp_path: Path) -> None:
    f = tmp_path / "Überweisung €.txt"
    f.write_bytes(b"1")
    raw, _ = compose(b"x", [f])
    assert b"filename*=utf-8''" in raw
    msg = email.message_from_bytes(raw, policy=policy.default)
    assert list(msg.iter_parts())[1].get_filename() == "Überweisung €.txt"


def test_body_must_be_utf8() -> None:
    with pytest.raises(MalformedError, match="not UTF-8"):
        compose(b"\xff\xfe", [])


def test_header_injection_refused() -> None:
    bad = Headers("alice@example.org", ("bob@example.net",), "hi\r\nBcc: eve@evil", "<a@b>", "d")
    with pytest.raises(Error, match="line break"):
        compose_inner(io.BytesIO(), bad, b"x")


@pytest.mark.parametrize("addr", ["bob", "bob@", "@x", "a b@c", "<a@b>", "a@b\r\nX: y", "ä@b.c"])
def test_bad_addresses(addr: str) -> None:
    with pytest.raises(Error):
        check_address(addr)


def test_canonical_text() -> None:
    assert canonical_text(b"a\nb\r\nc\rd") == b"a\r\nb\r\nc\r\nd"


# ---------------------------------------------------------------- base64 fast paths


def test_reference_only_switches_gnu_base64_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CERTMAIL_REFERENCE_ONLY", raising=False)
    assert gnu_base64() is not None  # the tests run where coreutils is installed
    monkeypatch.setenv("CERTMAIL_REFERENCE_ONLY", "1")
    assert gnu_base64() is None


from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from certmail.compose import _find_gnu_base64, b64_lines, gnu_base64, write_base64  # noqa: E402


def stdlib_b64(data: bytes) -> bytes:
    return base64.encodebytes(data).replace(b"\n", b"\r\n")


class Trickle(io.BytesIO):
    """A source that returns fewer bytes than asked (like a pipe)."""

    def read(self, n: int | None = -1) -> bytes:
        return super().read(min(n if n is not None and n >= 0 else 1 << 30, 1000))


@settings(max_examples=60, deadline=None)
@given(st.binary(max_size=5000), st.sampled_from([76, 64]))
def test_b64_lines_equals_stdlib(data: bytes, width: int) -> None:
    want = b"".join(
        base64.b64encode(data)[i : i + width] + b"\r\n"
        for i in range(0, len(base64.b64encode(data)), width)
    )
    assert b64_lines(data, width) == want


@settings(max_examples=40, deadline=None)
@given(st.binary(max_size=3000), st.booleans())
def test_streamed_base64_equals_stdlib(data: bytes, trickle: bool) -> None:
    seen: list[bytes] = []
    for tool in (None, gnu_base64() or "base64"):
        src = Trickle(data) if trickle else io.BytesIO(data)
        out = io.BytesIO()
        seen.clear()
        write_base64(src, out, seen.append, tool)
        assert out.getvalue() == stdlib_b64(data)
        assert b"".join(seen) == data


def test_streamed_base64_large_chunks_equal_stdlib() -> None:
    data = os.urandom(57 * 16384 * 2 + 1001)  # several read chunks, a partial last line
    # The tests run where coreutils is installed; the tool itself, also when
    # CERTMAIL_REFERENCE_ONLY switches the fast path off (gnu_base64() is None then).
    tool_path = _find_gnu_base64()
    assert tool_path is not None
    for tool in (None, tool_path):
        out = io.BytesIO()
        write_base64(io.BytesIO(data), out, lambda b: None, tool)
        assert out.getvalue() == stdlib_b64(data)


def test_external_false_switches_gnu_base64_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CERTMAIL_REFERENCE_ONLY", raising=False)
    assert gnu_base64(external=False) is None
    assert gnu_base64() is not None
