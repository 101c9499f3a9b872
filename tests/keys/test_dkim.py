"""keys.dkim: DKIM keys, RFC 6376 / RFC 8463 signatures, offline verification."""

from __future__ import annotations

import re
import stat
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from keys.dkim import (
    BodyHash,
    DkimKey,
    dkim_sign,
    dkim_sign_file,
    dkim_verify,
    dkim_verify_file,
    dns_record,
    find_dkim_key,
    generate_dkim_key,
    signing_domain,
)
from keys.errors import ConflictError, KeyMaterialError, MalformedError, VerificationError

MESSAGE = (
    b"From: Alice <alice@example.org>\r\n"
    b"To: bob@example.net\r\n"
    b"Subject: registered\r\n"
    b"Date: Mon, 01 Jan 2024 12:00:00 +0000\r\n"
    b"Message-ID: <1@example.org>\r\n"
    b"MIME-Version: 1.0\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"\r\n"
    b"Hello Bob,\r\n\r\nthe contract is attached.\r\n"
)


def dnsfunc_for(*keys: DkimKey) -> Callable[[bytes], bytes]:
    records = {name.encode(): value.encode() for name, value in map(dns_record, keys)}

    def lookup(name: bytes) -> bytes:
        return records.get(name, b"")

    return lookup


@pytest.mark.parametrize("algorithm", ["ed25519", "rsa"])
def test_sign_verify_round_trip(tmp_path: Path, algorithm: str) -> None:
    path = generate_dkim_key(tmp_path / "dkim", "Example.org", "s2024", algorithm)
    assert path.name == f"example.org.s2024.{algorithm}.key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    key = find_dkim_key(tmp_path / "dkim", "example.org")
    assert key == DkimKey("example.org", "s2024", algorithm, path)
    header = dkim_sign(MESSAGE, key)
    assert header.startswith(b"DKIM-Signature: ") and header.endswith(b"\r\n")
    assert f"a={'ed25519' if algorithm == 'ed25519' else 'rsa'}-sha256".encode() in header
    signed = header + MESSAGE
    assert signed.endswith(MESSAGE)  # the message is prepended to, never rewritten
    dkim_verify(signed, dnsfunc=dnsfunc_for(key))


@pytest.mark.parametrize("algorithm", ["ed25519", "rsa"])
def test_tampered_message_fails(tmp_path: Path, algorithm: str) -> None:
    generate_dkim_key(tmp_path, "example.org", "sel", algorithm)
    key = find_dkim_key(tmp_path, "example.org")
    assert key is not None
    signed = dkim_sign(MESSAGE, key) + MESSAGE
    dns = dnsfunc_for(key)
    body_changed = signed.replace(b"the contract", b"no contract")
    with pytest.raises(VerificationError):
        dkim_verify(body_changed, dnsfunc=dns)
    subject_changed = signed.replace(b"Subject: registered", b"Subject: registerEd")
    with pytest.raises(VerificationError):
        dkim_verify(subject_changed, dnsfunc=dns)
    # An extra From: added after signing breaks the oversigned header list.
    extra_from = signed.replace(b"To: bob", b"From: mallory@example.com\r\nTo: bob")
    with pytest.raises(VerificationError):
        dkim_verify(extra_from, dnsfunc=dns)


def test_wrong_published_key_fails(tmp_path: Path) -> None:
    generate_dkim_key(tmp_path / "a", "example.org", "sel")
    generate_dkim_key(tmp_path / "b", "example.org", "sel")
    key_a = find_dkim_key(tmp_path / "a", "example.org")
    key_b = find_dkim_key(tmp_path / "b", "example.org")
    assert key_a and key_b
    signed = dkim_sign(MESSAGE, key_a) + MESSAGE
    with pytest.raises(VerificationError):
        dkim_verify(signed, dnsfunc=dnsfunc_for(key_b))
    with pytest.raises(VerificationError):
        dkim_verify(signed, dnsfunc=lambda name: b"")


def test_unsigned_message_fails() -> None:
    with pytest.raises(VerificationError) as e:
        dkim_verify(MESSAGE, dnsfunc=lambda name: b"")
    assert "no DKIM signature" in e.value.message


def test_garbage_signature_header_fails(tmp_path: Path) -> None:
    with pytest.raises(VerificationError):
        dkim_verify(b"DKIM-Signature: v=1; a=nonsense\r\n" + MESSAGE, dnsfunc=lambda name: b"")


