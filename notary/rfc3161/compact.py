"""A token in the template layout split into its fixed and its variable parts.

Every token certmail's TSA issues under one certificate chain, policy and
accuracy has the same bytes but for five fields (notary.rfc3161.template): the
imprint's digest, the serial number, genTime, the nonce and the signature. The
log keeps each token's :class:`TokenParts` and its :class:`FixedParts` once
(notary.storage.sql.tokens), and rebuilds the token from them.

:func:`split` reads the fixed parts from the token itself (no TSA
configuration is needed to store or to read a token) and returns None unless
:func:`rebuild` gives back exactly the token's bytes; a token in any other
layout is stored whole. Exact bytes are the point: a proof bundle carries the
token as it was issued.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from notary.rfc3161 import der, oids
from notary.rfc3161.template import TokenTemplate

__all__ = ["FixedParts", "TokenParts", "rebuild", "split"]

_MESSAGE_DIGEST = der.oid(oids.MESSAGE_DIGEST)
_DIGEST_SIZE = 32  # the message-digest attribute of the template layout: SHA-256
#: DER ECDSA signature sizes, the likeliest first (P-256: 70 to 72 octets).
_SIGNATURE_SIZES = (71, 72, 70, *range(69, 7, -1), *range(73, 128))
_KID_TAGS = (0x02, 0x06, 0x30, 0x02, 0x18, 0x30)  # version .. accuracy of a TSTInfo


@dataclass(frozen=True)
class FixedParts:
    """What tokens of one TSA chain, policy and accuracy share."""

    template: TokenTemplate
    tst_head: bytes  # the TSTInfo's version and policy TLVs
    imprint_alg: bytes  # the MessageImprint's AlgorithmIdentifier TLV
    accuracy: bytes  # the TSTInfo's accuracy TLV

    def to_bytes(self) -> bytes:
        """The fixed parts as stored: each field with a two-byte length."""
        t = self.template
        fields = (
            t.attrs_before,
            t.attrs_after,
            t.signer_head,
            t.certs_field,
            t.tsa_name,
            self.tst_head,
            self.imprint_alg,
            self.accuracy,
        )
        return b"".join(len(f).to_bytes(2, "big") + f for f in fields)

    def parts_of(self, token: bytes) -> TokenParts | None:
        """The variable parts of ``token`` if it is exactly this template's, else None.

        The fast way for a template already known: find the TSTInfo by its
        fixed head and the signature at the end, and require :func:`rebuild`
        to give back ``token``. Never raises.
        """
        at = token.find(self.tst_head)
        for head in (2, 3):  # a TSTInfo's tag and length octets
            if at < head:
                return None
            try:
                _, _, parts = _split_tst(token, at - head, len(token))
            except (der.DerError, IndexError, ValueError):
                continue
            for size in _SIGNATURE_SIZES:
                signature = token[-size:]
                if token[-size - 2 : -size] != bytes((0x04, size)):
                    continue
                parts = parts._replace(signature=signature)
                if rebuild(self, parts) == token:
                    return parts
        return None

    @classmethod
    def from_bytes(cls, data: bytes) -> FixedParts:
        """The fixed parts :meth:`to_bytes` wrote (ValueError if damaged)."""
        fields, pos = [], 0
        while pos < len(data):
            n = int.from_bytes(data[pos : pos + 2], "big")
            fields.append(data[pos + 2 : pos + 2 + n])
            pos += 2 + n
        if len(fields) != 8 or pos != len(data):
            raise ValueError("damaged token template")
        before, after, signer_head, certs, tsa_name, head, alg, acc = fields
        tpl = TokenTemplate(
            attrs_before=before,
            attrs_after=after,
            signer_head=signer_head,
            certs_field=certs,
            tsa_name=tsa_name,
            attrs_head=der.length(len(before) + _DIGEST_SIZE + len(after)),
        )
        return cls(tpl, head, alg, acc)


class TokenParts(NamedTuple):
    """The contents of a token's five variable fields (nonce None when absent)."""

    digest: bytes
    serial: bytes
    gen_time: bytes
    nonce: bytes | None
    signature: bytes


