"""RFC 3161 time-stamp tokens: the TSA's responder and a token verifier.

Implements the Time-Stamp Protocol of RFC 3161 (§2.4 request and response)
with the ESS signing-certificate attribute of RFC 5816 (SigningCertificateV2,
ESSCertIDv2 with hashAlgorithm omitted for SHA-256) inside a CMS SignedData
(RFC 5652). Pure format code: no server imports, so clients verify with it.

The responder is built for speed: everything that does not change per request
(the certificates, the SignerInfo's sid, the signed attributes except the
message digest, the DER headers of fixed length) is encoded once in
:class:`TimeStampAuthority`'s constructor; a request splices in the message
imprint, serial number, genTime and nonce, hashes the TSTInfo, and signs once
with ECDSA P-256. Requests are parsed by a strict, size-bounded DER reader.

Serial numbers (RFC 3161 §2.4.2, unique per TSA) are ``epoch << 64 | n`` where
``n`` counts tokens from 1 within one :class:`TimeStampAuthority` and ``epoch``
is taken once per instance. With a ``state_dir`` the epoch is persisted in
``serial-epoch`` under an exclusive lock, fsynced before the first token, and is
``max(previous epoch + 1, microseconds since 1970)``: strictly increasing across
restarts and across processes sharing the directory, and it still moves forward
if the file is restored from an old backup (time has moved on) or the clock is
set back (the file remembers). Without a ``state_dir`` the epoch is the start
time in microseconds followed by 32 random bits. See docs/rfc3161.md.
"""

from __future__ import annotations

import fcntl
import hashlib
import itertools
import os
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from asn1crypto import cms as a_cms
from asn1crypto import core as a_core
from asn1crypto import tsp as _a_tsp  # noqa: F401  (registers TSTInfo with cms)
from asn1crypto import x509 as a_x509
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID

from keys.tsa import TsaCredentials
from notary.errors import NotaryError, VerificationError

#: The TSA policy under which tokens are issued (RFC 3161 §2.1 item 5). The
#: arc 1.3.6.1.4.1.32473 is IANA's enterprise number reserved for documentation
#: (RFC 5612); ".3161.1" below it names "certmail's default TSA policy". An
#: operator with its own enterprise number should configure its own OID.
DEFAULT_POLICY_OID = "1.3.6.1.4.1.32473.3161.1"

#: Largest TimeStampReq the responder parses (a real one is under 200 bytes).
MAX_QUERY_BYTES = 64 * 1024
#: Largest nonce echoed, in content octets (RFC 3161 suggests 64 bits).
MAX_NONCE_BYTES = 64

# PKIStatus (RFC 3161 §2.4.2).
GRANTED = 0
REJECTION = 2
# PKIFailureInfo bit numbers (RFC 3161 §2.4.2).
BAD_ALG = 0
BAD_REQUEST = 2
BAD_DATA_FORMAT = 5
TIME_NOT_AVAILABLE = 14
UNACCEPTED_POLICY = 15
UNACCEPTED_EXTENSION = 16
ADD_INFO_NOT_AVAILABLE = 17
SYSTEM_FAILURE = 25

_HASH_OIDS = {
    "sha256": "2.16.840.1.101.3.4.2.1",
    "sha384": "2.16.840.1.101.3.4.2.2",
    "sha512": "2.16.840.1.101.3.4.2.3",
}
_HASH_SIZES = {"sha256": 32, "sha384": 48, "sha512": 64}
_OID_SIGNED_DATA = "1.2.840.113549.1.7.2"
_OID_TST_INFO = "1.2.840.113549.1.9.16.1.4"
_OID_CONTENT_TYPE = "1.2.840.113549.1.9.3"
_OID_MESSAGE_DIGEST = "1.2.840.113549.1.9.4"
_OID_SIGNING_CERT_V2 = "1.2.840.113549.1.9.16.2.47"
_OID_ECDSA_SHA256 = "1.2.840.10045.4.3.2"


class TimeStampError(NotaryError):
    """The TSA cannot issue a token now (e.g. its certificate is not valid at this time)."""


# --- DER encoding ----------------------------------------------------------


def _len(n: int) -> bytes:
    if n < 0x80:
        return bytes((n,))
    body = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes((0x80 | len(body),)) + body