def test_dns_record(tmp_path: Path) -> None:
    generate_dkim_key(tmp_path, "example.org", "mail", "ed25519")
    key = find_dkim_key(tmp_path, "example.org")
    assert key is not None
    name, value = dns_record(key)
    assert name == "mail._domainkey.example.org"
    assert value.startswith("v=DKIM1; k=ed25519; p=")
    assert len(value.split("p=")[1]) == 44  # base64 of a 32-byte key
    generate_dkim_key(tmp_path, "example.net", "mail", "rsa")
    rsa_key = find_dkim_key(tmp_path, "example.net")
    assert rsa_key is not None
    assert dns_record(rsa_key)[1].startswith("v=DKIM1; k=rsa; p=MIIBIjAN")


def test_generate_twice_conflicts(tmp_path: Path) -> None:
    generate_dkim_key(tmp_path, "example.org", "sel")
    with pytest.raises(ConflictError):
        generate_dkim_key(tmp_path, "example.org", "sel")


@pytest.mark.parametrize(
    "domain,selector,algorithm",
    [
        ("example.org", "sel", "dsa"),
        ("bad domain", "sel", "ed25519"),
        ("example.org", "a.b", "ed25519"),
        ("example.org", "../x", "ed25519"),
    ],
)
def test_generate_rejects_bad_input(
    tmp_path: Path, domain: str, selector: str, algorithm: str
) -> None:
    with pytest.raises(KeyMaterialError):
        generate_dkim_key(tmp_path, domain, selector, algorithm)
    assert list(tmp_path.iterdir()) == []


def test_find_none_and_other_domains(tmp_path: Path) -> None:
    assert find_dkim_key(tmp_path / "missing", "example.org") is None
    generate_dkim_key(tmp_path, "mail.example.org", "sel")
    assert find_dkim_key(tmp_path, "example.org") is None
    found = find_dkim_key(tmp_path, "MAIL.example.org")
    assert found is not None and found.domain == "mail.example.org"


def test_sign_requires_from(tmp_path: Path) -> None:
    generate_dkim_key(tmp_path, "example.org", "sel")
    key = find_dkim_key(tmp_path, "example.org")
    assert key is not None
    with pytest.raises(MalformedError):
        dkim_sign(b"Subject: x\r\n\r\nbody\r\n", key)


def test_explicit_headers(tmp_path: Path) -> None:
    generate_dkim_key(tmp_path, "example.org", "sel")
    key = find_dkim_key(tmp_path, "example.org")
    assert key is not None
    header = dkim_sign(MESSAGE, key, headers=[b"From", b"Subject"])
    unfolded = header.replace(b"\r\n", b"").replace(b" ", b"")
    assert b"h=from:subject;" in unfolded
    signed = header + MESSAGE
    dkim_verify(signed, dnsfunc=dnsfunc_for(key))
    # To: is not covered, so changing it keeps the signature valid.
    dkim_verify(signed.replace(b"bob@example.net", b"eve@example.net"), dnsfunc=dnsfunc_for(key))


# ---------------------------------------------------------------- streaming (files)

_BODY_PIECES = [
    b"a",
    b"bc",
    b" ",
    b"  ",
    b"\t",
    b"\r\n",
    b"\n",
    b"\r",
    b"x y",
    b"\r\n\r\n",
    b" \r\n",
    b"\t\r\n",
    b".",
]


@given(
    body=st.lists(st.sampled_from(_BODY_PIECES), max_size=30).map(b"".join),
    cuts=st.lists(st.integers(min_value=0, max_value=200), max_size=6),
    canon=st.sampled_from([b"relaxed", b"simple"]),
)
def test_body_hash_equals_dkimpy_in_any_pieces(body: bytes, cuts: list[int], canon: bytes) -> None:
    import hashlib

    import dkim
    from dkim.canonicalization import CanonicalizationPolicy

    # dkimpy's parser turns bare LF into CRLF before canonicalizing the body.
    _, parsed = dkim.rfc822_parse(b"From: a@example.org\r\n\r\n" + body)
    policy = CanonicalizationPolicy.from_c_value(b"relaxed/" + canon)
    want = hashlib.sha256(policy.canonicalize_body(parsed)).digest()
    bh = BodyHash(canon)
    at = 0
    for cut in sorted(set(cuts)):
        bh.update(body[at:cut])
        at = max(at, cut)
    bh.update(body[at:])
    assert bh.digest() == want


