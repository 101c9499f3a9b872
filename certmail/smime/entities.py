"""The S/MIME MIME entities (RFC 8551 §3), built and parsed, exact bytes.

- ``multipart/signed; protocol="application/pkcs7-signature"`` (§3.5.3): part 1
  is signed byte for byte, part 2 the detached CMS SignedData (RFC 5652 §5);
- ``application/pkcs7-mime`` (§3.2) with ``smime-type`` ``enveloped-data``
  (§3.3), ``authEnveloped-data`` (§3.4, RFC 5083), ``signed-data`` (§3.5.2,
  opaque signing), ``compressed-data`` and ``certs-only``. A missing
  ``smime-type`` is read from the CMS ContentInfo's content type.

The legacy ``application/x-pkcs7-*`` types (RFC 2311) are read as well.
"""

from __future__ import annotations

from collections.abc import Sequence

from keys.errors import MalformedError

from ..mime import Entity, decode_body, parse_entity, split_multipart

__all__ = [
    "MIME_TYPE",
    "SIGNATURE_TYPE",
    "detached_parts",
    "enveloped_entity",
    "is_smime",
    "p7_der",
    "signed_entity_head",
    "signed_entity_tail",
    "smime_kind",
]

MIME_TYPE = "application/pkcs7-mime"
SIGNATURE_TYPE = "application/pkcs7-signature"
_MIME_TYPES = (MIME_TYPE, "application/x-pkcs7-mime")
_SIGNATURE_TYPES = (SIGNATURE_TYPE, "application/x-pkcs7-signature")
MAX_CMS = 1 << 31  # bytes of DER one S/MIME part may decode to

# CMS content types (RFC 5652 §§4-8, RFC 5083, RFC 3274) -> smime-type.
_CONTENT_TYPES = {
    "1.2.840.113549.1.7.3": "enveloped-data",
    "1.2.840.113549.1.9.16.1.23": "authenveloped-data",
    "1.2.840.113549.1.7.2": "signed-data",
    "1.2.840.113549.1.9.16.1.9": "compressed-data",
}


def smime_kind(entity: Entity) -> str | None:
    """``"multipart-signed"``, a lower-case smime-type (``"enveloped-data"``,
    ``"authenveloped-data"``, ``"signed-data"``, ...) or None: not S/MIME."""
    ct = entity.content_type
    if ct == "multipart/signed":
        proto = (entity.param("protocol") or "").lower()
        return "multipart-signed" if proto in _SIGNATURE_TYPES else None
    if ct not in _MIME_TYPES:
        return None
    declared = (entity.param("smime-type") or "").lower()
    if declared:
        return declared
    return content_type_of(p7_der(entity))


def is_smime(entity: Entity) -> bool:
    """Is the top-level entity an S/MIME one (RFC 8551 §3)?"""
    try:
        return smime_kind(entity) is not None
    except MalformedError:
        return True  # declared application/pkcs7-mime: its own error comes when opened


def content_type_of(der: bytes) -> str:
    """The smime-type a DER ContentInfo holds; MalformedError if it is no CMS object."""
    from asn1crypto import cms

    try:
        oid = str(cms.ContentInfo.load(der)["content_type"].dotted)
    except (ValueError, TypeError, KeyError):
        raise MalformedError("the S/MIME part is not a CMS object (RFC 5652)") from None
    return _CONTENT_TYPES.get(oid, oid)


def p7_der(entity: Entity) -> bytes:
    """The DER of an ``application/pkcs7-mime`` or ``-signature`` entity (base64 decoded)."""
    der = decode_body(entity)
    if not der or der[:1] != b"\x30":
        raise MalformedError("the S/MIME part holds no DER-encoded CMS object")
    if len(der) > MAX_CMS:
        raise MalformedError("the S/MIME part is too large")
    return der


def detached_parts(entity: Entity) -> tuple[bytes, bytes]:
    """Part 1 (exact bytes, as signed) and the DER signature of a §3.5.3 entity."""
    parts = split_multipart(entity)
    if len(parts) != 2:
        raise MalformedError("multipart/signed must have exactly two parts")
    sig = parse_entity(parts[1])
    if sig.content_type not in _SIGNATURE_TYPES:
        raise MalformedError("the second part of multipart/signed is not an S/MIME signature")
    return parts[0], p7_der(sig)


def signed_entity_head(boundary: str, fields: Sequence[str] = ()) -> bytes:
    """A §3.5.3 ``multipart/signed`` entity up to where part 1 begins."""
    ct = (
        f'Content-Type: multipart/signed; protocol="{SIGNATURE_TYPE}";\r\n'
        f' micalg=sha-256; boundary="{boundary}"'
    )
    head = ("\r\n".join([*fields, ct]) + "\r\n\r\n").encode("ascii")
    return head + f"This is an S/MIME signed message (RFC 8551).\r\n--{boundary}\r\n".encode()


def signed_entity_tail(signature: bytes, boundary: str) -> bytes:
    """The signature part and the close, after part 1 (which ends in CRLF)."""
    from ..compose import b64_lines  # a writer's import: reading S/MIME needs none of it

    return (
        (
            f"\r\n--{boundary}\r\n"
            f'Content-Type: {SIGNATURE_TYPE}; name="smime.p7s"\r\n'
            "Content-Transfer-Encoding: base64\r\n"
            'Content-Disposition: attachment; filename="smime.p7s"\r\n'
            "Content-Description: S/MIME Cryptographic Signature\r\n\r\n"
        ).encode()
        + b64_lines(signature)
        + f"\r\n--{boundary}--\r\n".encode()
    )


def enveloped_entity(der: bytes, smime_type: str, fields: Sequence[str] = ()) -> bytes:
    """An §3.3/§3.5.2 ``application/pkcs7-mime`` entity around ``der``."""
    from ..compose import b64_lines

    ct = f'Content-Type: {MIME_TYPE}; smime-type={smime_type};\r\n name="smime.p7m"'
    lines = [
        *fields,
        ct,
        "Content-Transfer-Encoding: base64",
        'Content-Disposition: attachment; filename="smime.p7m"',
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("ascii") + b64_lines(der)
