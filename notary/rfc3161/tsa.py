"""The RFC 3161 Time-Stamp Authority: answers TimeStampReqs and stamps digests.

Implements the responder side of RFC 3161 §2.4 with the ESS signing-certificate
attribute of RFC 5816 inside a CMS SignedData (RFC 5652). Built for speed:
everything that does not change per request is held once by the chain's
:class:`~notary.rfc3161.template.TokenTemplate` (the same template the verifier
checks tokens against); a request splices in the message imprint, serial
number, genTime and nonce, hashes the TSTInfo, and signs once with ECDSA P-256.
The template is the TSA's only way of writing a token, so there is no separate
reference issuer for ``CERTMAIL_REFERENCE_ONLY`` to switch to; the tokens pass
the reference verifier, ``openssl ts -verify`` and rfc3161-client (tests).

Serial numbers (RFC 3161 §2.4.2, unique per TSA) are ``epoch << 64 | n`` where
``n`` counts tokens from 1 within one :class:`TimeStampAuthority` and ``epoch``
is taken once per instance. With a ``state_dir`` the epoch is persisted in
``serial-epoch`` under an exclusive lock, fsynced before the first token, and is
``max(previous epoch + 1, microseconds since 1970)``: strictly increasing across
restarts and across processes sharing the directory, and it still moves forward
if the file is restored from an old backup (time has moved on) or the clock is
set back (the file remembers). Without a ``state_dir`` the epoch is the start
time in microseconds followed by 32 random bits. See docs/rfc3161.md.

The fast path of :meth:`TimeStampAuthority.respond` (off with
``CERTMAIL_REFERENCE_ONLY=1``, :mod:`notary.fastpath`) is built from this same
code. A query the reference parser granted is remembered as its *shape*: its
bytes less the digest and the nonce's content. A later query of the same length
and the same fixed bytes parses the same way (only the digest, any octets, and
the nonce, a minimal INTEGER, differ), so it skips the parser. Its answer is
spliced: the TimeStampResp the reference writes around a TSTInfo, signed
attributes and signature of given sizes is cut once into the fixed bytes between
them (a *frame*, checked against the reference output when it is made), and each
answer is those bytes joined with its own three parts.
"""

from __future__ import annotations

import fcntl
import itertools
import os
import secrets
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from notary import fastpath
from notary.errors import NotaryError
from notary.rfc3161 import der
from notary.rfc3161.oids import DEFAULT_POLICY_OID, HASH_OIDS, HASH_SIZES
from notary.rfc3161.query import (
    BAD_ALG,
    BAD_DATA_FORMAT,
    BAD_REQUEST,
    GRANTED,
    MAX_QUERY_BYTES,
    SYSTEM_FAILURE,
    TIME_NOT_AVAILABLE,
    UNACCEPTED_EXTENSION,
    UNACCEPTED_POLICY,
    Query,
    parse_query,
    rejection,
)
from notary.rfc3161.template import TokenTemplate

if TYPE_CHECKING:
    from keys.tsa import TsaCredentials  # the type only: importing keys.tsa costs

__all__ = ["TimeStampAuthority", "TimeStampError"]


class TimeStampError(NotaryError):
    """The TSA cannot issue a token now (e.g. its certificate is not valid at this time)."""


def _gen_time_bounds(cert: x509.Certificate) -> tuple[int, int]:
    return (
        int(cert.not_valid_before_utc.timestamp()) * 10**9,
        int(cert.not_valid_after_utc.timestamp()) * 10**9,
    )


def _fsync_write(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, text.encode())
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(directory: Path) -> None:
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


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
        _fsync_write(tmp, f"{epoch}\n")
        os.replace(tmp, path)
        _fsync_dir(state_dir)
        return epoch
    finally:
        os.close(lock_fd)  # releases the lock


#: How many query shapes and answer frames the fast path keeps (a client sends one or two).
_MAX_SHAPES = 16
_MAX_FRAMES = 64


