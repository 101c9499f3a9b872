"""The token template: the one layout certmail's TSA issues, written and read back.

A TimeStampToken (RFC 3161 §2.4.2) is a CMS SignedData (RFC 5652 §5) whose
content is a TSTInfo. For one TSA certificate chain everything around the
TSTInfo and the ECDSA signature is fixed: the SignedData and SignerInfo
versions, the sid (issuerAndSerialNumber), the digest and signature algorithms,
the signed attributes except the message digest (content-type TSTInfo,
SigningCertificateV2 with an ESSCertIDv2 whose hashAlgorithm is omitted for
SHA-256, RFC 5816), and the embedded certificates (DER-sorted). A
:class:`TokenTemplate` holds those fixed bytes once.

:class:`~notary.rfc3161.tsa.TimeStampAuthority` issues every token with
:meth:`TokenTemplate.token`; the verifier's fast path reads a token's two
variable parts back (:meth:`TokenTemplate.match`), rebuilds the token with the
same method and requires it to equal the token byte for byte, so that only the
signature, the TSTInfo's fields and the chain remain to be checked. Pure bytes
work: no asn1crypto.
"""

from __future__ import annotations

import functools
import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import NamedTuple

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from notary.rfc3161 import der, oids

__all__ = [
    "TokenLayout",
    "TokenTemplate",
    "TstFields",
    "TstLayout",
    "read_token",
    "read_tst",
    "split_attrs",
]

_SHA256_ALG = der.seq(der.oid(oids.HASH_OIDS["sha256"]))
_SIG_ALG = der.seq(der.oid(oids.ECDSA_SHA256))
_SD_HEAD = der.integer(3) + der.tlv(0x31, _SHA256_ALG)  # version 3, digestAlgorithms
_ENCAP_HEAD = der.oid(oids.TST_INFO)
_CI_HEAD = der.oid(oids.SIGNED_DATA)
_MESSAGE_DIGEST_OID = der.oid(oids.MESSAGE_DIGEST)
_TST_VERSION = der.integer(1)
#: A SHA-256 MessageImprint up to its 32-byte hashedMessage.
_SHA256_IMPRINT_HEAD = der.seq(_SHA256_ALG, der.octets(bytes(32)))[:-32]
#: GeneralizedTime as DER requires it (X.690 §11.7): UTC, no trailing zeros in the fraction.
_GEN_TIME = re.compile(rb"(\d{4})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})(?:\.(\d{0,5}[1-9]))?Z")


def _name_fields(cert_der: bytes) -> tuple[bytes, bytes]:
    """(issuer, subject) Name DER of a certificate, exactly as encoded in it."""
    _, s, e = der.read(cert_der, 0, len(cert_der))
    _, ts, te = der.read(cert_der, s, e)  # TBSCertificate
    kids = der.children(cert_der, ts, te)
    if kids[0][0] == 0xA0:  # [0] version
        kids = kids[1:]
    # serialNumber, signature, issuer, validity, subject
    issuer, subject = kids[2], kids[4]
    return cert_der[issuer[1] : issuer[3]], cert_der[subject[1] : subject[3]]


class TstFields(NamedTuple):
    """The TSTInfo fields a template-layout token varies (RFC 3161 §2.4.2)."""

    gen_time: datetime
    serial: int
    policy: str
    nonce: int | None