def _tlv(tag: int, content: bytes) -> bytes:
    n = len(content)
    if n < 0x80:
        return bytes((tag, n)) + content
    if n < 0x100:
        return bytes((tag, 0x81, n)) + content
    if n < 0x10000:
        return bytes((tag, 0x82, n >> 8, n & 0xFF)) + content
    return bytes((tag,)) + _len(n) + content


def _seq(*parts: bytes) -> bytes:
    return _tlv(0x30, b"".join(parts))


def _int(n: int) -> bytes:
    size = n.bit_length() // 8 + 1  # room for the sign bit
    return _tlv(0x02, n.to_bytes(size, "big", signed=True))


def _oid(dotted: str) -> bytes:
    arcs = [int(a) for a in dotted.split(".")]
    if len(arcs) < 2 or arcs[0] > 2 or (arcs[0] < 2 and arcs[1] >= 40):
        raise ValueError(f"not an object identifier: {dotted!r}")
    out = bytearray()
    for arc in [arcs[0] * 40 + arcs[1], *arcs[2:]]:
        chunk = [arc & 0x7F]
        arc >>= 7
        while arc:
            chunk.append(0x80 | (arc & 0x7F))
            arc >>= 7
        out += bytes(reversed(chunk))
    return _tlv(0x06, bytes(out))


def _octets(b: bytes) -> bytes:
    return _tlv(0x04, b)


def _utf8(s: str) -> bytes:
    return _tlv(0x0C, s.encode())


