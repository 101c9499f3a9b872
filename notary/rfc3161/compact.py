"""A token in the template layout split into its fixed and its variable parts.

Every token certmail's TSA issues under one certificate chain, policy and
accuracy has the same bytes but for five fields (:mod:`notary.rfc3161.template`): the
imprint's digest, the serial number, genTime, the nonce and the signature. The
log keeps each token's :class:`TokenParts` and its :class:`FixedParts` once
(notary.storage.sql.tokens), and rebuilds the token from them.

:func:`split` reads the fixed parts from the token itself (no TSA
configuration is needed to store or to read a token) and returns None unless
:func:`rebuild` gives back exactly the token's bytes; a token in any other
layout is stored whole. Exact bytes are the point: a proof bundle carries the
token as it was issued.

There is no walk of the token here: the template module reads a token's
layout (:func:`~notary.rfc3161.template.read_token`, :func:`~notary.rfc3161.template.read_tst`,
:func:`~notary.rfc3161.template.split_attrs`, the same readers its own check
uses) and writes it (:meth:`~notary.rfc3161.template.TokenTemplate.token`, the
TSA's writer).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from notary.rfc3161 import der
from notary.rfc3161.template import TokenTemplate, read_token, read_tst, split_attrs

__all__ = ["FixedParts", "TokenParts", "rebuild", "split"]

_DIGEST_SIZE = 32  # the message-digest attribute of the template layout: SHA-256


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

        For a template already known: the token's layout and TSTInfo are read
        (nothing of the template is derived from the token) and :func:`rebuild`
        must give back ``token``. Never raises.
        """
        try:
            layout = read_token(token, self.template)
            found = None if layout is None else _tst_parts(layout.tst_info, layout.signature)
        except (der.DerError, IndexError, ValueError):
            return None
        if found is None:
            return None
        parts = found[2]
        return parts if rebuild(self, parts) == token else None

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
    tpl = fixed.template
    tst_info = tpl.tst_info_of(
        fixed.tst_head,
        der.seq(fixed.imprint_alg, der.octets(parts.digest)),
        der.tlv(0x02, parts.serial),
        der.tlv(0x18, parts.gen_time),
        fixed.accuracy,
        None if parts.nonce is None else der.tlv(0x02, parts.nonce),
    )
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
    layout = read_token(token)
    if layout is None:
        return None
    attrs = split_attrs(layout.attrs)
    found = _tst_parts(layout.tst_info, layout.signature)
    if attrs is None or found is None:
        return None
    tsa_name, tst_fixed, parts = found
    template = TokenTemplate(
        attrs_before=attrs[0],
        attrs_after=attrs[1],
        signer_head=layout.signer_head,
        certs_field=layout.certs_field,
        tsa_name=tsa_name,
        attrs_head=der.length(len(layout.attrs)),
    )
    return FixedParts(template, *tst_fixed), parts


def _tst_parts(
    tst: bytes, signature: bytes
) -> tuple[bytes, tuple[bytes, bytes, bytes], TokenParts] | None:
    """(tsa name, (head, imprint algorithm, accuracy), variable parts) of a TSTInfo
    signed with ``signature``."""
    f = read_tst(tst, 0, len(tst))
    if f is None:
        return None
    alg, digest = der.children(tst, f.imprint[2], f.imprint[3])
    parts = TokenParts(
        tst[digest[2] : digest[3]],  # digest
        tst[f.serial[2] : f.serial[3]],
        tst[f.gen_time[2] : f.gen_time[3]],
        None if f.nonce is None else tst[f.nonce[2] : f.nonce[3]],
        signature,
    )
    fixed = (
        tst[f.version[1] : f.policy[3]],
        tst[alg[1] : alg[3]],
        tst[f.accuracy[1] : f.accuracy[3]],
    )
    return tst[f.tsa[1] : f.tsa[3]], fixed, parts