@dataclass(frozen=True)
class TokenTemplate:
    """The fixed bytes of every token issued under one TSA certificate chain."""

    attrs_before: bytes  # signed attributes up to the message digest's value
    attrs_after: bytes  # signed attributes after it
    signer_head: bytes  # SignerInfo version, sid, digestAlgorithm
    certs_field: bytes  # [0] IMPLICIT SET OF Certificate, DER-sorted
    tsa_name: bytes  # TSTInfo tsa [0] GeneralName directoryName
    attrs_head: bytes  # the length octets of the signed attributes (always the same)

    @classmethod
    def for_chain(cls, chain: Sequence[x509.Certificate]) -> TokenTemplate:
        """The template of the TSA certificate ``chain[0]``, embedding all of ``chain``."""
        ders = [c.public_bytes(serialization.Encoding.DER) for c in chain]
        issuer_der, subject_der = _name_fields(ders[0])
        serial = der.integer(chain[0].serial_number)
        ess_cert_id_v2 = der.seq(  # hashAlgorithm omitted: DEFAULT sha256 (RFC 5035)
            der.octets(hashlib.sha256(ders[0]).digest()),
            der.seq(der.seq(der.tlv(0xA4, issuer_der)), serial),  # IssuerSerial
        )
        attrs = [
            der.seq(der.oid(oids.CONTENT_TYPE), der.tlv(0x31, der.oid(oids.TST_INFO))),
            der.seq(der.oid(oids.MESSAGE_DIGEST), der.tlv(0x31, der.octets(b"\x00" * 32))),
            der.seq(der.oid(oids.SIGNING_CERT_V2), der.tlv(0x31, der.seq(der.seq(ess_cert_id_v2)))),
        ]
        md_attr = attrs[1]
        ordered = sorted(attrs)  # DER SET OF order
        # The message-digest attribute's length differs from the others', so its
        # place in the order is fixed whatever the digest is.
        if len({len(a) for a in attrs}) != 3:
            raise ValueError("signed attributes of equal length: no fixed DER order")
        i = ordered.index(md_attr)
        before, after = b"".join(ordered[:i]) + md_attr[:-32], b"".join(ordered[i + 1 :])
        return cls(
            attrs_before=before,
            attrs_after=after,
            signer_head=der.integer(1) + der.seq(issuer_der, serial) + _SHA256_ALG,
            certs_field=der.tlv(0xA0, b"".join(sorted(ders))),
            tsa_name=der.tlv(0xA0, der.tlv(0xA4, subject_der)),
            attrs_head=der.length(len(before) + 32 + len(after)),
        )

    @functools.cached_property
    def signer_info_head(self) -> tuple[bytes, int]:
        """(the SignerInfo's content up to the signed attributes' content, their size)."""
        size = len(self.attrs_before) + 32 + len(self.attrs_after)
        return self.signer_head + b"\xa0" + self.attrs_head, size

    # -- writing --

    def tst_info(
        self,
        policy: bytes,
        imprint: bytes,
        serial: int,
        gen_time: bytes,
        accuracy: bytes,
        nonce: bytes | None,
    ) -> bytes:
        """The TSTInfo DER from its encoded fields (``policy`` an OID TLV), version 1."""
        return self.tst_info_of(
            _TST_VERSION + policy, imprint, der.integer(serial), gen_time, accuracy, nonce
        )

    def tst_info_of(
        self,
        head: bytes,
        imprint: bytes,
        serial: bytes,
        gen_time: bytes,
        accuracy: bytes,
        nonce: bytes | None,
    ) -> bytes:
        """The TSTInfo DER from its encoded TLVs (``head``: the version and policy TLVs)."""
        return der.tlv(
            0x30, head + imprint + serial + gen_time + accuracy + (nonce or b"") + self.tsa_name
        )

    def signed_attrs(self, tst_info: bytes) -> bytes:
        """The content of the signed-attributes SET for ``tst_info``."""
        return self.attrs_before + hashlib.sha256(tst_info).digest() + self.attrs_after

    def signed_bytes(self, attrs: bytes) -> bytes:
        """What the signature covers: the attributes with the SET OF tag (RFC 5652 §5.4)."""
        return b"\x31" + self.attrs_head + attrs

    def token(self, tst_info: bytes, attrs: bytes, signature: bytes, with_certs: bool) -> bytes:
        """The whole TimeStampToken (a DER ContentInfo)."""
        signer_info = der.tlv(
            0x30,
            self.signer_head + b"\xa0" + self.attrs_head + attrs + _SIG_ALG + der.octets(signature),
        )
        encap = der.seq(_ENCAP_HEAD, der.tlv(0xA0, der.octets(tst_info)))
        signed_data = der.tlv(
            0x30,
            _SD_HEAD
            + encap
            + (self.certs_field if with_certs else b"")
            + der.tlv(0x31, signer_info),
        )
        return der.seq(_CI_HEAD, der.tlv(0xA0, signed_data))

    # -- reading --

    def match(self, token: bytes) -> tuple[bytes, bytes, bytes] | None:
        """(TSTInfo, signed attributes, signature) of a token in exactly this template's
        layout, or None. Nothing is verified yet but the layout. Raises DerError."""
        layout = read_token(token)
        if layout is None:
            return None
        tst, signature = layout.tst_info, layout.signature
        attrs = self.signed_attrs(tst)
        if self.token(tst, attrs, signature, bool(layout.certs_field)) != token:
            return None
        return tst, attrs, signature

    def read_tst_info(self, tst: bytes, sha256: bytes) -> TstFields | None:
        """The fields of a TSTInfo in the TSA's layout over the SHA-256 digest ``sha256``
        (version 1, that imprint, genTime, a minimal accuracy, this template's tsa
        name), or None. Raises DerError."""
        fields = read_tst(tst, 0, len(tst))
        if fields is None or fields.end != len(tst):
            return None
        version, policy, imprint, serial, gen, accuracy, nonce, tsa = fields[:8]

        def whole(k: tuple[int, int, int, int]) -> bytes:
            return tst[k[1] : k[3]]

        if whole(version) != _TST_VERSION:
            return None
        if whole(imprint) != _SHA256_IMPRINT_HEAD + sha256:
            return None
        if whole(tsa) != self.tsa_name:
            return None
        if not _minimal_accuracy(tst, accuracy[2], accuracy[3]):
            return None
        nonce_value = None
        if nonce is not None:
            nonce_value = der.uint(tst, nonce[2], nonce[3])
        gen_time = _gen_time(tst[gen[2] : gen[3]])
        if gen_time is None:
            return None
        return TstFields(
            gen_time=gen_time,
            serial=der.uint(tst, serial[2], serial[3]),
            policy=der.dotted(tst[policy[2] : policy[3]]),
            nonce=nonce_value,
        )


