"""Unseal a message: decrypt and verify RFC 3156 PGP/MIME, then read its parts.

RFC 3156 §4 (``multipart/encrypted``) and §5 (``multipart/signed``), with the
RFC 9788 protected header fields of the payload. The sender is checked strictly:
the protected From must hold exactly one mailbox (RFC 5322 §3.4) and that
address must be one of the signing key's user-ID addresses
(:func:`check_sender`), the rule of the bundle verifier. :func:`check_manifest`
compares the certmail manifest (docs/send-open.md) with what was opened.
"""

from __future__ import annotations

import codecs
import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from email.header import Header
from email.message import Message
from pathlib import Path
from typing import TYPE_CHECKING, Any

from keys.errors import MalformedError, VerificationError
from keys.gpg import Keyring, SignatureInfo

from .compose import MANIFEST_TYPE, canonical_text
from .mime import (
    Entity,
    canonicalize,
    decode_body,
    decode_field,
    header_fields,
    parse_entity,
    same_address,
    single_mailbox,
    split_multipart,
)
from .rfc3156 import encrypted_payload, signed_parts
from .smime.entities import is_smime

if TYPE_CHECKING:
    from .smime.opening import SmimeContext

MAX_DEPTH = 20  # MIME nesting
# MIME entities (multipart containers and leaves) one message may hold. With
# the nesting bound this also bounds the walk's work: every entity is parsed
# once, and its bytes are copied at most MAX_DEPTH times.
MAX_PARTS = 1000


@dataclass(frozen=True)
class Part:
    """A leaf of the opened message: decoded content and its declared names."""

    content_type: str
    filename: str | None  # as declared (RFC 2231 / 2047 decoded), untrusted
    data: bytes
    is_attachment: bool


@dataclass
class Unsealed:
    """What :func:`unseal` found: structure, signature, protected headers, parts."""

    encrypted: bool
    signature: SignatureInfo | None
    header_protection: str | None  # RFC 9788 hp value of the payload, if any
    fields: dict[str, str]  # protected (or, failing that, outer) header fields
    outer_fields: dict[str, str]
    body: bytes | None
    parts: list[Part]
    manifest: dict[str, Any] | None
    sender: str | None = None  # the addr-spec of the (protected) From, strictly parsed


def unseal(
    keyring: Keyring,
    raw: bytes,
    workdir: Path,
    *,
    allow_unsigned: bool = False,
    smime: SmimeContext | None = None,
) -> Unsealed:
    """Decrypt and verify an RFC 3156 message; parse its payload.

    Raises :class:`VerificationError` for a bad, forged or (unless
    ``allow_unsigned``) missing signature, or a signature by a key that is not
    the From address's, and :class:`MalformedError` for anything that is not
    well-formed MIME / OpenPGP. S/MIME (RFC 8551) is opened with ``smime``
    (:mod:`certmail.smime.opening`).
    """
    if not raw.strip():
        raise MalformedError("the message file is empty")
    workdir.mkdir(parents=True, exist_ok=True)
    top = parse_entity(canonicalize(raw))
    if is_smime(top):  # RFC 8551: certmail/smime/
        from .smime.opening import open_layers

        if smime is None:
            raise MalformedError("S/MIME is not read here", hint="certmail open FILE")
        entity, encrypted, signature = open_layers(smime, top, workdir)
    else:
        entity, encrypted, signature = _open_layers(keyring, top, workdir)
    if signature is None and not allow_unsigned:
        raise VerificationError(
            "the message is not signed (the signature may have been stripped)",
            hint="certmail open --allow-unsigned FILE to read it anyway",
        )
    hp = entity.param("hp")
    protected = bool(hp or "From" in entity.headers)
    headers = entity.headers if protected else top.headers
    if signature is not None:
        check_sender(keyring, signature, headers.get("From"))
    parts: list[Part] = []
    _walk(entity, parts, [MAX_PARTS])
    body, rest, manifest = _sort_parts(parts)
    return Unsealed(
        encrypted,
        signature,
        hp,
        header_fields(headers),
        header_fields(top.headers),
        body,
        rest,
        manifest,
        single_mailbox(headers.get("From")),
    )


def _open_layers(
    keyring: Keyring, top: Entity, workdir: Path
) -> tuple[Entity, bool, SignatureInfo | None]:
    """Decrypt (RFC 3156 §4) and verify (§5): the payload entity, encrypted?, signature."""
    entity = top
    encrypted = False
    signature: SignatureInfo | None = None
    if top.content_type == "multipart/encrypted":
        encrypted = True
        ct = workdir / "encrypted.asc"
        ct.write_bytes(encrypted_payload(top))
        pt = workdir / "decrypted.mime"
        signature = keyring.decrypt_file(ct, pt)
        entity = parse_entity(canonicalize(pt.read_bytes()))
    elif top.content_type == "application/pgp-encrypted" or top.body.lstrip().startswith(
        b"-----BEGIN PGP MESSAGE"
    ):
        raise MalformedError("inline PGP is not supported; certmail reads PGP/MIME (RFC 3156)")
    if entity.content_type == "multipart/signed":
        sp = signed_parts(entity)
        signature = keyring.verify_detached(sp.signed, sp.signature)
        entity = parse_entity(sp.signed)
    return entity, encrypted, signature