def _failure_info(bit: int) -> bytes:
    """PKIFailureInfo as a DER named-bit BIT STRING: trailing zero bits dropped."""
    nbytes = bit // 8 + 1
    body = bytearray(nbytes)
    body[bit // 8] = 0x80 >> (bit % 8)
    unused = nbytes * 8 - (bit + 1)
    return _tlv(0x03, bytes((unused,)) + bytes(body))


def rejection(fail_bit: int, text: str) -> bytes:
    """A TimeStampResp with PKIStatus rejection, a statusString and one failInfo bit.

    Hand-encoded so that any input, even one asn1crypto cannot parse, gets a
    well-formed answer (RFC 3161 §2.4.2).
    """
    status = _seq(_int(REJECTION), _seq(_utf8(text)), _failure_info(fail_bit))
    return _seq(status)


# --- strict DER reading ------------------------------------------------------


class _BadFormat(Exception):
    pass


def _read(buf: bytes, pos: int, end: int) -> tuple[int, int, int]:
    """Read one DER TLV at ``pos``: (tag, content start, content end). Low tag numbers only."""
    if pos + 2 > end:
        raise _BadFormat("truncated")
    tag = buf[pos]
    if tag & 0x1F == 0x1F:
        raise _BadFormat("high tag number")
    first = buf[pos + 1]
    pos += 2
    if first < 0x80:
        length = first
    else:
        n = first & 0x7F
        if n == 0 or n > 4 or pos + n > end:
            raise _BadFormat("bad length")
        length = int.from_bytes(buf[pos : pos + n], "big")
        if buf[pos] == 0 or length < 0x80:
            raise _BadFormat("length not minimal")
        pos += n
    if pos + length > end:
        raise _BadFormat("truncated")
    return tag, pos, pos + length


def _check_int(buf: bytes, start: int, end: int) -> None:
    if end == start:
        raise _BadFormat("empty integer")
    if end - start > 1 and (
        (buf[start] == 0 and buf[start + 1] < 0x80)
        or (buf[start] == 0xFF and buf[start + 1] >= 0x80)
    ):
        raise _BadFormat("integer not minimal")


_HASH_BY_OID = {
    _oid(oid)[2:]: name for name, oid in _HASH_OIDS.items()
}  # OID content bytes -> name


@dataclass(frozen=True)
class _Query:
    imprint: bytes  # the MessageImprint TLV exactly as received
    hash_name: str | None
    digest: bytes
    policy: bytes | None  # OID content octets
    nonce: bytes | None  # INTEGER TLV exactly as received
    cert_req: bool
    version_ok: bool
    extensions: bool


def _parse_query(buf: bytes) -> _Query:
    """Parse a TimeStampReq (RFC 3161 §2.4.1) strictly; raise _BadFormat on bad DER."""
    tag, pos, end = _read(buf, 0, len(buf))
    if tag != 0x30 or end != len(buf):
        raise _BadFormat("not a single SEQUENCE")
    tag, s, e = _read(buf, pos, end)  # version
    if tag != 0x02:
        raise _BadFormat("version")
    _check_int(buf, s, e)
    version_ok = buf[s:e] == b"\x01"
    pos = e
    im_start = pos
    tag, s, im_end = _read(buf, pos, end)  # messageImprint
    if tag != 0x30:
        raise _BadFormat("messageImprint")
    tag, a, alg_end = _read(buf, s, im_end)  # hashAlgorithm
    if tag != 0x30:
        raise _BadFormat("hashAlgorithm")
    tag, o, oe = _read(buf, a, alg_end)
    if tag != 0x06 or oe == o:
        raise _BadFormat("hashAlgorithm OID")
    hash_name = _HASH_BY_OID.get(buf[o:oe])
    if oe != alg_end:
        tag, p, pe = _read(buf, oe, alg_end)
        if pe != alg_end:
            raise _BadFormat("hashAlgorithm parameters")
        if tag != 0x05 or pe != p:
            hash_name = None  # parameters we do not understand: an unsupported algorithm
    tag, d, de = _read(buf, alg_end, im_end)
    if tag != 0x04 or de != im_end:
        raise _BadFormat("hashedMessage")
    imprint = buf[im_start:im_end]
    digest = buf[d:de]
    pos = im_end

    policy = nonce = None
    cert_req = extensions = False
    if pos < end:
        tag, s, e = _read(buf, pos, end)
        if tag == 0x06:
            if e == s:
                raise _BadFormat("reqPolicy")
            policy = buf[s:e]
            pos = e
    if pos < end:
        tag, s, e = _read(buf, pos, end)
        if tag == 0x02:
            _check_int(buf, s, e)
            if e - s > MAX_NONCE_BYTES:
                raise _BadFormat("nonce too long")
            nonce = buf[pos:e]
            pos = e
    if pos < end:
        tag, s, e = _read(buf, pos, end)
        if tag == 0x01:
            if e - s != 1 or buf[s] not in (0x00, 0xFF):
                raise _BadFormat("certReq")
            cert_req = buf[s] == 0xFF
            pos = e
    if pos < end:
        tag, s, e = _read(buf, pos, end)
        if tag == 0xA0:
            extensions = True
            pos = e
    if pos != end:
        raise _BadFormat("unexpected trailing fields")
    return _Query(imprint, hash_name, digest, policy, nonce, cert_req, version_ok, extensions)


# --- the responder -----------------------------------------------------------


def _gen_time_bounds(cert: x509.Certificate) -> tuple[int, int]:
    return (
        int(cert.not_valid_before_utc.timestamp()) * 10**9,
        int(cert.not_valid_after_utc.timestamp()) * 10**9,
    )


def _next_epoch(state_dir: Path, now_us: int) -> int:
    """Take the next serial-number epoch from ``state_dir/serial-epoch``, durably."""
    state_dir.mkdir(parents=True, exist_ok=True)
    path = state_dir / "serial-epoch"
    lock_fd = os.open(state_dir / "serial-epoch.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(lock_fd, fcntl.LOCK_EX)
        try:
            last = int(path.read_text().strip())
        except FileNotFoundError:
            last = 0
        except ValueError as exc:
            raise TimeStampError(
                f"{path} is corrupt; refusing to risk repeating serial numbers",
                hint=f"put an integer larger than any epoch used before in {path}",
            ) from exc
        epoch = max(last + 1, now_us)
        tmp = state_dir / "serial-epoch.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, f"{epoch}\n".encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
        dir_fd = os.open(state_dir, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
        return epoch
    finally:
        os.close(lock_fd)  # releases the lock


class TimeStampAuthority:
    """An RFC 3161 TSA over one key and certificate chain.

    :meth:`respond` answers a DER TimeStampReq with a DER TimeStampResp and never
    raises; :meth:`stamp` issues a TimeStampToken for a digest directly.
    ``clock`` (returning an aware datetime) is injectable for tests; by default
    the system clock is read with nanosecond resolution. genTime carries
    milliseconds; ``accuracy_ms`` is the accuracy claimed in every TSTInfo.
    """

    def __init__(
        self,
        creds: TsaCredentials,
        *,
        policy_oid: str = DEFAULT_POLICY_OID,
        state_dir: Path | None = None,
        clock: Callable[[], datetime] | None = None,
        accuracy_ms: int = 1000,
    ) -> None:
        if not isinstance(creds.key.curve, ec.SECP256R1):
            raise ValueError("the TSA key must be ECDSA P-256")
        if accuracy_ms <= 0:
            raise ValueError("accuracy_ms must be positive")
        self.creds = creds
        self.policy_oid = policy_oid
        self._key = creds.key
        self._clock = clock
        self._ecdsa = ec.ECDSA(hashes.SHA256())
        self._not_before, self._not_after = _gen_time_bounds(creds.cert)

        now_us = time.time_ns() // 1000
        if state_dir is not None:
            epoch = _next_epoch(state_dir, now_us)
        else:
            epoch = (now_us << 32) | secrets.randbits(32)
        self._serial_base = epoch << 64
        self._counter = itertools.count(1)

        cert_der = creds.cert.public_bytes(serialization.Encoding.DER)
        tbs = a_x509.Certificate.load(cert_der)["tbs_certificate"]
        issuer_der = tbs["issuer"].dump()  # the issuer Name exactly as encoded in the cert
        subject_der = tbs["subject"].dump()
        serial = _int(creds.cert.serial_number)

        policy = _oid(policy_oid)
        self._policy_content = policy[2:]
        # TSTInfo pieces: version, policy | imprint serial genTime | accuracy [nonce] tsa
        self._tst_head = _int(1) + policy
        secs, ms = divmod(accuracy_ms, 1000)
        acc = (_int(secs) if secs else b"") + (_tlv(0x80, _int(ms)[2:]) if ms else b"")
        self._accuracy = _seq(acc)
        self._tsa_name = _tlv(0xA0, _tlv(0xA4, subject_der))  # tsa [0] GeneralName directoryName

        # Signed attributes (RFC 5652 §5.3), in DER SET OF order.
        ess_cert_id_v2 = _seq(  # hashAlgorithm omitted: DEFAULT sha256 (RFC 5035)
            _octets(hashlib.sha256(cert_der).digest()),
            _seq(_seq(_tlv(0xA4, issuer_der)), serial),  # IssuerSerial
        )
        attrs = [
            _seq(_oid(_OID_CONTENT_TYPE), _tlv(0x31, _oid(_OID_TST_INFO))),
            _seq(_oid(_OID_MESSAGE_DIGEST), _tlv(0x31, _octets(b"\x00" * 32))),
            _seq(_oid(_OID_SIGNING_CERT_V2), _tlv(0x31, _seq(_seq(ess_cert_id_v2)))),
        ]
        md_attr = attrs[1]
        ordered = sorted(attrs)
        # The message-digest attribute's length differs from the others', so its
        # place in the order is fixed whatever the digest is.
        assert len({len(a) for a in attrs}) == 3
        i = ordered.index(md_attr)
        self._attrs_before = b"".join(ordered[:i]) + md_attr[:-32]
        self._attrs_after = b"".join(ordered[i + 1 :])
        attrs_len = sum(len(a) for a in attrs)
        self._attrs_set_head = bytes((0x31,)) + _len(attrs_len)
        self._attrs_implicit_head = bytes((0xA0,)) + _len(attrs_len)

        sha256_alg = _seq(_oid(_HASH_OIDS["sha256"]))
        self._signer_head = _int(1) + _seq(issuer_der, serial) + sha256_alg
        self._sig_alg = _seq(_oid(_OID_ECDSA_SHA256))
        self._sd_head = _int(3) + _tlv(0x31, sha256_alg)
        self._encap_head = _oid(_OID_TST_INFO)
        self._ci_head = _oid(_OID_SIGNED_DATA)

        chain_ders = [cert_der, *(c.public_bytes(serialization.Encoding.DER) for c in creds.chain)]
        self._certs_field = _tlv(0xA0, b"".join(sorted(chain_ders)))  # [0] IMPLICIT SET OF
        self._chain_pem = b"".join(
            c.public_bytes(serialization.Encoding.PEM) for c in (creds.cert, *creds.chain)
        )
        self._granted = _seq(_int(GRANTED))
        self._sec_cache = (-1, b"")  # (a second since 1970, its GeneralizedTime text)

    # -- public API --

    def respond(self, query_der: bytes) -> bytes:
        """Answer a DER TimeStampReq with a DER TimeStampResp (RFC 3161 §2.4.2).

        Never raises: malformed or unsupported requests get PKIStatus rejection
        with the matching failInfo; an internal failure gets systemFailure.
        """
        try:
            if len(query_der) > MAX_QUERY_BYTES:
                return rejection(BAD_DATA_FORMAT, "The request is too large.")
            try:
                q = _parse_query(bytes(query_der))
            except _BadFormat:
                return rejection(BAD_DATA_FORMAT, "Bad request format.")
            if not q.version_ok:
                return rejection(BAD_REQUEST, "Bad request version.")
            if q.hash_name is None:
                return rejection(BAD_ALG, "Message digest algorithm is not supported.")
            if len(q.digest) != _HASH_SIZES[q.hash_name]:
                return rejection(BAD_DATA_FORMAT, "Bad message digest.")
            if q.policy is not None and q.policy != self._policy_content:
                return rejection(UNACCEPTED_POLICY, "Requested policy is not supported.")
            if q.extensions:
                return rejection(UNACCEPTED_EXTENSION, "Unsupported extension.")
            try:
                token = self._issue(q.imprint, q.nonce, q.cert_req)
            except TimeStampError:
                return rejection(TIME_NOT_AVAILABLE, "The TSA cannot issue tokens at this time.")
            return _tlv(0x30, self._granted + token)
        except Exception:
            return rejection(SYSTEM_FAILURE, "Internal error.")

    def stamp(
        self,
        digest: bytes,
        hash_name: str = "sha256",
        *,
        nonce: int | None = None,
        cert_req: bool = True,
    ) -> bytes:
        """A TimeStampToken (a DER ContentInfo) over ``digest``, a ``hash_name`` digest.

        Raises :class:`TimeStampError` if the TSA certificate is not valid now.
        """
        if hash_name not in _HASH_SIZES:
            raise ValueError(f"unsupported hash {hash_name!r}; use sha256, sha384 or sha512")
        if len(digest) != _HASH_SIZES[hash_name]:
            raise ValueError(f"a {hash_name} digest is {_HASH_SIZES[hash_name]} bytes")
        imprint = _seq(_seq(_oid(_HASH_OIDS[hash_name])), _octets(bytes(digest)))
        return self._issue(imprint, None if nonce is None else _int(nonce), cert_req)

    def chain_pem(self) -> bytes:
        """The TSA certificate, then its issuers up to the root, in PEM."""
        return self._chain_pem

    # -- the fast path --

    def _gen_time(self) -> bytes:
        if self._clock is None:
            ns = time.time_ns()
        else:
            t = self._clock()
            if t.tzinfo is None:
                raise TimeStampError("the clock returned a naive datetime")
            ns = int(t.timestamp()) * 10**9 + t.microsecond * 1000
        if not self._not_before <= ns <= self._not_after:
            raise TimeStampError(
                "the TSA certificate is not valid at this time",
                hint="renew the TSA certificate (certmail notary init --tsa-cert ...)",
            )
        sec, rem = divmod(ns, 10**9)
        cached_sec, text = self._sec_cache  # one tuple: consistent across threads
        if sec != cached_sec:
            text = time.strftime("%Y%m%d%H%M%S", time.gmtime(sec)).encode()
            self._sec_cache = (sec, text)
        ms = rem // 10**6
        if ms:
            text += (b".%03d" % ms).rstrip(b"0")  # DER: no trailing zeros
        return _tlv(0x18, text + b"Z")

    def _issue(self, imprint: bytes, nonce: bytes | None, cert_req: bool) -> bytes:
        serial = self._serial_base | next(self._counter)
        tst_info = _tlv(
            0x30,
            self._tst_head
            + imprint
            + _int(serial)
            + self._gen_time()
            + self._accuracy
            + (nonce or b"")
            + self._tsa_name,
        )
        attrs = self._attrs_before + hashlib.sha256(tst_info).digest() + self._attrs_after
        signature = self._key.sign(self._attrs_set_head + attrs, self._ecdsa)
        signer_info = _tlv(
            0x30,
            self._signer_head
            + self._attrs_implicit_head
            + attrs
            + self._sig_alg
            + _octets(signature),
        )
        encap = _seq(self._encap_head, _tlv(0xA0, _octets(tst_info)))
        signed_data = _tlv(
            0x30,
            self._sd_head
            + encap
            + (self._certs_field if cert_req else b"")
            + _tlv(0x31, signer_info),
        )
        return _seq(self._ci_head, _tlv(0xA0, signed_data))


# --- verification --------------------------------------------------------------


@dataclass(frozen=True)
class TokenInfo:
    """What a verified TimeStampToken says (RFC 3161 §2.4.2 TSTInfo)."""

    gen_time: datetime
    serial: int
    policy: str
    hash_name: str
    digest: bytes
    nonce: int | None
    tsa_cert: x509.Certificate


_MAX_CHAIN = 8


def verify_token(
    token: bytes,
    *,
    roots: Sequence[x509.Certificate],
    data: bytes | None = None,
    digest: bytes | None = None,
    certificates: Sequence[x509.Certificate] = (),
    policy: str | None = None,
) -> TokenInfo:
    """Verify a DER TimeStampToken over ``data`` (or its ``digest``) against ``roots``.

    Checks the CMS signature over the signed attributes, the content-type and
    message-digest attributes, the ESS signing-certificate attribute, that the
    signer certificate carries exactly one, critical, timeStamping
    extendedKeyUsage (RFC 3161 §2.3), that it chains to one of ``roots`` with
    every certificate valid at genTime, the message imprint and, if given, the
    policy. ``certificates`` adds certificates (e.g. tsa-chain.pem) to those in
    the token. Returns the token's :class:`TokenInfo` or raises
    :class:`VerificationError`.
    """
    if (data is None) == (digest is None):
        raise ValueError("pass exactly one of data= or digest=")
    if not roots:
        raise ValueError("pass at least one trusted root certificate")
    try:
        return _verify(token, roots, data, digest, certificates, policy)
    except VerificationError:
        raise
    except (ValueError, TypeError, KeyError, IndexError, AttributeError, OverflowError) as exc:
        raise VerificationError(
            f"the time-stamp token is malformed ({exc}); it may have been modified maliciously"
        ) from exc


def _fail(msg: str) -> VerificationError:
    return VerificationError(f"time-stamp token: {msg}")


def _verify(
    token: bytes,
    roots: Sequence[x509.Certificate],
    data: bytes | None,
    digest: bytes | None,
    certificates: Sequence[x509.Certificate],
    policy: str | None,
) -> TokenInfo:
    ci = a_cms.ContentInfo.load(bytes(token), strict=True)
    if ci["content_type"].dotted != _OID_SIGNED_DATA:
        raise _fail("not a CMS SignedData")
    sd = ci["content"]
    encap = sd["encap_content_info"]
    if encap["content_type"].dotted != _OID_TST_INFO:
        raise _fail("the signed content is not a TSTInfo")
    tst_der = encap["content"].contents  # the OCTET STRING's content: TSTInfo DER
    tst = encap["content"].parsed
    tst.native  # noqa: B018  (parse everything now: malformed content fails here)
    if tst["version"].contents != b"\x01":
        raise _fail("unsupported TSTInfo version")

    signer_infos = sd["signer_infos"]
    if len(signer_infos) != 1:
        raise _fail(f"expected one SignerInfo, found {len(signer_infos)}")
    si = signer_infos[0]
    if sd["version"].native != "v3":
        raise _fail("SignedData version must be 3 for TSTInfo content (RFC 5652 §5.1)")
    sid_version = "v1" if si["sid"].name == "issuer_and_serial_number" else "v3"
    if si["version"].native != sid_version:
        raise _fail("SignerInfo version does not match its sid (RFC 5652 §5.3)")
    if si["digest_algorithm"]["algorithm"].dotted not in {
        a["algorithm"].dotted for a in sd["digest_algorithms"]
    }:
        raise _fail("the signer's digest algorithm is not among SignedData's digestAlgorithms")

    pool: list[x509.Certificate] = list(certificates)
    certs = sd["certificates"]
    # isinstance, not .native: .native decodes every certificate (milliseconds).
    for choice in [] if isinstance(certs, a_core.Void) else certs:
        if choice.name == "certificate":
            pool.append(x509.load_der_x509_certificate(choice.chosen.dump()))
    signer = _find_signer(si["sid"], pool + list(roots))

    # Signed attributes (RFC 5652 §5.4, §11).
    signed_attrs = si["signed_attrs"]
    if isinstance(signed_attrs, a_core.Void) or len(signed_attrs) == 0:
        raise _fail("the SignerInfo has no signed attributes")
    # The signed bytes, taken before anything reads a DEFAULT field (reading one
    # marks the tree mutated and makes asn1crypto re-encode it: milliseconds).
    to_verify = b"\x31" + _len(len(signed_attrs.contents)) + signed_attrs.contents
    attrs: dict[str, Any] = {}
    for attr in signed_attrs:
        name = attr["type"].dotted
        if name in attrs:
            raise _fail(f"signed attribute {name} appears twice")
        values = attr["values"]
        if len(values) != 1:
            raise _fail(f"signed attribute {name} must have exactly one value")
        attrs[name] = values[0]
    if _OID_CONTENT_TYPE not in attrs or attrs[_OID_CONTENT_TYPE].dotted != _OID_TST_INFO:
        raise _fail("the content-type attribute is missing or not TSTInfo")
    sig_hash_name = si["digest_algorithm"]["algorithm"].native
    if sig_hash_name not in ("sha256", "sha384", "sha512"):
        raise _fail(f"unsupported signer digest algorithm {sig_hash_name}")
    md = attrs.get(_OID_MESSAGE_DIGEST)
    if md is None or md.native != hashlib.new(sig_hash_name, tst_der).digest():
        raise _fail("the message-digest attribute does not match the TSTInfo")
    _check_signing_certificate(attrs, signer)

    # The signature, over the DER of the attributes with the SET OF tag.
    signature = si["signature"].native
    sig_hash = {"sha256": hashes.SHA256(), "sha384": hashes.SHA384(), "sha512": hashes.SHA512()}
    h = sig_hash[sig_hash_name]
    algo = si["signature_algorithm"]
    try:
        if algo.hash_algo != sig_hash_name:
            raise _fail("signature and digest algorithms disagree")
    except ValueError:
        pass  # a bare "ecdsa"/"rsassa_pkcs1v15": the digest algorithm applies
    pub = signer.public_key()
    try:
        if isinstance(pub, ec.EllipticCurvePublicKey) and algo.signature_algo == "ecdsa":
            pub.verify(signature, to_verify, ec.ECDSA(h))
        elif isinstance(pub, rsa.RSAPublicKey) and algo.signature_algo == "rsassa_pkcs1v15":
            pub.verify(signature, to_verify, padding.PKCS1v15(), h)
        else:
            raise _fail(f"unsupported signature algorithm {algo['algorithm'].dotted}")
    except InvalidSignature:
        raise _fail("the signature does not verify") from None

    _check_eku(signer)
    gen_time: datetime = tst["gen_time"].native.astimezone(UTC)
    _check_chain(signer, pool, roots, gen_time)

    tsa = tst["tsa"]
    if tsa.native is not None:
        subject = _a_cert(signer)["subject"]
        if tsa.name != "directory_name" or (
            tsa.chosen.dump() != subject.dump() and tsa.chosen != subject
        ):
            raise _fail("the tsa name does not match the signer certificate")

    imprint = tst["message_imprint"]
    hash_name = imprint["hash_algorithm"]["algorithm"].native
    if hash_name not in ("sha256", "sha384", "sha512", "sha224", "sha1"):
        raise _fail(f"unsupported message imprint algorithm {hash_name}")
    hashed = imprint["hashed_message"].native
    expected = hashlib.new(hash_name, data).digest() if data is not None else digest
    if hashed != expected:
        raise _fail("the message imprint does not match the data")

    tst_policy = tst["policy"].dotted
    if policy is not None and tst_policy != policy:
        raise _fail(f"policy {tst_policy} is not the expected {policy}")
    nonce = tst["nonce"].native
    return TokenInfo(
        gen_time=gen_time,
        serial=tst["serial_number"].native,
        policy=tst_policy,
        hash_name=hash_name,
        digest=hashed,
        nonce=nonce,
        tsa_cert=signer,
    )


def _find_signer(sid: a_cms.SignerIdentifier, pool: Sequence[x509.Certificate]) -> x509.Certificate:
    if sid.name == "issuer_and_serial_number":
        issuer = sid.chosen["issuer"]
        serial = sid.chosen["serial_number"].native
        for c in pool:
            if c.serial_number != serial:
                continue
            name = _a_cert(c)["issuer"]
            if name.dump() == issuer.dump() or name == issuer:  # bytes first: no stringprep
                return c
    else:
        ski = sid.chosen.native
        for c in pool:
            try:
                ext = c.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
            except x509.ExtensionNotFound:
                continue
            if ext.value.digest == ski:
                return c
    raise _fail("the signer's certificate is neither in the token nor among the given certificates")


def _a_cert(cert: x509.Certificate) -> Any:
    """The asn1crypto view of a certificate's TBSCertificate (names as encoded)."""
    der = cert.public_bytes(serialization.Encoding.DER)
    return a_x509.Certificate.load(der)["tbs_certificate"]


def _check_signing_certificate(attrs: dict[str, Any], signer: x509.Certificate) -> None:
    cert_der = signer.public_bytes(serialization.Encoding.DER)
    v2 = attrs.get(_OID_SIGNING_CERT_V2)
    v1 = attrs.get("1.2.840.113549.1.9.16.2.12")
    if v2 is not None:
        first = v2["certs"][0]
        hash_name = first["hash_algorithm"]["algorithm"].native
        if hash_name not in ("sha256", "sha384", "sha512"):
            raise _fail(f"unsupported ESSCertIDv2 hash {hash_name}")
        cert_hash = hashlib.new(hash_name, cert_der).digest()
    elif v1 is not None:
        first = v1["certs"][0]
        cert_hash = hashlib.sha1(cert_der, usedforsecurity=False).digest()
    else:
        raise _fail("no ESS signing-certificate attribute (RFC 3161 §2.4.2, RFC 5816)")
    if first["cert_hash"].native != cert_hash:
        raise _fail("the ESS signing-certificate attribute names another certificate")
    issuer_serial = first["issuer_serial"]
    if issuer_serial.native is not None and (
        issuer_serial["serial_number"].native != signer.serial_number
    ):
        raise _fail("the ESS signing-certificate serial number is not the signer's")


def _check_eku(cert: x509.Certificate) -> None:
    try:
        eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage)
    except x509.ExtensionNotFound:
        raise _fail("the TSA certificate has no extendedKeyUsage") from None
    if not eku.critical:
        raise _fail("the TSA certificate's extendedKeyUsage is not critical (RFC 3161 §2.3)")
    if list(eku.value) != [ExtendedKeyUsageOID.TIME_STAMPING]:
        raise _fail("the TSA certificate's extendedKeyUsage is not exactly timeStamping")


def _valid_at(cert: x509.Certificate, when: datetime) -> bool:
    return cert.not_valid_before_utc <= when <= cert.not_valid_after_utc


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        bc = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        return False
    if not bc.ca:
        return False
    try:
        ku = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        return True
    return ku.key_cert_sign


def _check_chain(
    leaf: x509.Certificate,
    pool: Sequence[x509.Certificate],
    roots: Sequence[x509.Certificate],
    when: datetime,
) -> None:
    """Find a path from ``leaf`` to one of ``roots``, every certificate valid at ``when``."""
    if not _valid_at(leaf, when):
        raise _fail(f"the TSA certificate was not valid at genTime {when:%Y-%m-%dT%H:%M:%SZ}")
    candidates = [*roots, *pool]

    def walk(cert: x509.Certificate, depth: int) -> bool:
        if cert in roots:
            return True
        if depth >= _MAX_CHAIN:
            return False
        for parent in candidates:
            if parent == cert or parent.subject != cert.issuer:
                continue
            if not (_is_ca(parent) and _valid_at(parent, when)):
                continue
            try:
                cert.verify_directly_issued_by(parent)
            except (ValueError, TypeError, InvalidSignature):
                continue
            if walk(parent, depth + 1):
                return True
        return False

    if not walk(leaf, 0):
        raise _fail(
            "the TSA certificate does not chain to a trusted root with every "
            "certificate valid at genTime"
        )


__all__ = [
    "DEFAULT_POLICY_OID",
    "TimeStampAuthority",
    "TimeStampError",
    "TokenInfo",
    "rejection",
    "verify_token",
]