def _minimal_accuracy(tst: bytes, start: int, end: int) -> bool:
    """Accuracy ::= SEQUENCE { seconds INTEGER OPTIONAL, millis [0] 1..999 OPTIONAL },
    each present value non-zero (what the TSA writes; no micros)."""
    acc = der.children(tst, start, end)
    if [a[0] for a in acc] not in ([], [0x02], [0x80], [0x02, 0x80]):
        return False
    for a in acc:
        v = der.uint(tst, a[2], a[3])
        if v == 0 or (a[0] == 0x80 and v > 999):
            return False
    return True


def _gen_time(text: bytes) -> datetime | None:
    m = _GEN_TIME.fullmatch(text)
    if m is None:
        return None
    y, mo, d, h, mi, sec = (int(x) for x in m.groups()[:6])
    frac = m.group(7) or b""
    micros = int(frac.ljust(6, b"0")) if frac else 0
    return datetime(y, mo, d, h, mi, sec, micros, tzinfo=UTC)


# -- reading a token's layout (the template's and compact.py's one walk) --

#: A TLV as :func:`der.children` gives it: (tag, TLV start, content start, content end).
Tlv = tuple[int, int, int, int]
_TST_TAGS = (0x02, 0x06, 0x30, 0x02, 0x18, 0x30)  # version .. accuracy of a TSTInfo


class TokenLayout(NamedTuple):
    """The parts of a token laid out as :meth:`TokenTemplate.token` writes one."""

    tst_info: bytes  # the encapsulated TSTInfo DER
    signer_head: bytes  # the SignerInfo's version, sid and digestAlgorithm TLVs
    attrs: bytes  # the content of the signed attributes
    signature: bytes
    certs_field: bytes  # the [0] certificates TLV, b"" when absent


class TstLayout(NamedTuple):
    """The TLVs of a TSTInfo in the template's field order (RFC 3161 §2.4.2)."""

    version: Tlv
    policy: Tlv
    imprint: Tlv
    serial: Tlv
    gen_time: Tlv
    accuracy: Tlv
    nonce: Tlv | None
    tsa: Tlv
    end: int  # where the TSTInfo ends in the buffer read