class _Shape(NamedTuple):
    """A granted query's layout: its bytes are fixed but for ``[digest_at:imprint_end]``
    (the digest) and ``[nonce_at:nonce_end]`` (the nonce's content, when it has one)."""

    prefix: bytes  # the query up to the digest
    imprint_at: int
    digest_at: int
    imprint_end: int
    middle: bytes  # from the imprint's end to the nonce's content (or to the end)
    nonce_tlv_at: int  # -1: no nonce
    nonce_at: int
    suffix: bytes  # after the nonce (the certReq), b"" without a nonce
    cert_req: bool


def _shape_of(query: bytes, q: Query) -> _Shape:
    """The shape of ``query``, a TimeStampReq that :func:`parse_query` read as ``q``."""
    _, pos, end = der.read(query, 0, len(query))
    _, _, imprint_at = der.read(query, pos, end)  # version
    imprint_end = imprint_at + len(q.imprint)
    digest_at = imprint_end - len(q.digest)
    if q.nonce is None:
        return _Shape(
            query[:digest_at], imprint_at, digest_at, imprint_end, query[imprint_end:],
            -1, len(query), b"", q.cert_req,
        )  # fmt: skip
    nonce_tlv_at = imprint_end
    if q.policy is not None:
        _, _, nonce_tlv_at = der.read(query, imprint_end, end)
    _, nonce_at, nonce_end = der.read(query, nonce_tlv_at, end)
    return _Shape(
        query[:digest_at], imprint_at, digest_at, imprint_end,
        query[imprint_end:nonce_at], nonce_tlv_at, nonce_at, query[nonce_end:], q.cert_req,
    )  # fmt: skip


