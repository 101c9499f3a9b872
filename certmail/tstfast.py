"""A fast, full check of RFC 3161 tokens laid out exactly as certmail's TSA writes them.

:class:`notary.rfc3161.TimeStampAuthority` emits every token from one template:
only the TSTInfo (imprint, serial, genTime, accuracy, nonce) and the ECDSA
signature change; the SignedData around them (sid, digest and signature
algorithms, the signed attributes but for the message digest, the embedded
certificates) is fixed by the TSA certificate chain. :func:`verify_fast`
extracts the two variable parts, rebuilds the whole token from the template of
``tsa-chain.pem`` and requires the result to equal the token byte for byte;
then it checks what remains cryptographically: the ECDSA signature over the
signed attributes (which hold SHA-256 of the TSTInfo and the ESSCertIDv2 hash
of the signer certificate), the message imprint, the tsa name, and the chain
validity at genTime (the chain's signatures, CA flags and the timeStamping EKU
are checked once per chain). It needs no asn1crypto.

A token it cannot place returns ``None``: the caller then runs the general
verifier (:func:`notary.rfc3161.verify_token`), which also produces the error
message. So this path only ever accepts what the general verifier and the
bundle's form check accept too, faster.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Sequence

    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric.ec import EllipticCurvePublicKey

__all__ = ["FastTokenInfo", "template_for", "verify_fast"]


def _len(n: int) -> bytes:
    if n < 0x80:
        return bytes((n,))
    body = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes((0x80 | len(body),)) + body


def _tlv(tag: int, content: bytes) -> bytes:
    return bytes((tag,)) + _len(len(content)) + content


def _int(n: int) -> bytes:
    return _tlv(0x02, n.to_bytes(n.bit_length() // 8 + 1, "big", signed=True))


def _oid(dotted: str) -> bytes:
    arcs = [int(a) for a in dotted.split(".")]
    out = bytearray()
    for arc in [arcs[0] * 40 + arcs[1], *arcs[2:]]:
        chunk = [arc & 0x7F]
        arc >>= 7
        while arc:
            chunk.append(0x80 | (arc & 0x7F))
            arc >>= 7
        out += bytes(reversed(chunk))
    return _tlv(0x06, bytes(out))


class _Bad(Exception):
    pass


def _read(buf: bytes, pos: int, end: int) -> tuple[int, int, int]:
    """(tag, content start, content end) of the DER TLV at ``pos``; minimal lengths only."""
    if pos + 2 > end:
        raise _Bad
    tag, first = buf[pos], buf[pos + 1]
    pos += 2
    if first < 0x80:
        n = first
    else:
        k = first & 0x7F
        if k == 0 or k > 3 or pos + k > end or buf[pos] == 0:
            raise _Bad
        n = int.from_bytes(buf[pos:pos + k], "big")
        if n < 0x80 or (k > 1 and n < 1 << (8 * (k - 1))):
            raise _Bad
        pos += k
    if pos + n > end:
        raise _Bad
    return tag, pos, pos + n


def _children(buf: bytes, start: int, end: int) -> list[tuple[int, int, int, int]]:
    """(tag, TLV start, content start, content end) of each TLV in ``buf[start:end]``."""
    out = []
    while start < end:
        t, s, e = _read(buf, start, end)
        out.append((t, start, s, e))
        start = e
    return out


def _uint(buf: bytes, s: int, e: int) -> int:
    """A positive INTEGER's value, minimal encoding only."""
    if e <= s or buf[s] & 0x80 or (e - s > 1 and buf[s] == 0 and not buf[s + 1] & 0x80):
        raise _Bad
    return int.from_bytes(buf[s:e], "big")


_DOTTED: dict[bytes, str] = {}


def _dotted(content: bytes) -> str:
    """The dotted form of an OID's content octets (remembered: a TSA has one policy)."""
    got = _DOTTED.get(content)
    if got is None:
        got = _dotted_uncached(content)
        if len(_DOTTED) < 256:
            _DOTTED[bytes(content)] = got
    return got


