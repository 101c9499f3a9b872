"""RFC 3161 §2.4.1 TimeStampReq parsing and §2.4.2 PKIStatusInfo rejections.

The request parser is strict and size-bounded (a real query is under 200
bytes): every field is read with the package's DER reader, and anything it
cannot place raises :class:`~notary.rfc3161.der.DerError`, which the TSA
answers with a ``badDataFormat`` rejection.
"""

from __future__ import annotations

from dataclasses import dataclass

from notary.rfc3161 import der
from notary.rfc3161.oids import HASH_OIDS

__all__ = [
    "ADD_INFO_NOT_AVAILABLE",
    "BAD_ALG",
    "BAD_DATA_FORMAT",
    "BAD_REQUEST",
    "GRANTED",
    "MAX_NONCE_BYTES",
    "MAX_QUERY_BYTES",
    "REJECTION",
    "SYSTEM_FAILURE",
    "TIME_NOT_AVAILABLE",
    "UNACCEPTED_EXTENSION",
    "UNACCEPTED_POLICY",
    "Query",
    "parse_query",
    "rejection",
]

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

#: OID content octets -> hash name.
_HASH_BY_OID = {der.oid(dotted)[2:]: name for name, dotted in HASH_OIDS.items()}


def rejection(fail_bit: int, text: str) -> bytes:
    """A TimeStampResp with PKIStatus rejection, a statusString and one failInfo bit.

    Hand-encoded so that any input, even one asn1crypto cannot parse, gets a
    well-formed answer (RFC 3161 §2.4.2).
    """
    status = der.seq(der.integer(REJECTION), der.seq(der.utf8(text)), der.named_bit(fail_bit))
    return der.seq(status)


@dataclass(frozen=True)
class Query:
    """The fields of a TimeStampReq the TSA acts on."""

    imprint: bytes  # the MessageImprint TLV exactly as received
    hash_name: str | None  # None: an algorithm the TSA does not support
    digest: bytes
    policy: bytes | None  # OID content octets
    nonce: bytes | None  # INTEGER TLV exactly as received
    cert_req: bool
    version_ok: bool
    extensions: bool


def _read_imprint(buf: bytes, pos: int, end: int) -> tuple[int, str | None, bytes]:
    """The MessageImprint at ``pos``: (its end, hash name or None, hashedMessage)."""
    tag, s, im_end = der.read(buf, pos, end)
    if tag != 0x30:
        raise der.DerError("messageImprint")
    tag, a, alg_end = der.read(buf, s, im_end)  # hashAlgorithm
    if tag != 0x30:
        raise der.DerError("hashAlgorithm")
    tag, o, oe = der.read(buf, a, alg_end)
    if tag != 0x06 or oe == o:
        raise der.DerError("hashAlgorithm OID")
    hash_name = _HASH_BY_OID.get(buf[o:oe])
    if oe != alg_end:
        tag, p, pe = der.read(buf, oe, alg_end)
        if pe != alg_end:
            raise der.DerError("hashAlgorithm parameters")
        if tag != 0x05 or pe != p:
            hash_name = None  # parameters we do not understand: an unsupported algorithm
    tag, d, de = der.read(buf, alg_end, im_end)
    if tag != 0x04 or de != im_end:
        raise der.DerError("hashedMessage")
    return im_end, hash_name, buf[d:de]


def parse_query(buf: bytes) -> Query:
    """Parse a TimeStampReq (RFC 3161 §2.4.1) strictly; raise DerError on bad DER."""
    tag, pos, end = der.read(buf, 0, len(buf))
    if tag != 0x30 or end != len(buf):
        raise der.DerError("not a single SEQUENCE")
    tag, s, e = der.read(buf, pos, end)  # version
    if tag != 0x02:
        raise der.DerError("version")
    der.check_int(buf, s, e)
    version_ok = buf[s:e] == b"\x01"
    im_start = e
    pos, hash_name, digest = _read_imprint(buf, im_start, end)
    imprint = buf[im_start:pos]

    policy = nonce = None
    cert_req = extensions = False
    if pos < end:
        tag, s, e = der.read(buf, pos, end)
        if tag == 0x06:
            if e == s:
                raise der.DerError("reqPolicy")
            policy = buf[s:e]
            pos = e
    if pos < end:
        tag, s, e = der.read(buf, pos, end)
        if tag == 0x02:
            der.check_int(buf, s, e)
            if e - s > MAX_NONCE_BYTES:
                raise der.DerError("nonce too long")
            nonce = buf[pos:e]
            pos = e
    if pos < end:
        tag, s, e = der.read(buf, pos, end)
        if tag == 0x01:
            if e - s != 1 or buf[s] not in (0x00, 0xFF):
                raise der.DerError("certReq")
            cert_req = buf[s] == 0xFF
            pos = e
    if pos < end:
        tag, s, e = der.read(buf, pos, end)
        if tag == 0xA0:
            extensions = True
            pos = e
    if pos != end:
        raise der.DerError("unexpected trailing fields")
    return Query(imprint, hash_name, digest, policy, nonce, cert_req, version_ok, extensions)