def _accuracy(accuracy_ms: int) -> bytes:
    """Accuracy ::= SEQUENCE { seconds INTEGER OPTIONAL, millis [0] INTEGER OPTIONAL }."""
    secs, ms = divmod(accuracy_ms, 1000)
    acc = (der.integer(secs) if secs else b"") + (der.tlv(0x80, der.integer(ms)[2:]) if ms else b"")
    return der.seq(acc)


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

        self.template = TokenTemplate.for_chain((creds.cert, *creds.chain))
        self._policy = der.oid(policy_oid)
        self._accuracy = _accuracy(accuracy_ms)
        self._chain_pem = b"".join(
            c.public_bytes(serialization.Encoding.PEM) for c in (creds.cert, *creds.chain)
        )
        self._granted = der.seq(der.integer(GRANTED))
        self._sec_cache = (-1, b"")  # (a second since 1970, its GeneralizedTime text)
        self._fast = fastpath.enabled()  # taken once: an instance is fast or reference
        self._shapes: dict[int, _Shape] = {}  # query length -> a granted query's shape
        self._frames: dict[tuple[int, int, int, bool], tuple[bytes, bytes, bytes]] = {}

    # -- public API --

    def respond(self, query_der: bytes) -> bytes:
        """Answer a DER TimeStampReq with a DER TimeStampResp (RFC 3161 §2.4.2).

        Never raises: malformed or unsupported requests get PKIStatus rejection
        with the matching failInfo; an internal failure gets systemFailure.
        """
        try:
            if len(query_der) > MAX_QUERY_BYTES:
                return rejection(BAD_DATA_FORMAT, "The request is too large.")
            query_der = bytes(query_der)
            fast = self._fast
            if fast:
                reply = self._respond_shaped(query_der)
                if reply is not None:
                    return reply
            try:
                q = parse_query(query_der)
            except der.DerError:
                return rejection(BAD_DATA_FORMAT, "Bad request format.")
            if not q.version_ok:
                return rejection(BAD_REQUEST, "Bad request version.")
            if q.hash_name is None:
                return rejection(BAD_ALG, "Message digest algorithm is not supported.")
            if len(q.digest) != HASH_SIZES[q.hash_name]:
                return rejection(BAD_DATA_FORMAT, "Bad message digest.")
            if q.policy is not None and q.policy != self._policy[2:]:
                return rejection(UNACCEPTED_POLICY, "Requested policy is not supported.")
            if q.extensions:
                return rejection(UNACCEPTED_EXTENSION, "Unsupported extension.")
            try:
                if fast:
                    if len(self._shapes) >= _MAX_SHAPES:
                        self._shapes.clear()
                    self._shapes[len(query_der)] = _shape_of(query_der, q)
                    return self._framed(*self._sign(q.imprint, q.nonce), q.cert_req)
                token = self._issue(q.imprint, q.nonce, q.cert_req)
            except TimeStampError:
                return rejection(TIME_NOT_AVAILABLE, "The TSA cannot issue tokens at this time.")
            return der.tlv(0x30, self._granted + token)
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
        if hash_name not in HASH_SIZES:
            raise ValueError(f"unsupported hash {hash_name!r}; use sha256, sha384 or sha512")
        if len(digest) != HASH_SIZES[hash_name]:
            raise ValueError(f"a {hash_name} digest is {HASH_SIZES[hash_name]} bytes")
        imprint = der.seq(der.seq(der.oid(HASH_OIDS[hash_name])), der.octets(bytes(digest)))
        return self._issue(imprint, None if nonce is None else der.integer(nonce), cert_req)

    def chain_pem(self) -> bytes:
        """The TSA certificate, then its issuers up to the root, in PEM."""
        return self._chain_pem

    # -- issuing --

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
        return der.tlv(0x18, text + b"Z")

    def _sign(self, imprint: bytes, nonce: bytes | None) -> tuple[bytes, bytes, bytes]:
        """(TSTInfo, signed attributes, signature) of a new token."""
        serial = self._serial_base | next(self._counter)
        tpl = self.template
        tst_info = tpl.tst_info(
            self._policy, imprint, serial, self._gen_time(), self._accuracy, nonce
        )
        attrs = tpl.signed_attrs(tst_info)
        return tst_info, attrs, self._key.sign(tpl.signed_bytes(attrs), self._ecdsa)

    def _issue(self, imprint: bytes, nonce: bytes | None, cert_req: bool) -> bytes:
        return self.template.token(*self._sign(imprint, nonce), cert_req)

    # -- the fast path --

    def _respond_shaped(self, query: bytes) -> bytes | None:
        """The granted answer to ``query`` if it has a remembered shape, else None."""
        shape = self._shapes.get(len(query))
        if shape is None or not query.startswith(shape.prefix):
            return None
        nonce_at, imprint_end = shape.nonce_at, shape.imprint_end
        if not query.startswith(shape.middle, imprint_end) or not query.endswith(shape.suffix):
            return None
        nonce = None
        if shape.nonce_tlv_at >= 0:
            try:
                der.check_int(query, nonce_at, len(query) - len(shape.suffix))
            except der.DerError:
                return None  # the reference parser answers it
            nonce = query[shape.nonce_tlv_at : len(query) - len(shape.suffix)]
        try:
            parts = self._sign(query[shape.imprint_at : imprint_end], nonce)
        except TimeStampError:
            return rejection(TIME_NOT_AVAILABLE, "The TSA cannot issue tokens at this time.")
        return self._framed(*parts, shape.cert_req)

    def _framed(self, tst_info: bytes, attrs: bytes, signature: bytes, cert_req: bool) -> bytes:
        """The granted TimeStampResp of a token of these parts, from its frame."""
        key = (len(tst_info), len(attrs), len(signature), cert_req)
        frame = self._frames.get(key)
        if frame is None:
            frame = self._frame(*key)
        head, middle, tail = frame
        return b"".join((head, tst_info, middle, attrs, tail, signature))

    def _frame(
        self, tst_len: int, attrs_len: int, sig_len: int, cert_req: bool
    ) -> tuple[bytes, bytes, bytes]:
        """The fixed bytes the reference writes around a TSTInfo, signed attributes and
        signature of these sizes: cut from a reference answer to random parts, checked."""
        tst, attrs, sig = os.urandom(tst_len), os.urandom(attrs_len), os.urandom(sig_len)
        whole = der.tlv(0x30, self._granted + self.template.token(tst, attrs, sig, cert_req))
        t = whole.index(tst)
        a = whole.rindex(attrs)
        s = len(whole) - sig_len
        frame = (whole[:t], whole[t + tst_len : a], whole[a + attrs_len : s])
        if b"".join((frame[0], tst, frame[1], attrs, frame[2], sig)) != whole:
            raise AssertionError("the answer's frame does not rebuild it")
        if len(self._frames) >= _MAX_FRAMES:
            self._frames.clear()
        self._frames[(tst_len, attrs_len, sig_len, cert_req)] = frame
        return frame