def _dotted_uncached(content: bytes) -> str:
    if not content or content[-1] & 0x80:
        raise _Bad
    arcs: list[int] = []
    value, fresh = 0, True
    for b in content:
        if fresh and b == 0x80:
            raise _Bad  # not minimal
        value = (value << 7) | (b & 0x7F)
        fresh = not b & 0x80
        if fresh:
            arcs.append(value)
            value = 0
    first = min(arcs[0] // 40, 2)
    return ".".join(str(a) for a in [first, arcs[0] - 40 * first, *arcs[1:]])


_GEN_TIME = re.compile(rb"(\d{4})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})(?:\.(\d{0,5}[1-9]))?Z")

_SHA256_ALG = _tlv(0x30, _oid("2.16.840.1.101.3.4.2.1"))
_OID_TST_INFO = _oid("1.2.840.113549.1.9.16.1.4")
_HEAD_CI = _oid("1.2.840.113549.1.7.2")
_SIG_ALG = _tlv(0x30, _oid("1.2.840.10045.4.3.2"))


@dataclass(frozen=True)
class FastTokenInfo:
    """What a verified token says (the fields of notary.rfc3161.TokenInfo the bundle uses)."""

    gen_time: datetime
    serial: int
    policy: str
    hash_name: str
    digest: bytes
    nonce: int | None
    tsa_cert: x509.Certificate


@dataclass(frozen=True)
class _Template:
    signer: x509.Certificate
    key: EllipticCurvePublicKey
    attrs_before: bytes
    attrs_after: bytes
    signer_head: bytes
    certs_field: bytes
    tsa_name: bytes
    not_before: datetime
    not_after: datetime


def _name_fields(cert_der: bytes) -> tuple[bytes, bytes]:
    """(issuer, subject) Name DER of a certificate, as encoded."""
    _, s, e = _read(cert_der, 0, len(cert_der))
    _, ts, te = _read(cert_der, s, e)
    kids = _children(cert_der, ts, te)
    if kids[0][0] == 0xA0:
        kids = kids[1:]
    # serial, signature algorithm, issuer, validity, subject
    issuer, subject = kids[2], kids[4]
    return cert_der[issuer[1]:issuer[3]], cert_der[subject[1]:subject[3]]


#: Templates by (exact chain bytes, trusted roots' DER): pure functions of those bytes.
_TEMPLATES: dict[tuple[bytes, tuple[bytes, ...]], _Template | None] = {}


def template_for(chain_pem: bytes, chain: Sequence[x509.Certificate],
                 roots: Sequence[x509.Certificate]) -> _Template | None:
    """The token template of a verified tsa-chain.pem whose end is trusted by ``roots``
    (the caller checked both), or None when the chain does not qualify for the fast path."""
    key = (chain_pem, tuple(_der(r) for r in roots))
    if key in _TEMPLATES:
        return _TEMPLATES[key]
    try:
        tpl = _build(chain, roots)
    except (_Bad, ValueError, IndexError, TypeError):
        tpl = None
    if len(_TEMPLATES) >= 64:
        _TEMPLATES.clear()
    _TEMPLATES[key] = tpl
    return tpl


#: DER of the certificates seen (roots are passed on every call): a pure function of the
#: certificate, which hashes and compares by its DER without re-serialising it.
_DERS: dict[x509.Certificate, bytes] = {}


def _der(cert: x509.Certificate) -> bytes:
    got = _DERS.get(cert)
    if got is None:
        from cryptography.hazmat.primitives.serialization import Encoding

        got = cert.public_bytes(Encoding.DER)
        if len(_DERS) >= 256:
            _DERS.clear()
        _DERS[cert] = got
    return got


def _build(chain: Sequence[x509.Certificate],
           roots: Sequence[x509.Certificate]) -> _Template | None:
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID

    leaf = chain[0]
    pub = leaf.public_key()
    if not isinstance(pub, ec.EllipticCurvePublicKey):
        return None
    # exactly one, critical, timeStamping EKU (RFC 3161 §2.3), as notary.rfc3161._check_eku
    try:
        eku = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage)
    except x509.ExtensionNotFound:
        return None
    if not eku.critical or list(eku.value) != [ExtendedKeyUsageOID.TIME_STAMPING]:
        return None
    # The path the general verifier would walk: the chain as given (each certificate
    # issued by the next, checked by the caller), then a root if the chain's last
    # certificate is not itself one. Every parent must be a CA.
    path = list(chain)
    if path[-1] not in roots:
        issuers = [r for r in roots if _issued(path[-1], r)]
        if not issuers:
            return None
        path.append(issuers[0])
    if not all(_is_ca(p) for p in path[1:]):
        return None
    leaf_der = _der(leaf)
    issuer_der, subject_der = _name_fields(leaf_der)
    serial = _int(leaf.serial_number)
    ess_cert_id_v2 = _tlv(0x30, _tlv(0x04, hashlib.sha256(leaf_der).digest())
                          + _tlv(0x30, _tlv(0x30, _tlv(0xA4, issuer_der)) + serial))
    attrs = [
        _tlv(0x30, _oid("1.2.840.113549.1.9.3") + _tlv(0x31, _OID_TST_INFO)),
        _tlv(0x30, _oid("1.2.840.113549.1.9.4") + _tlv(0x31, _tlv(0x04, b"\x00" * 32))),
        _tlv(0x30, _oid("1.2.840.113549.1.9.16.2.47")
             + _tlv(0x31, _tlv(0x30, _tlv(0x30, ess_cert_id_v2)))),
    ]
    md_attr = attrs[1]
    ordered = sorted(attrs)
    i = ordered.index(md_attr)
    return _Template(
        signer=leaf,
        key=pub,
        attrs_before=b"".join(ordered[:i]) + md_attr[:-32],
        attrs_after=b"".join(ordered[i + 1:]),
        signer_head=_int(1) + _tlv(0x30, issuer_der + serial) + _SHA256_ALG,
        certs_field=_tlv(0xA0, b"".join(sorted(_der(c) for c in chain))),
        tsa_name=_tlv(0xA0, _tlv(0xA4, subject_der)),
        not_before=max(c.not_valid_before_utc for c in path),
        not_after=min(c.not_valid_after_utc for c in path),
    )


