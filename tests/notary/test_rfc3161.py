"""RFC 3161 tokens: the responder against `openssl ts` and rfc3161-client, and verify_token."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import rfc3161_client
from asn1crypto import algos as a_algos
from asn1crypto import cms as a_cms
from asn1crypto import core as a_core
from asn1crypto import tsp as a_tsp
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from keys.tsa import ROOT_CERT, TSA_CHAIN, TsaCredentials, generate_tsa_pki
from notary import fastpath
from notary.errors import VerificationError
from notary.rfc3161 import (
    DEFAULT_POLICY_OID,
    TimeStampAuthority,
    TimeStampError,
    verify_token,
)


class TimeStampResp(a_core.Sequence):  # type: ignore[misc]
    """RFC 3161 §2.4.2 TimeStampResp. asn1crypto's own marks timeStampToken as
    required, so it cannot read a rejection; this one follows the RFC."""

    _fields = [  # noqa: RUF012
        ("status", a_tsp.PKIStatusInfo),
        ("time_stamp_token", a_cms.ContentInfo, {"optional": True}),
    ]


MESSAGE = b"From: a@example.org\r\nTo: b@example.net\r\nSubject: hi\r\n\r\nhello\r\n"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, TsaCredentials]:
    d = tmp_path_factory.mktemp("pki") / "tsa"
    return d, generate_tsa_pki(d, "Test TSA")


@pytest.fixture(scope="module")
def tsa(pki: tuple[Path, TsaCredentials]) -> TimeStampAuthority:
    return TimeStampAuthority(pki[1], state_dir=pki[0])


def run(*args: str | Path, cwd: Path | None = None, check: bool = True) -> str:
    proc = subprocess.run(
        [str(a) for a in args], capture_output=True, text=True, cwd=cwd, check=False
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"{args} failed: {proc.stdout}{proc.stderr}")
    return proc.stdout + proc.stderr


def openssl_query(work: Path, *opts: str, name: str = "q.tsq") -> Path:
    msg = work / "message.eml"
    msg.write_bytes(MESSAGE)
    out = work / name
    run("openssl", "ts", "-query", "-data", msg, *opts, "-out", out)
    return out


# --- tokens pass openssl ts -verify --------------------------------------------------


@pytest.mark.parametrize("hash_name", ["sha256", "sha384", "sha512"])
@pytest.mark.parametrize("nonce", [True, False], ids=["nonce", "no-nonce"])
@pytest.mark.parametrize("cert_req", [True, False], ids=["certreq", "no-certreq"])
def test_openssl_verifies_replies_by_queryfile_data_and_digest(
    tmp_path: Path,
    pki: tuple[Path, TsaCredentials],
    tsa: TimeStampAuthority,
    hash_name: str,
    nonce: bool,
    cert_req: bool,
) -> None:
    d, _ = pki
    opts = [f"-{hash_name}"] + ([] if nonce else ["-no_nonce"]) + (["-cert"] if cert_req else [])
    query = openssl_query(tmp_path, *opts)
    reply = tmp_path / "r.tsr"
    reply.write_bytes(tsa.respond(query.read_bytes()))
    trust = ["-CAfile", str(d / ROOT_CERT)]
    if not cert_req:  # the token carries no certificates: name the TSA's
        trust += ["-untrusted", str(d / TSA_CHAIN)]
    hexdigest = hashlib.new(hash_name, MESSAGE).hexdigest()
    for how in (
        ["-queryfile", str(query)],
        ["-data", str(tmp_path / "message.eml")],
        ["-digest", hexdigest],
    ):
        out = run("openssl", "ts", "-verify", *how, "-in", reply, *trust)
        assert "Verification: OK" in out
    token = tmp_path / "t.tok"
    run("openssl", "ts", "-reply", "-in", reply, "-token_out", "-out", token)
    out = run("openssl", "ts", "-verify", "-digest", hexdigest, "-in", token, "-token_in", *trust)
    assert "Verification: OK" in out
    # and the wrong data is refused
    (tmp_path / "other.eml").write_bytes(MESSAGE + b"x")
    out = run(
        "openssl", "ts", "-verify", "-data", tmp_path / "other.eml", "-in", reply, *trust,
        check=False,
    )  # fmt: skip
    assert "Verification: OK" not in out


def test_openssl_reads_granted_reply_text(tmp_path: Path, tsa: TimeStampAuthority) -> None:
    query = openssl_query(tmp_path, "-sha256", "-cert")
    reply = tmp_path / "r.tsr"
    reply.write_bytes(tsa.respond(query.read_bytes()))
    text = run("openssl", "ts", "-reply", "-in", reply, "-text")
    assert "Status: Granted." in text
    assert f"Policy OID: {DEFAULT_POLICY_OID}" in text
    assert "Accuracy: 0x01 seconds" in text
    assert "TSA: DirName:/CN=Test TSA" in text


def test_stamped_token_passes_openssl_by_data_and_digest(
    tmp_path: Path, pki: tuple[Path, TsaCredentials], tsa: TimeStampAuthority
) -> None:
    d, _ = pki
    msg = tmp_path / "message.eml"
    msg.write_bytes(MESSAGE)
    token = tmp_path / "receipt.tsr"
    token.write_bytes(tsa.stamp(hashlib.sha256(MESSAGE).digest()))
    for how in (["-data", str(msg)], ["-digest", hashlib.sha256(MESSAGE).hexdigest()]):
        out = run(
            "openssl", "ts", "-verify", *how, "-in", token, "-token_in",
            "-CAfile", d / ROOT_CERT, "-untrusted", d / TSA_CHAIN,
        )  # fmt: skip
        assert "Verification: OK" in out


# --- tokens pass rfc3161-client ---------------------------------------------------


@pytest.mark.parametrize("hash_alg", [rfc3161_client.HashAlgorithm.SHA256,
                                      rfc3161_client.HashAlgorithm.SHA512])  # fmt: skip
@pytest.mark.parametrize("nonce", [True, False], ids=["nonce", "no-nonce"])
@pytest.mark.parametrize("cert_req", [True, False], ids=["certreq", "no-certreq"])
def test_rfc3161_client_verifies(
    pki: tuple[Path, TsaCredentials],
    tsa: TimeStampAuthority,
    hash_alg: rfc3161_client.HashAlgorithm,
    nonce: bool,
    cert_req: bool,
) -> None:
    _, creds = pki
    request = (
        rfc3161_client.TimestampRequestBuilder()
        .data(MESSAGE)
        .hash_algorithm(hash_alg)
        .nonce(nonce=nonce)
        .cert_request(cert_request=cert_req)
        .build()
    )
    response = rfc3161_client.decode_timestamp_response(tsa.respond(request.as_bytes()))
    assert response.status == rfc3161_client.PKIStatus.GRANTED
    builder = rfc3161_client.VerifierBuilder.from_request(request).add_root_certificate(
        creds.chain[-1]
    )
    if not cert_req:
        builder = builder.tsa_certificate(creds.cert)
    assert builder.build().verify_message(response, MESSAGE)
    with pytest.raises(rfc3161_client.VerificationError):
        builder.build().verify_message(response, MESSAGE + b"x")


def test_rfc3161_client_verifies_a_stamped_token(
    pki: tuple[Path, TsaCredentials], tsa: TimeStampAuthority
) -> None:
    _, creds = pki
    token = tsa.stamp(hashlib.sha256(MESSAGE).digest())
    response_der = a_tsp.TimeStampResp(
        {"status": {"status": "granted"}, "time_stamp_token": a_cms.ContentInfo.load(token)}
    ).dump()
    response = rfc3161_client.decode_timestamp_response(response_der)
    verifier = rfc3161_client.VerifierBuilder(roots=[creds.chain[-1]]).build()
    assert verifier.verify_message(response, MESSAGE)


# --- rejections: well-formed, readable by openssl -------------------------------------


def req(**overrides: object) -> bytes:
    """A TimeStampReq encoded by asn1crypto (an encoder independent of ours)."""
    fields: dict[str, object] = {
        "version": "v1",
        "message_imprint": {
            "hash_algorithm": {"algorithm": "sha256"},
            "hashed_message": hashlib.sha256(MESSAGE).digest(),
        },
        "cert_req": True,
    }
    fields.update(overrides)
    return bytes(a_tsp.TimeStampReq(fields).dump())


def imprint(alg: str, digest: bytes) -> dict[str, object]:
    return {"hash_algorithm": {"algorithm": alg}, "hashed_message": digest}


REJECTIONS: dict[str, tuple[Callable[[Path], bytes], str, str]] = {
    "sha1": (lambda w: openssl_query(w, "-sha1").read_bytes(), "bad_alg",
             "unrecognized or unsupported algorithm"),
    "md5": (lambda w: openssl_query(w, "-md5").read_bytes(), "bad_alg",
            "unrecognized or unsupported algorithm"),
    "sha224": (lambda w: req(message_imprint=imprint("sha224", bytes(28))), "bad_alg",
               "unrecognized or unsupported algorithm"),
    "other-policy": (lambda w: openssl_query(w, "-tspolicy", "1.2.3.4").read_bytes(),
                     "unaccepted_policy", "policy is not supported"),
    "garbage": (lambda w: b"hello, world", "bad_data_format", "wrong format"),
    "empty": (lambda w: b"", "bad_data_format", "wrong format"),
    "truncated": (lambda w: openssl_query(w, "-cert").read_bytes()[:-3], "bad_data_format",
                  "wrong format"),
    "trailing-byte": (lambda w: openssl_query(w).read_bytes() + b"\x00", "bad_data_format",
                      "wrong format"),
    "indefinite-length": (lambda w: b"\x30\x80" + req()[2:] + b"\x00\x00", "bad_data_format",
                          "wrong format"),
    "oversized": (lambda w: b"\x30\x84\x00\x01\x00\x00" + bytes(65536), "bad_data_format",
                  "wrong format"),
    "short-digest": (lambda w: req(message_imprint=imprint("sha256", bytes(20))),
                     "bad_data_format", "wrong format"),
    "version-2": (lambda w: req(version=2), "bad_request", "not permitted or supported"),
    "extensions": (lambda w: req(extensions=[{"extn_id": "1.2.3.4", "extn_value": b"x"}]),
                   "unaccepted_extensions", "extension is not supported"),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(REJECTIONS))
def test_rejections_are_proper_responses_that_openssl_reads(
    tmp_path: Path, tsa: TimeStampAuthority, case: str
) -> None:
    make, fail_info, openssl_text = REJECTIONS[case]
    answer = tsa.respond(make(tmp_path))
    status = TimeStampResp.load(answer, strict=True)["status"]
    assert status["status"].native == "rejection"
    assert status["fail_info"].native == {fail_info}
    assert status["status_string"].native  # a human-readable reason
    reply = tmp_path / "r.tsr"
    reply.write_bytes(answer)
    text = run("openssl", "ts", "-reply", "-in", reply, "-text")
    assert "Status: Rejected." in text
    assert openssl_text in text


def test_our_policy_requested_explicitly_is_granted(
    tmp_path: Path, pki: tuple[Path, TsaCredentials], tsa: TimeStampAuthority
) -> None:
    query = openssl_query(tmp_path, "-tspolicy", DEFAULT_POLICY_OID, "-cert")
    reply = tmp_path / "r.tsr"
    reply.write_bytes(tsa.respond(query.read_bytes()))
    out = run("openssl", "ts", "-verify", "-queryfile", query, "-in", reply,
              "-CAfile", pki[0] / ROOT_CERT)  # fmt: skip
    assert "Verification: OK" in out


def test_policy_is_configurable(tmp_path: Path, pki: tuple[Path, TsaCredentials]) -> None:
    tsa = TimeStampAuthority(pki[1], policy_oid="1.3.6.1.4.1.99999.1.2")
    query = openssl_query(tmp_path, "-tspolicy", "1.3.6.1.4.1.99999.1.2", "-cert")
    reply = tmp_path / "r.tsr"
    reply.write_bytes(tsa.respond(query.read_bytes()))
    out = run("openssl", "ts", "-verify", "-queryfile", query, "-in", reply,
              "-CAfile", pki[0] / ROOT_CERT)  # fmt: skip
    assert "Verification: OK" in out
    token = tsa.stamp(hashlib.sha256(MESSAGE).digest())
    assert verify_token(token, roots=[pki[1].chain[-1]], data=MESSAGE).policy == (
        "1.3.6.1.4.1.99999.1.2"
    )
    with pytest.raises(VerificationError, match="policy"):
        verify_token(token, roots=[pki[1].chain[-1]], data=MESSAGE, policy=DEFAULT_POLICY_OID)


# --- token structure -------------------------------------------------------------


def test_token_structure_follows_rfc3161_and_rfc5816(tmp_path: Path) -> None:
    at = datetime(2031, 5, 6, 7, 8, 9, 120000, tzinfo=UTC)
    creds = generate_tsa_pki(tmp_path / "tsa", "Structure TSA", now=at - timedelta(days=1))
    tsa = TimeStampAuthority(creds, clock=lambda: at, accuracy_ms=250)
    big_nonce = 2**150 + 12345
    token = tsa.stamp(hashlib.sha384(MESSAGE).digest(), "sha384", nonce=big_nonce)
    sd = a_cms.ContentInfo.load(token, strict=True)["content"]
    tst = sd["encap_content_info"]["content"].parsed
    assert tst["gen_time"].native == datetime(2031, 5, 6, 7, 8, 9, 120000, tzinfo=UTC)
    assert tst["gen_time"].contents == b"20310506070809.12Z"  # UTC, no trailing zeros
    assert tst["accuracy"].native == {"seconds": None, "millis": 250, "micros": None}
    assert tst["nonce"].native == big_nonce
    assert tst["message_imprint"]["hash_algorithm"]["algorithm"].native == "sha384"

    attrs = sd["signer_infos"][0]["signed_attrs"]
    encodings = [a.dump() for a in attrs]
    assert encodings == sorted(encodings)  # DER SET OF order
    names = {a["type"].native for a in attrs}
    assert names == {"content_type", "message_digest", "signing_certificate_v2"}
    (scv2,) = [a for a in attrs if a["type"].native == "signing_certificate_v2"]
    ess_cert_id = scv2["values"][0]["certs"][0]
    # hashAlgorithm omitted for SHA-256 (DER: DEFAULT values are not encoded)
    assert ess_cert_id.contents[0] == 0x04
    assert (
        ess_cert_id["cert_hash"].native
        == hashlib.sha256(creds.cert.public_bytes(Encoding.DER)).digest()
    )
    assert ess_cert_id["issuer_serial"]["serial_number"].native == creds.cert.serial_number

    certs = [c.dump() for c in sd["certificates"]]
    assert len(certs) == 2 and certs == sorted(certs)
    no_certs = a_cms.ContentInfo.load(tsa.stamp(bytes(32), cert_req=False))["content"]
    assert no_certs["certificates"].native is None

    info = verify_token(token, roots=[creds.chain[-1]], data=MESSAGE)
    assert info.nonce == big_nonce and info.hash_name == "sha384"
    assert info.gen_time == datetime(2031, 5, 6, 7, 8, 9, 120000, tzinfo=UTC)


def test_stamp_refuses_misuse(tsa: TimeStampAuthority) -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        tsa.stamp(bytes(20))
    with pytest.raises(ValueError, match="unsupported hash"):
        tsa.stamp(bytes(20), "sha1")


def test_no_tokens_outside_the_certificate_validity(tmp_path: Path) -> None:
    made = datetime(2000, 1, 1, tzinfo=UTC)
    creds = generate_tsa_pki(tmp_path / "tsa", "Old TSA", now=made)
    late = TimeStampAuthority(creds, clock=lambda: made + timedelta(days=11 * 365))
    with pytest.raises(TimeStampError):
        late.stamp(bytes(32))
    status = TimeStampResp.load(late.respond(req()))["status"]
    assert status["fail_info"].native == {"time_not_available"}


def test_tokens_verify_at_gen_time_after_the_certificate_expired(tmp_path: Path) -> None:
    made = datetime(2000, 1, 1, tzinfo=UTC)
    creds = generate_tsa_pki(tmp_path / "tsa", "Old TSA", now=made)
    tsa = TimeStampAuthority(creds, clock=lambda: made + timedelta(days=30))
    token = tsa.stamp(hashlib.sha256(MESSAGE).digest())
    assert creds.cert.not_valid_after_utc < datetime.now(UTC)  # long expired today
    info = verify_token(token, roots=[creds.chain[-1]], data=MESSAGE)
    assert info.gen_time == made + timedelta(days=30)


# --- serial numbers --------------------------------------------------------------


def serial_of(token: bytes) -> int:
    sd = a_cms.ContentInfo.load(token)["content"]
    return int(sd["encap_content_info"]["content"].parsed["serial_number"].native)


def test_serial_numbers_never_repeat_across_restarts(tmp_path: Path) -> None:
    d = tmp_path / "tsa"
    creds = generate_tsa_pki(d, "Serial TSA")
    seen: list[int] = []
    for _restart in range(5):
        tsa = TimeStampAuthority(creds, state_dir=d)  # a new process over the same directory
        seen += [serial_of(tsa.stamp(bytes(32))) for _ in range(50)]
    assert len(set(seen)) == len(seen)
    assert seen == sorted(seen)  # each restart starts above the last


def test_serials_move_forward_even_if_the_clock_went_back(tmp_path: Path) -> None:
    d = tmp_path / "tsa"
    creds = generate_tsa_pki(d, "Serial TSA")
    first = serial_of(TimeStampAuthority(creds, state_dir=d).stamp(bytes(32)))
    far_future_epoch = (first >> 64) + 10**12  # as if an earlier run had a clock far ahead
    (d / "serial-epoch").write_text(f"{far_future_epoch}\n")
    after = serial_of(TimeStampAuthority(creds, state_dir=d).stamp(bytes(32)))
    assert after >> 64 == far_future_epoch + 1


def test_a_corrupt_serial_state_fails_closed(tmp_path: Path) -> None:
    d = tmp_path / "tsa"
    creds = generate_tsa_pki(d, "Serial TSA")
    (d / "serial-epoch").write_text("not a number\n")
    with pytest.raises(TimeStampError, match="corrupt"):
        TimeStampAuthority(creds, state_dir=d)


def test_two_instances_sharing_a_directory_never_collide(tmp_path: Path) -> None:
    d = tmp_path / "tsa"
    creds = generate_tsa_pki(d, "Serial TSA")
    a = TimeStampAuthority(creds, state_dir=d)
    b = TimeStampAuthority(creds, state_dir=d)  # e.g. two uvicorn workers
    serials = [serial_of(t.stamp(bytes(32))) for _ in range(50) for t in (a, b)]
    assert len(set(serials)) == len(serials)
    assert all(s < 2**160 for s in serials)  # RFC 3161: serials fit in 160 bits


# --- verify_token -------------------------------------------------------------------


def test_verify_token_returns_what_the_token_says(
    pki: tuple[Path, TsaCredentials], tsa: TimeStampAuthority
) -> None:
    _, creds = pki
    digest = hashlib.sha256(MESSAGE).digest()
    token = tsa.stamp(digest, nonce=42)
    info = verify_token(token, roots=[creds.chain[-1]], digest=digest)
    assert info.digest == digest and info.hash_name == "sha256" and info.nonce == 42
    assert info.policy == DEFAULT_POLICY_OID and info.tsa_cert == creds.cert
    assert abs(info.gen_time - datetime.now(UTC)) < timedelta(minutes=5)
    assert verify_token(token, roots=[creds.chain[-1]], data=MESSAGE) == info


def test_verify_token_refuses_other_data_and_other_roots(
    tmp_path: Path, pki: tuple[Path, TsaCredentials], tsa: TimeStampAuthority
) -> None:
    _, creds = pki
    token = tsa.stamp(hashlib.sha256(MESSAGE).digest())
    with pytest.raises(VerificationError, match="imprint"):
        verify_token(token, roots=[creds.chain[-1]], data=MESSAGE + b" ")
    with pytest.raises(VerificationError, match="imprint"):
        verify_token(token, roots=[creds.chain[-1]], digest=bytes(32))
    stranger = generate_tsa_pki(tmp_path / "other", "Other TSA")
    with pytest.raises(VerificationError, match="chain"):
        verify_token(token, roots=[stranger.chain[-1]], data=MESSAGE)
    with pytest.raises(ValueError, match="exactly one"):
        verify_token(token, roots=[creds.chain[-1]])


def test_verify_token_needs_the_certificate_when_the_token_has_none(
    pki: tuple[Path, TsaCredentials], tsa: TimeStampAuthority
) -> None:
    _, creds = pki
    token = tsa.stamp(hashlib.sha256(MESSAGE).digest(), cert_req=False)
    with pytest.raises(VerificationError, match="signer's certificate"):
        verify_token(token, roots=[creds.chain[-1]], data=MESSAGE)
    verify_token(token, roots=[creds.chain[-1]], data=MESSAGE, certificates=[creds.cert])


def test_every_flipped_byte_fails_verification(
    pki: tuple[Path, TsaCredentials], tsa: TimeStampAuthority
) -> None:
    _, creds = pki
    token = tsa.stamp(hashlib.sha256(MESSAGE).digest(), cert_req=False)
    roots, certs = [creds.chain[-1]], [creds.cert]
    verify_token(token, roots=roots, data=MESSAGE, certificates=certs)
    for i in range(len(token)):
        for flip in (0x01, 0x80):
            bad = bytearray(token)
            bad[i] ^= flip
            with pytest.raises(VerificationError):
                verify_token(bytes(bad), roots=roots, data=MESSAGE, certificates=certs)


def bad_eku_credentials(critical: bool, purposes: list[x509.ObjectIdentifier]) -> TsaCredentials:
    now = datetime.now(UTC)
    root_key = ec.generate_private_key(ec.SECP256R1())
    root_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Lax Root")])
    root = (
        x509.CertificateBuilder()
        .subject_name(root_name)
        .issuer_name(root_name)
        .public_key(root_key.public_key())
        .serial_number(1)
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(root_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Lax TSA")]))
        .issuer_name(root_name)
        .public_key(key.public_key())
        .serial_number(2)
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=30))
        .add_extension(x509.ExtendedKeyUsage(purposes), critical=critical)
        .sign(root_key, hashes.SHA256())
    )
    return TsaCredentials(key=key, cert=cert, chain=(root,))


@pytest.mark.parametrize(
    ("critical", "purposes", "complaint"),
    [
        (False, [ExtendedKeyUsageOID.TIME_STAMPING], "not critical"),
        (True, [ExtendedKeyUsageOID.TIME_STAMPING, ExtendedKeyUsageOID.CODE_SIGNING], "exactly"),
        (True, [ExtendedKeyUsageOID.CODE_SIGNING], "exactly"),
    ],
)
def test_verify_token_requires_the_timestamping_eku(
    critical: bool, purposes: list[x509.ObjectIdentifier], complaint: str
) -> None:
    creds = bad_eku_credentials(critical, purposes)
    token = TimeStampAuthority(creds).stamp(hashlib.sha256(MESSAGE).digest())
    with pytest.raises(VerificationError, match=complaint):
        verify_token(token, roots=[creds.chain[-1]], data=MESSAGE)


def test_verify_token_refuses_a_whole_response(
    tsa: TimeStampAuthority,
) -> None:
    """A whole TimeStampResp is not a token: the caller must pass the token itself."""
    response = tsa.respond(req())
    with pytest.raises(VerificationError):
        verify_token(response, roots=[tsa.creds.chain[-1]], data=MESSAGE)


# --- fuzzing the responder ----------------------------------------------------------

_VALID = req()


def _is_timestamp_resp(answer: bytes) -> str:
    resp = TimeStampResp.load(answer, strict=True)
    status = str(resp["status"]["status"].native)
    if status == "granted":
        assert resp["time_stamp_token"].native is not None  # parses the whole token
    return status


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=400))
def test_fuzz_random_bytes_always_get_a_timestamp_resp(data: bytes) -> None:
    tsa = _fuzz_tsa()
    assert _is_timestamp_resp(tsa.respond(data)) in ("granted", "rejection")


@settings(max_examples=120, deadline=None)
@given(st.integers(0, len(_VALID) - 1), st.integers(1, 255), st.integers(0, len(_VALID)))
def test_fuzz_mutated_and_truncated_queries(pos: int, xor: int, cut: int) -> None:
    """Random byte flips, cuts and both (each granted answer's whole token is parsed,
    which is what costs: the sweep below covers every position and every cut)."""
    tsa = _fuzz_tsa()
    mutated = bytearray(_VALID)
    mutated[pos] ^= xor
    for data in (bytes(mutated), _VALID[:cut], bytes(mutated)[:cut]):
        assert _is_timestamp_resp(tsa.respond(data)) in ("granted", "rejection")


def test_every_byte_flipped_and_every_cut_of_a_query_gets_a_timestamp_resp() -> None:
    """Every byte of a valid query inverted, and the query cut at every length."""
    tsa = _fuzz_tsa()
    answers = []
    for pos in range(len(_VALID)):
        mutated = bytearray(_VALID)
        mutated[pos] ^= 0xFF
        answers.append(_is_timestamp_resp(tsa.respond(bytes(mutated))))
    cuts = [_is_timestamp_resp(tsa.respond(_VALID[:cut])) for cut in range(len(_VALID) + 1)]
    assert set(answers + cuts) == {"granted", "rejection"}
    assert cuts[-1] == "granted" and set(cuts[:-1]) == {"rejection"}


_FUZZ: list[TimeStampAuthority] = []


def _fuzz_tsa() -> TimeStampAuthority:
    if not _FUZZ:
        import tempfile

        d = Path(tempfile.mkdtemp(prefix="tsa-fuzz-"))
        _FUZZ.append(TimeStampAuthority(generate_tsa_pki(d / "tsa", "Fuzz TSA")))
    return _FUZZ[0]


def test_digest_algorithm_parameters_null_or_absent_are_both_accepted(
    tsa: TimeStampAuthority,
) -> None:
    for params in (None, a_core.Null()):
        alg = a_algos.DigestAlgorithm({"algorithm": "sha256", "parameters": params})
        digest = hashlib.sha256(MESSAGE).digest()
        query = req(message_imprint={"hash_algorithm": alg, "hashed_message": digest})
        assert _is_timestamp_resp(tsa.respond(query)) == "granted"


def test_openssl_verifies_an_expired_tsa_token_at_gen_time(tmp_path: Path) -> None:
    """docs/rfc3161.md step 5: after the TSA certificate expired, -attime genTime works."""
    made = datetime(2000, 1, 1, tzinfo=UTC)
    d = tmp_path / "tsa"
    creds = generate_tsa_pki(d, "Old TSA", now=made)
    gen_time = made + timedelta(days=30)
    tsa = TimeStampAuthority(creds, clock=lambda: gen_time)
    (tmp_path / "m.eml").write_bytes(MESSAGE)
    (tmp_path / "t.tsr").write_bytes(tsa.stamp(hashlib.sha256(MESSAGE).digest()))
    cmd = ["openssl", "ts", "-verify", "-in", str(tmp_path / "t.tsr"), "-token_in",
           "-data", str(tmp_path / "m.eml"), "-CAfile", str(d / ROOT_CERT),
           "-untrusted", str(d / TSA_CHAIN)]  # fmt: skip
    now = subprocess.run(cmd, capture_output=True, text=True, check=False)
    assert "certificate has expired" in now.stdout + now.stderr
    out = run(*cmd, "-attime", str(int(gen_time.timestamp())))
    assert "Verification: OK" in out


# --- verify_token on the template path and with CERTMAIL_REFERENCE_ONLY=1 ----------
#
# (These replace tests/certmail/test_tstfast.py: the template check now lives
# inside verify_token, so each case runs once with the fast path on and once
# with CERTMAIL_REFERENCE_ONLY=1, and must give the same verdict.)

MODES = ["template", "reference"]


@contextlib.contextmanager
def verifier_mode(mode: str) -> Iterator[None]:
    """Run the block with the fast paths on ("template") or off ("reference")."""
    before = os.environ.get(fastpath.ENV)
    if mode == "reference":
        os.environ[fastpath.ENV] = "1"
    else:
        os.environ.pop(fastpath.ENV, None)
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(fastpath.ENV, None)
        else:
            os.environ[fastpath.ENV] = before


@functools.cache
def _chain_tsa() -> tuple[TimeStampAuthority, tuple[x509.Certificate, ...]]:
    d = Path(tempfile.mkdtemp(prefix="rfc3161-template-"))
    tsa = TimeStampAuthority(generate_tsa_pki(d / "tsa", "Template TSA"), state_dir=d / "tsa")
    return tsa, tuple(x509.load_pem_x509_certificates(tsa.chain_pem()))


@pytest.mark.parametrize("mode", MODES)
def test_verify_token_in_both_modes_says_what_the_token_says(mode: str) -> None:
    tsa, chain = _chain_tsa()
    roots = chain[-1:]
    digest = hashlib.sha256(MESSAGE).digest()
    cases = [
        (tsa.stamp(digest), None),
        (tsa.stamp(digest, nonce=2**63 + 5), 2**63 + 5),
        (tsa.stamp(digest, cert_req=False), None),
    ]
    for token, nonce in cases:
        with verifier_mode(mode):
            info = verify_token(token, roots=roots, data=MESSAGE, certificates=chain)
            by_digest = verify_token(token, roots=roots, digest=digest, certificates=chain)
        with verifier_mode("reference"):
            reference = verify_token(token, roots=roots, data=MESSAGE, certificates=chain)
        assert info.from_template == (mode == "template") == by_digest.from_template
        assert info == by_digest == reference  # from_template takes no part in ==
        assert (info.digest, info.hash_name, info.nonce) == (digest, "sha256", nonce)
        assert info.policy == DEFAULT_POLICY_OID and info.tsa_cert == chain[0]
        assert abs(info.gen_time - datetime.now(UTC)) < timedelta(minutes=5)
        with verifier_mode(mode), pytest.raises(VerificationError, match="imprint"):
            verify_token(token, roots=roots, data=MESSAGE + b" ", certificates=chain)
        with verifier_mode(mode), pytest.raises(VerificationError, match="policy"):
            verify_token(token, roots=roots, data=MESSAGE, certificates=chain, policy="1.2.3")


@pytest.mark.parametrize("mode", MODES)
def test_other_layouts_and_foreign_chains_in_both_modes(tmp_path: Path, mode: str) -> None:
    tsa, chain = _chain_tsa()
    roots = chain[-1:]
    other = TimeStampAuthority(generate_tsa_pki(tmp_path / "other", "Other TSA"))
    other_chain = x509.load_pem_x509_certificates(other.chain_pem())
    with verifier_mode(mode):
        # signed by another TSA, our chain given: refused on either path
        with pytest.raises(VerificationError):
            verify_token(
                other.stamp(hashlib.sha256(MESSAGE).digest()),
                roots=roots,
                data=MESSAGE,
                certificates=chain,
            )
        # a SHA-384 imprint is not the template's layout: the reference path accepts it
        sha384 = tsa.stamp(hashlib.sha384(MESSAGE).digest(), "sha384")
        info = verify_token(sha384, roots=roots, data=MESSAGE, certificates=chain)
        assert info.hash_name == "sha384" and not info.from_template
        # a chain that does not end at the given roots: refused
        with pytest.raises(VerificationError, match="chain"):
            verify_token(
                tsa.stamp(hashlib.sha256(MESSAGE).digest()),
                roots=other_chain[-1:],
                data=MESSAGE,
                certificates=chain,
            )


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mode=st.sampled_from(MODES), pos=st.integers(0, 10**6), mask=st.integers(1, 255))
def test_a_tampered_token_fails_in_both_modes(mode: str, pos: int, mask: int) -> None:
    """Every byte of a token without embedded certificates is covered by a check (the
    embedded certificates are not: the signer comes from ``certificates``; the bundle's
    form check refuses foreign ones)."""
    _, chain = _chain_tsa()
    token = _template_token()
    roots = chain[-1:]
    bad = bytearray(token)
    bad[pos % len(token)] ^= mask
    with verifier_mode(mode):
        assert verify_token(token, roots=roots, data=MESSAGE, certificates=chain).from_template == (
            mode == "template"
        )
        with pytest.raises(VerificationError):
            verify_token(bytes(bad), roots=roots, data=MESSAGE, certificates=chain)


@functools.cache
def _template_token() -> bytes:
    return _chain_tsa()[0].stamp(hashlib.sha256(MESSAGE).digest(), nonce=7, cert_req=False)


def test_the_tsa_issues_with_the_template_the_verifier_reads() -> None:
    """One template: the one built from tsa-chain.pem is the TSA's own, and a token
    rebuilt from its parts by that template is the token."""
    from notary.rfc3161.template import TokenTemplate

    tsa, chain = _chain_tsa()
    template = TokenTemplate.for_chain(chain)
    assert template == tsa.template
    token = tsa.stamp(hashlib.sha256(MESSAGE).digest(), nonce=1)
    parts = template.match(token)
    assert parts is not None
    tst, attrs, signature = parts
    assert template.token(tst, attrs, signature, True) == token
    assert template.read_tst_info(tst, hashlib.sha256(MESSAGE).digest()) is not None
    assert template.read_tst_info(tst, bytes(32)) is None  # another imprint