_HEADER_VALUES = st.text(alphabet="ab c\t=;", min_size=1, max_size=12).filter(
    lambda v: v.strip() != ""
)


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    subject=_HEADER_VALUES,
    body=st.lists(st.sampled_from(_BODY_PIECES), max_size=30).map(b"".join),
    algorithm=st.sampled_from(["ed25519", "rsa"]),
    lf=st.booleans(),
)
def test_sign_file_equals_dkimpy_and_verifies(
    tmp_path: Path, subject: str, body: bytes, algorithm: str, lf: bool
) -> None:
    key = _key(tmp_path, algorithm)
    head = (
        b"From: Alice <alice@example.org>\r\nTo: bob@example.net\r\n"
        b"Subject: " + subject.encode() + b"\r\n\t folded\r\nMIME-Version: 1.0\r\n\r\n"
    )
    if lf:
        head = head.replace(b"\r\n", b"\n")
    message = head + body
    path = tmp_path / "m.eml"
    path.write_bytes(message)
    ref = dkim_sign(message, key)
    t = int(re.search(rb"t=(\d+)", ref).group(1))  # type: ignore[union-attr]
    got = dkim_sign_file(path, key, timestamp=t)
    assert got == ref  # Ed25519 signatures are deterministic: same tags, same bytes
    signed = tmp_path / "s.eml"
    signed.write_bytes(got + message)
    dkim_verify(got + message, dnsfunc=dnsfunc_for(key))
    dkim_verify_file(signed, dnsfunc=dnsfunc_for(key))


_KEYS: dict[tuple[str, str], DkimKey] = {}


def _key(tmp_path: Path, algorithm: str) -> DkimKey:
    """One key per algorithm for the whole module (hypothesis reruns the test body)."""
    base = tmp_path.parent / f"dkim-keys-{algorithm}"
    found = _KEYS.get((str(base), algorithm))
    if found is None:
        if not base.exists():
            generate_dkim_key(base, "example.org", "s1", algorithm)
        found = find_dkim_key(base, "example.org")
        assert found is not None
        _KEYS[(str(base), algorithm)] = found
    return found


@pytest.mark.parametrize("algorithm", ["ed25519", "rsa"])
def test_sign_file_verifies_with_dkimpy_and_detects_changes(tmp_path: Path, algorithm: str) -> None:
    generate_dkim_key(tmp_path / "k", "example.org", "sel", algorithm)
    key = find_dkim_key(tmp_path / "k", "example.org")
    assert key is not None
    path = tmp_path / "m.eml"
    # A body larger than one read, with armor-like lines and trailing empty lines.
    body = b"".join(b"%06d" % i + b"A" * 58 + b"\r\n" for i in range(40000)) + b"\r\n\r\n"
    path.write_bytes(MESSAGE + body)
    header = dkim_sign_file(path, key)
    signed = tmp_path / "signed.eml"
    signed.write_bytes(header + MESSAGE + body)
    dkim_verify(signed.read_bytes(), dnsfunc=dnsfunc_for(key))  # dkimpy's own verifier
    dkim_verify_file(signed, dnsfunc=dnsfunc_for(key))
    tampered = tmp_path / "tampered.eml"
    tampered.write_bytes(header + MESSAGE + body.replace(b"012345A", b"012345B", 1))
    with pytest.raises(VerificationError, match="body hash"):
        dkim_verify_file(tampered, dnsfunc=dnsfunc_for(key))
    with pytest.raises(VerificationError):
        dkim_verify(tampered.read_bytes(), dnsfunc=dnsfunc_for(key))
    other = tmp_path / "other.eml"
    other.write_bytes(header + MESSAGE.replace(b"registered", b"registered!") + body)
    with pytest.raises(VerificationError):
        dkim_verify_file(other, dnsfunc=dnsfunc_for(key))
    with pytest.raises(VerificationError, match="no DKIM"):
        dkim_verify_file(path, dnsfunc=dnsfunc_for(key))


def test_sign_file_requires_from(tmp_path: Path) -> None:
    generate_dkim_key(tmp_path, "example.org", "sel")
    key = find_dkim_key(tmp_path, "example.org")
    assert key is not None
    path = tmp_path / "m.eml"
    path.write_bytes(b"To: bob@example.net\r\n\r\nbody\r\n")
    with pytest.raises(MalformedError):
        dkim_sign_file(path, key)


def test_signing_domain_reads_the_tag_list_as_dkimpy_does(tmp_path: Path) -> None:
    generate_dkim_key(tmp_path, "example.org", "sel")
    key = find_dkim_key(tmp_path, "example.org")
    assert key is not None
    header = dkim_sign(MESSAGE, key)
    value = header.split(b":", 1)[1]
    assert signing_domain(value) == "example.org"
    assert signing_domain(value.decode("ascii")) == "example.org"
    # folding whitespace inside d= (RFC 6376 §3.5) and a trailing semicolon
    assert signing_domain("v=1; d=exa\r\n mple.net ; s=x;") == "example.net"
    assert signing_domain("v=1; s=sel") is None
    assert signing_domain("v=1; d=a.example; d=b.example") is None  # duplicate tag
    assert signing_domain("v=1; garbage") is None