def _is_ca(cert: x509.Certificate) -> bool:
    """As notary.rfc3161._is_ca: basicConstraints cA, and keyCertSign if keyUsage is there."""
    from cryptography import x509

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


def _issued(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(issuer)
    except Exception:
        return False
    return True


def verify_fast(token: bytes, tpl: _Template, message_sha256: bytes) -> FastTokenInfo | None:
    """The token's info when it is exactly in the template's layout and verifies over the
    message whose SHA-256 is ``message_sha256``; None otherwise (run the general verifier)."""
    try:
        return _verify(token, tpl, message_sha256)
    except (_Bad, ValueError, IndexError, OverflowError):
        return None


_ECDSA_SHA256: list[Any] = []


def _verify(token: bytes, tpl: _Template, message_sha256: bytes) -> FastTokenInfo | None:
    from cryptography.exceptions import InvalidSignature

    if not _ECDSA_SHA256:
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import ec

        _ECDSA_SHA256.append(ec.ECDSA(hashes.SHA256()))
    n = len(token)
    # ContentInfo > [0] > SignedData > (version, digestAlgorithms, encap, [certs], signerInfos)
    t, s, e = _read(token, 0, n)
    if t != 0x30 or e != n:
        return None
    kids = _children(token, s, e)
    if len(kids) != 2 or kids[1][0] != 0xA0:
        return None
    t, s, e = _read(token, kids[1][2], kids[1][3])
    sd = _children(token, s, e)
    if len(sd) not in (4, 5):
        return None
    encap = _children(token, sd[2][2], sd[2][3])
    if len(encap) != 2:
        return None
    _, os_, oe = _read(token, encap[1][2], encap[1][3])
    tst = token[os_:oe]
    sis = _children(token, sd[-1][2], sd[-1][3])
    if len(sis) != 1:
        return None
    si = _children(token, sis[0][2], sis[0][3])
    signature = token[si[-1][2]:si[-1][3]]

    attrs = tpl.attrs_before + hashlib.sha256(tst).digest() + tpl.attrs_after
    signer_info = _tlv(0x30, tpl.signer_head + _tlv(0xA0, attrs) + _SIG_ALG
                       + _tlv(0x04, signature))
    encap_der = _tlv(0x30, _OID_TST_INFO + _tlv(0xA0, _tlv(0x04, tst)))
    certs = tpl.certs_field if len(sd) == 5 else b""
    rebuilt = _tlv(0x30, _HEAD_CI + _tlv(0xA0, _tlv(
        0x30, _int(3) + _tlv(0x31, _SHA256_ALG) + encap_der + certs + _tlv(0x31, signer_info))))
    if rebuilt != token:
        return None

    info = _tst_info(tst, tpl, message_sha256)
    if info is None:
        return None
    if not tpl.not_before <= info.gen_time <= tpl.not_after:
        return None
    try:
        tpl.key.verify(signature, b"\x31" + _len(len(attrs)) + attrs, _ECDSA_SHA256[0])
    except InvalidSignature:
        return None
    return info


def _tst_info(tst: bytes, tpl: _Template, message_sha256: bytes) -> FastTokenInfo | None:
    t, s, e = _read(tst, 0, len(tst))
    if t != 0x30 or e != len(tst):
        return None
    kids = _children(tst, s, e)
    if len(kids) not in (7, 8):
        return None
    version, policy, imprint, serial, gen, accuracy = kids[:6]
    nonce = kids[6] if len(kids) == 8 else None
    tsa = kids[-1]

    def whole(k: tuple[int, int, int, int]) -> bytes:
        return tst[k[1]:k[3]]

    if whole(version) != b"\x02\x01\x01" or policy[0] != 0x06:
        return None
    if whole(imprint) != _tlv(0x30, _SHA256_ALG + _tlv(0x04, message_sha256)):
        return None
    if whole(tsa) != tpl.tsa_name:
        return None
    if serial[0] != 0x02 or gen[0] != 0x18 or accuracy[0] != 0x30:
        return None
    # accuracy: [seconds INTEGER] [millis [0] 1..999], nothing else, minimal
    acc = _children(tst, accuracy[2], accuracy[3])
    tags = [a[0] for a in acc]
    if tags not in ([], [0x02], [0x80], [0x02, 0x80]):
        return None
    for a in acc:
        v = _uint(tst, a[2], a[3])
        if v == 0 or (a[0] == 0x80 and v > 999):
            return None
    nonce_value = None
    if nonce is not None:
        if nonce[0] != 0x02:
            return None
        nonce_value = _uint(tst, nonce[2], nonce[3])
    m = _GEN_TIME.fullmatch(tst[gen[2]:gen[3]])
    if m is None:
        return None
    y, mo, d, h, mi, sec = (int(x) for x in m.groups()[:6])
    frac = m.group(7) or b""
    gen_time = datetime(y, mo, d, h, mi, sec, int(frac.ljust(6, b"0")) if frac else 0,
                        tzinfo=UTC)
    return FastTokenInfo(
        gen_time=gen_time,
        serial=_uint(tst, serial[2], serial[3]),
        policy=_dotted(tst[policy[2]:policy[3]]),
        hash_name="sha256",
        digest=message_sha256,
        nonce=nonce_value,
        tsa_cert=tpl.signer,
    )