def rebuild(fixed: FixedParts, parts: TokenParts) -> bytes:
    """The token whose fixed and variable parts these are."""
    imprint = der.seq(fixed.imprint_alg, der.octets(parts.digest))
    tst_info = der.tlv(
        0x30,
        fixed.tst_head
        + imprint
        + der.tlv(0x02, parts.serial)
        + der.tlv(0x18, parts.gen_time)
        + fixed.accuracy
        + (b"" if parts.nonce is None else der.tlv(0x02, parts.nonce))
        + fixed.template.tsa_name,
    )
    tpl = fixed.template
    return tpl.token(tst_info, tpl.signed_attrs(tst_info), parts.signature, with_certs=True)


def split(token: bytes, *, checked: bool = True) -> tuple[FixedParts, TokenParts] | None:
    """The fixed and variable parts of a template-layout token, or None (any other token).

    Never raises: what this cannot read is simply not in the layout. Unless
    ``checked`` is off (the caller rebuilds the token itself and compares),
    the parts are returned only if :func:`rebuild` gives back ``token`` exactly.
    """
    try:
        found = _split(token)
    except (der.DerError, IndexError, ValueError):
        return None
    if found is None or (checked and rebuild(*found) != token):
        return None
    return found


def _split(token: bytes) -> tuple[FixedParts, TokenParts] | None:
    # ContentInfo > [0] > SignedData > (version, digestAlgorithms, encap, [certs], signerInfos)
    _, s, e = der.read(token, 0, len(token))
    kids = der.children(token, s, e)
    _, s, e = der.read(token, kids[1][2], kids[1][3])
    sd = der.children(token, s, e)
    if len(sd) not in (4, 5):
        return None
    certs = token[sd[3][1] : sd[3][3]] if len(sd) == 5 else b""
    encap = der.children(token, sd[2][2], sd[2][3])
    _, os_, oe = der.read(token, encap[1][2], encap[1][3])
    si = der.children(token, *der.children(token, sd[-1][2], sd[-1][3])[0][2:])
    if len(si) != 6 or si[3][0] != 0xA0:
        return None
    found = _split_attrs(token, si[3][2], si[3][3])
    if found is None:
        return None
    tsa_name, tst_fixed, parts = _split_tst(token, os_, oe)
    template = TokenTemplate(
        attrs_before=found[0],
        attrs_after=found[1],
        signer_head=token[si[0][1] : si[3][1]],
        certs_field=certs,
        tsa_name=tsa_name,
        attrs_head=der.length(si[3][3] - si[3][2]),
    )
    signature = token[si[5][2] : si[5][3]]
    return FixedParts(template, *tst_fixed), parts._replace(signature=signature)


def _split_attrs(buf: bytes, start: int, end: int) -> tuple[bytes, bytes] | None:
    """The signed attributes before and after the message digest's 32-byte value."""
    for _, a_start, a_s, a_e in der.children(buf, start, end):
        attr = der.children(buf, a_s, a_e)
        if buf[attr[0][1] : attr[0][3]] == _MESSAGE_DIGEST:
            if a_e - _DIGEST_SIZE < a_start:
                return None
            return buf[start : a_e - _DIGEST_SIZE], buf[a_e:end]
    return None


def _split_tst(
    buf: bytes, start: int, end: int
) -> tuple[bytes, tuple[bytes, bytes, bytes], TokenParts]:
    """(tsa name, (head, imprint algorithm, accuracy), variable parts) of a TSTInfo."""
    _, s, e = der.read(buf, start, end)
    kids = der.children(buf, s, e)
    if len(kids) not in (7, 8) or tuple(k[0] for k in kids[:6]) != _KID_TAGS:
        raise ValueError("not the template's TSTInfo")
    version, policy, imprint, serial, gen, accuracy = kids[:6]
    nonce = kids[6] if len(kids) == 8 else None
    if kids[-1][0] != 0xA0 or (nonce is not None and nonce[0] != 0x02):
        raise ValueError("not the template's TSTInfo")
    alg, digest = der.children(buf, imprint[2], imprint[3])
    parts = TokenParts(
        digest=buf[digest[2] : digest[3]],
        serial=buf[serial[2] : serial[3]],
        gen_time=buf[gen[2] : gen[3]],
        nonce=None if nonce is None else buf[nonce[2] : nonce[3]],
        signature=b"",
    )
    fixed = (
        buf[version[1] : policy[3]],
        buf[alg[1] : alg[3]],
        buf[accuracy[1] : accuracy[3]],
    )
    return buf[kids[-1][1] : kids[-1][3]], fixed, parts