def read_token(token: bytes, known: TokenTemplate | None = None) -> TokenLayout | None:
    """The parts of ``token`` if its shape is the template layout's, else None.

    Only the shape is read: ContentInfo > [0] > SignedData (version,
    digestAlgorithms, encapContentInfo, [certificates], one SignerInfo of six
    fields, the signed attributes fourth). The TLVs every template writes
    alike (the content types, the SignedData head, the signature algorithm)
    are compared, not read; with a ``known`` template, so are the SignerInfo's
    fields up to the signature (the layout's ``attrs`` then are the token's,
    unchecked). Whoever uses the parts rebuilds the token from them and
    compares. Raises DerError.
    """
    n = len(token)
    t, s, e = der.read(token, 0, n)  # ContentInfo
    if t != 0x30 or e != n or not token.startswith(_CI_HEAD, s):
        return None
    t, s, e = der.read(token, s + len(_CI_HEAD), n)  # [0] content
    if t != 0xA0 or e != n:
        return None
    t, s, e = der.read(token, s, n)  # SignedData
    if t != 0x30 or e != n or not token.startswith(_SD_HEAD, s):
        return None
    t, s, end = der.read(token, s + len(_SD_HEAD), n)  # encapContentInfo
    if t != 0x30 or not token.startswith(_ENCAP_HEAD, s):
        return None
    t, s, e = der.read(token, s + len(_ENCAP_HEAD), end)  # [0] eContent
    if t != 0xA0 or e != end:
        return None
    t, tst_start, tst_end = der.read(token, s, end)  # OCTET STRING: the TSTInfo
    if t != 0x04 or tst_end != end:
        return None
    t, s, e = der.read(token, end, n)
    certs_field = b""
    if t != 0x31:  # [0] certificates (whatever the tag: the rebuilt token compares it)
        certs_field = token[end:e]
        t, s, e = der.read(token, e, n)
    if t != 0x31 or e != n:  # signerInfos
        return None
    t, s, e = der.read(token, s, n)  # the one SignerInfo
    if t != 0x30 or e != n:
        return None
    if known is not None:
        return _read_known(token, known, s, tst_start, tst_end, certs_field)
    si = der.children(token, s, e)
    if len(si) != 6 or si[3][0] != 0xA0 or token[si[4][1] : si[4][3]] != _SIG_ALG:
        return None
    return TokenLayout(
        token[tst_start:tst_end],
        token[si[0][1] : si[3][1]],  # signer_head
        token[si[3][2] : si[3][3]],  # attrs
        token[si[5][2] : si[5][3]],  # signature
        certs_field,
    )


def read_tst(buf: bytes, pos: int, end: int) -> TstLayout | None:
    """The fields of the TSTInfo at ``buf[pos:]`` (within ``end``) if they are the
    template's (version, policy, imprint, serial, genTime, accuracy, [nonce], tsa,
    with their tags), else None. Raises DerError."""
    t, s, e = der.read(buf, pos, end)
    if t != 0x30:
        return None
    kids = der.children(buf, s, e)
    if len(kids) not in (7, 8):
        return None
    version, policy, imprint, serial, gen_time, accuracy = kids[:6]
    tags = (version[0], policy[0], imprint[0], serial[0], gen_time[0], accuracy[0])
    nonce = kids[6] if len(kids) == 8 else None
    if tags != _TST_TAGS or kids[-1][0] != 0xA0 or (nonce is not None and nonce[0] != 0x02):
        return None
    return TstLayout(version, policy, imprint, serial, gen_time, accuracy, nonce, kids[-1], e)


def split_attrs(attrs: bytes) -> tuple[bytes, bytes] | None:
    """The signed attributes before and after the message digest's 32-byte value
    (a template's ``attrs_before`` and ``attrs_after``), or None. Raises DerError."""
    for _, a_start, a_s, a_e in der.children(attrs, 0, len(attrs)):
        attr = der.children(attrs, a_s, a_e)
        if attrs[attr[0][1] : attr[0][3]] == _MESSAGE_DIGEST_OID:
            if a_e - 32 < a_start:
                return None
            return attrs[: a_e - 32], attrs[a_e:]
    return None


def _read_known(
    token: bytes, known: TokenTemplate, si: int, tst_start: int, tst_end: int, certs: bytes
) -> TokenLayout | None:
    """:func:`read_token`'s end for a known template: the SignerInfo's fixed
    fields compared, its signature read."""
    head, attrs_size = known.signer_info_head
    attrs_start = si + len(head)
    attrs_end = attrs_start + attrs_size
    if not token.startswith(head, si) or not token.startswith(_SIG_ALG, attrs_end):
        return None
    t, s, e = der.read(token, attrs_end + len(_SIG_ALG), len(token))
    if t != 0x04 or e != len(token):
        return None
    return TokenLayout(
        token[tst_start:tst_end], known.signer_head, token[attrs_start:attrs_end], token[s:e], certs
    )