def check_sender(
    keyring: Keyring, signature: SignatureInfo, from_field: str | Header | None
) -> None:
    """Raise VerificationError unless the From field names the signer.

    The field must hold exactly one mailbox (strictly parsed, display names and
    comments ignored: :func:`certmail.mime.single_mailbox`), and its addr-spec
    must equal, compared whole and case-insensitively
    (:func:`certmail.mime.same_address`, as the bundle verifier does), the
    signature's user-ID address or another user-ID address of the signing key.
    """
    signer = signature.signer_email or signature.primary_fingerprint
    shown = decode_field(str(from_field)) if from_field is not None else "(no From field)"
    sender = single_mailbox(from_field)
    if sender is None:
        raise VerificationError(
            f"signed by {signer}, but the From field is not exactly one address: {shown}"
        )
    if not any(same_address(sender, a) for a in _signer_addresses(keyring, signature)):
        raise VerificationError(f"signed by {signer}, but the message says it is from {shown}")


def _signer_addresses(keyring: Keyring, signature: SignatureInfo) -> Iterator[str]:
    """The signature's user-ID address, then (looked up only if needed) the key's others."""
    if signature.signer_email:
        yield signature.signer_email
    yield from keyring.key_for(signature.primary_fingerprint).emails


def _sort_parts(
    parts: list[Part],
) -> tuple[bytes | None, list[Part], dict[str, Any] | None]:
    """The first text body, the other parts, the first manifest (a JSON object)."""
    manifest: dict[str, Any] | None = None
    body: bytes | None = None
    rest: list[Part] = []
    for p in parts:
        if p.content_type == MANIFEST_TYPE and manifest is None:
            try:
                obj = json.loads(p.data)
            except ValueError:
                raise MalformedError("the manifest part is not JSON") from None
            if not isinstance(obj, dict):
                raise MalformedError("the manifest part is not a JSON object")
            manifest = obj
        elif body is None and p.content_type == "text/plain" and not p.is_attachment:
            body = p.data
        else:
            rest.append(p)
    return body, rest, manifest


def _walk(entity: Entity, out: list[Part], budget: list[int], depth: int = 0) -> None:
    """Collect the leaves of ``entity``; ``budget[0]`` counts the entities still allowed.

    Raises :class:`MalformedError` past :data:`MAX_DEPTH` levels or
    :data:`MAX_PARTS` entities.
    """
    if depth > MAX_DEPTH:
        raise MalformedError("MIME nesting too deep")
    budget[0] -= 1
    if budget[0] < 0:
        raise MalformedError(f"too many parts (more than {MAX_PARTS} MIME entities)")
    ct = entity.content_type
    if ct.startswith("multipart/"):
        for raw in split_multipart(entity):
            _walk(parse_entity(raw), out, budget, depth + 1)
        return
    try:
        filename = entity.headers.get_filename()
    except (ValueError, LookupError, UnicodeError):
        filename = None
    raw_filename = _raw_filename(entity.headers)
    if filename is None and raw_filename is not None:
        filename = raw_filename
    disp = str(entity.headers.get("Content-Disposition") or "").split(";")[0].strip().lower()
    if filename is not None:
        filename = str(filename)
    attached = disp == "attachment" or filename is not None
    out.append(Part(ct, filename, decode_body(entity), attached))


def _raw_filename(headers: Message) -> str | None:
    """A filename parameter even when its charset is wrong (non-UTF-8 bytes kept as U+FFFD)."""
    for name in ("filename", "name"):
        for header in ("Content-Disposition", "Content-Type"):
            v = headers.get_param(name, header=header)
            if v is None:
                continue
            if isinstance(v, tuple):
                charset, _, text = v
                raw = text.encode("latin-1", "replace") if isinstance(text, str) else bytes(text)
                return (
                    raw.decode(charset or "utf-8", "replace")
                    if _known(charset)
                    else (raw.decode("utf-8", "replace"))
                )
            return str(v)
    return None


def _known(charset: str | None) -> bool:
    if not charset:
        return False
    try:
        codecs.lookup(charset)
    except LookupError:
        return False
    return True


def check_manifest(u: Unsealed) -> None:
    """Raise VerificationError unless the manifest matches the content and the header fields."""
    m = u.manifest
    if m is None:
        return
    try:
        body_meta = m["body"]
        atts = m["attachments"]
        if not isinstance(atts, list) or not isinstance(body_meta, dict):
            raise TypeError
        body = canonical_text(u.body or b"")
        if (u.body or b"") and not body.endswith(b"\r\n"):
            body += b"\r\n"
        if hashlib.sha256(body).hexdigest() != body_meta["sha256"]:
            raise VerificationError("the body does not match the manifest's SHA-256")
        if len(atts) != len(u.parts):
            raise VerificationError(
                f"the manifest lists {len(atts)} attachments, the message has {len(u.parts)}"
            )
        for rec, part in zip(atts, u.parts, strict=True):
            if hashlib.sha256(part.data).hexdigest() != rec["sha256"]:
                raise VerificationError(
                    f"attachment {rec.get('filename')!r} does not match the manifest's SHA-256"
                )
        if m.get("message_id") != u.fields.get("Message-ID"):
            raise VerificationError("the Message-ID does not match the manifest")
        if m.get("subject") != u.fields.get("Subject"):
            raise VerificationError("the Subject does not match the manifest")
        claimed = m.get("from")
        if not isinstance(claimed, str) or u.sender is None or not same_address(claimed, u.sender):
            raise VerificationError("the From address does not match the manifest")
    except (KeyError, TypeError):
        raise MalformedError("the manifest is missing required members") from None
