"""Unseal a message: decrypt and verify RFC 3156 PGP/MIME, then read its parts.

RFC 3156 §4 (``multipart/encrypted``) and §5 (``multipart/signed``), with the
RFC 9788 protected header fields of the payload. The sender is checked strictly:
the protected From must hold exactly one mailbox (RFC 5322 §3.4) and that
address must be one of the signing key's user-ID addresses
(:func:`check_sender`), the rule of the bundle verifier. :func:`check_manifest`
compares the certmail manifest (docs/send-open.md) with what was opened.

:func:`unseal_file` reads a message file as a stream (docs/send-open.md, big
messages): the file through :class:`certmail.mime.FileBuffer`, gpg decrypting
to a file, the signature checked in a thread while the parts are decoded, big
parts into files in the work directory.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from email.header import Header
from pathlib import Path
from typing import TYPE_CHECKING, Any

from keys.errors import MalformedError, VerificationError
from keys.gpg import Keyring, SignatureInfo
from notary.mime import Buffer

from .compose import Progress, canonical_text
from .fileio import ChunkReader, RangeReader
from .mailfile import check_message_file
from .mime import (
    CanonicalCheck,
    Entity,
    FileBuffer,
    canonical_chunks,
    canonicalize,
    decode_field,
    header_fields,
    is_canonical,
    parse_entity,
    same_address,
    single_mailbox,
)
from .parts import INLINE, Walk, sort_parts
from .parts import MAX_DEPTH as MAX_DEPTH  # the bounds and Part, importable from here too
from .parts import MAX_PARTS as MAX_PARTS
from .parts import Part as Part
from .protected import (
    is_protected,
    merged_fields,
    scheme,
)
from .rfc3156 import (
    SignedSpan,
    ciphertext_chunks,
    encrypted_part,
    signed_span,
)
from .smime.entities import is_smime

if TYPE_CHECKING:
    from .smime.opening import SmimeContext

#: Messages and payloads up to this size get bare LF line ends mended before anything
#: is read; bigger ones are read as they are (and mended, into a file, only if that fails).
CHECK_CANONICAL = 16 << 20


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
    sha256: str | None = None  # of the message file's exact bytes (unseal_file)
    canonical: bool | None = None  # whether that file has CRLF line ends only (unseal_file)


def unseal_file(
    keyring: Keyring,
    path: Path,
    workdir: Path,
    *,
    allow_unsigned: bool = False,
    progress: Progress | None = None,
    smime: SmimeContext | None = None,
) -> Unsealed:
    """:func:`unseal` of a message file, read through the file, never whole in memory.

    The file is checked as :func:`certmail.mailfile.read_message` does, its
    SHA-256 (:attr:`Unsealed.sha256`) taken in one streaming pass; gpg
    decrypts to a file, and big parts are decoded into files in ``workdir``.
    ``progress`` is told (stage, bytes done, bytes total) as it goes.
    """
    check_message_file(path)
    with path.open("rb") as f, ThreadPoolExecutor(1) as pool:
        buf = FileBuffer(f.fileno())
        sha: list[Future[tuple[str, bool]]] = []

        def hash_now() -> None:
            # Beside the rest, once gpg has decrypted: its line-end count holds the GIL,
            # which the armor's decoding needs while gpg decrypts; the signature check,
            # in gpg, leaves it free.
            if not sha:
                sha.append(pool.submit(_hash, buf))

        if len(buf) <= CHECK_CANONICAL:
            hash_now()
            raw = buf[0 : len(buf)]  # small: mended to CRLF first, as it always was
            u = unseal(
                keyring,
                raw,
                workdir,
                allow_unsigned=allow_unsigned,
                progress=progress,
                smime=smime,
            )
        else:
            u = _unseal_big(keyring, buf, workdir, allow_unsigned, progress, smime, hash_now)
        hash_now()
        u.sha256, u.canonical = sha[0].result()
    return u


def _unseal_big(
    keyring: Keyring,
    buf: FileBuffer,
    workdir: Path,
    allow_unsigned: bool,
    progress: Progress | None,
    smime: SmimeContext | None = None,
    decrypted: Callable[[], None] | None = None,
) -> Unsealed:
    """A big message read as it is (its ciphertext is decoded whatever its line ends);
    when that fails on a file with bare LF line ends, a CRLF copy of it (streamed)."""
    try:
        return _unseal(keyring, buf, workdir, allow_unsigned, progress, smime, decrypted)
    except MalformedError:
        if is_canonical(buf):
            raise
    copy = workdir / "canonical.eml"
    with copy.open("wb") as out:
        for chunk in canonical_chunks(buf):
            out.write(chunk)
    with copy.open("rb") as f:
        copied = FileBuffer(f.fileno())
        return _unseal(keyring, copied, workdir, allow_unsigned, progress, smime, decrypted)


def _hash(buf: FileBuffer) -> tuple[str, bool]:
    """The SHA-256 of ``buf`` and whether it is canonical (:func:`is_canonical`), one pass."""
    h = hashlib.sha256()
    check = CanonicalCheck()
    step = 4 << 20
    for i in range(0, len(buf), step):
        chunk = buf[i : i + step]
        h.update(chunk)
        check.update(chunk)
    return h.hexdigest(), check.ok


def unseal(
    keyring: Keyring,
    raw: bytes,
    workdir: Path,
    *,
    allow_unsigned: bool = False,
    progress: Progress | None = None,
    smime: SmimeContext | None = None,
) -> Unsealed:
    """Decrypt and verify an RFC 3156 message; parse its payload.

    Raises :class:`VerificationError` for a bad, forged or (unless
    ``allow_unsigned``) missing signature, or a signature by a key that is not
    the From address's, and :class:`MalformedError` for anything that is not
    well-formed MIME / OpenPGP. S/MIME (RFC 8551) is opened with ``smime``
    (:mod:`certmail.smime.opening`).
    """
    return _unseal(keyring, canonicalize(raw), workdir, allow_unsigned, progress, smime)


def _unseal(
    keyring: Keyring,
    buf: Buffer,
    workdir: Path,
    allow_unsigned: bool,
    progress: Progress | None,
    smime: SmimeContext | None = None,
    decrypted: Callable[[], None] | None = None,
) -> Unsealed:
    """:func:`unseal` of ``buf``; ``decrypted`` is called once gpg has decrypted it (or
    before the rest, when it is not OpenPGP-encrypted)."""
    if _blank(buf):
        raise MalformedError("the message file is empty")
    workdir.mkdir(parents=True, exist_ok=True)
    top = parse_entity(buf)
    with contextlib.ExitStack() as stack:
        if is_smime(top):  # RFC 8551: certmail/smime/
            if decrypted is not None:
                decrypted()
            entity, encrypted, pending = _open_smime(smime, top, workdir)
        else:
            entity, encrypted, pending = _open_layers(
                keyring, top, workdir, stack, progress, decrypted
            )
        if pending is None and not allow_unsigned:
            raise VerificationError(
                "the message is not signed (the signature may have been stripped)",
                hint="certmail open --allow-unsigned FILE to read it anyway",
            )
        walk = Walk(workdir, progress, entity.end - entity.start)
        try:  # while gpg checks the signature
            walk.entity(entity)
        except MalformedError:
            if pending is not None:
                pending.result()  # a bad signature is the error to report
            raise
        if progress is not None:
            progress("decode", walk.total, walk.total)
        signature = pending.result() if pending is not None else None
    hp = scheme(entity)  # RFC 9788 hp, or "v1" (certmail.protected: other clients)
    headers = merged_fields(entity, top.headers) if is_protected(entity) else top.headers
    if signature is not None:
        check_sender(keyring, signature, headers.get("From"))
    body, rest, manifest = sort_parts(walk.out)
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


def _open_smime(
    smime: SmimeContext | None, top: Entity, workdir: Path
) -> tuple[Entity, bool, Future[SignatureInfo | None] | None]:
    """The S/MIME layers opened (:func:`certmail.smime.opening.open_layers`), its
    signature result shaped as the OpenPGP path's pending check."""
    from .smime.opening import open_layers

    if smime is None:
        raise MalformedError("S/MIME is not read here", hint="certmail open FILE")
    entity, encrypted, signature = open_layers(smime, top, workdir)
    if signature is None:
        return entity, encrypted, None
    done: Future[SignatureInfo | None] = Future()
    done.set_result(signature)
    return entity, encrypted, done


def _blank(buf: Buffer) -> bool:
    step = 1 << 20
    return all(not buf[i : i + step].strip() for i in range(0, len(buf), step))


def _open_layers(
    keyring: Keyring,
    top: Entity,
    workdir: Path,
    stack: contextlib.ExitStack,
    progress: Progress | None,
    decrypted: Callable[[], None] | None = None,
) -> tuple[Entity, bool, Future[SignatureInfo | None] | None]:
    """Decrypt (RFC 3156 §4) and verify (§5): the payload entity, encrypted?, signature.

    The plaintext stays in a file in ``workdir``, read through a
    :class:`FileBuffer` kept open by ``stack``. The signature (None: not
    signed) is a future: gpg checks a ``multipart/signed`` payload in a thread
    of ``stack`` while the parts are decoded.
    """
    entity = top
    encrypted = False
    pending: Future[SignatureInfo | None] | None = None
    if top.content_type == "multipart/encrypted":
        encrypted = True
        entity, signature = _decrypt(keyring, top, workdir, stack, progress)
        if decrypted is not None:
            decrypted()
        if signature is not None:
            pending = Future()
            pending.set_result(signature)
    elif top.content_type == "application/pgp-encrypted" or top.buf[
        top.body_start : top.body_start + 4096
    ].lstrip().startswith(b"-----BEGIN PGP MESSAGE"):
        raise MalformedError("inline PGP is not supported; certmail reads PGP/MIME (RFC 3156)")
    elif decrypted is not None:
        decrypted()
    if entity.content_type == "multipart/signed":
        sp = signed_span(entity)
        if progress is not None:
            progress("verify", 0, 1)
        if encrypted and isinstance(entity.buf, FileBuffer) and sp.end - sp.start > INLINE:
            # The decrypted payload is ours, and the signature part was read: it ends
            # with the signed part, which gpg then reads from the file itself.
            entity.buf.truncate(sp.end)
        pool = stack.enter_context(ThreadPoolExecutor(1))
        pending = pool.submit(_verify, keyring, entity.buf, sp, workdir)
        entity = parse_entity(entity.buf, sp.start, sp.end)
    return entity, encrypted, pending


def _decrypt(
    keyring: Keyring,
    top: Entity,
    workdir: Path,
    stack: contextlib.ExitStack,
    progress: Progress | None,
) -> tuple[Entity, SignatureInfo | None]:
    """gpg decrypts the ciphertext (taken out of its armor) to a file; its entity, signature."""
    part = encrypted_part(top)
    ciphertext_chunks(part)  # a missing armor is reported before gpg starts
    pt = workdir / "decrypted.mime"
    if progress is not None:
        progress("decrypt", 0, 1)
    # Taken out of its armor as gpg reads it (a pipe): no ciphertext file.
    signature = keyring.decrypt_stream(lambda: ChunkReader(ciphertext_chunks(part)), pt)
    fh = stack.enter_context(pt.open("r+b"))  # ours: cut after the signed part (_open_layers)
    buf: Buffer = FileBuffer(fh.fileno())
    # A signed payload is canonical (RFC 3156 §5); only a small one is mended.
    if len(buf) <= CHECK_CANONICAL and not is_canonical(buf):
        buf = canonicalize(pt.read_bytes())
    return parse_entity(buf), signature


def _verify(keyring: Keyring, buf: Buffer, sp: SignedSpan, workdir: Path) -> SignatureInfo | None:
    """The detached signature checked over ``buf[sp.start:sp.end]`` (streamed when it is big)."""
    if sp.end - sp.start <= INLINE:
        return keyring.verify_detached(bytes(buf[sp.start : sp.end]), sp.signature)
    if isinstance(buf, FileBuffer) and len(buf) == sp.end:  # to the end of the file
        return keyring.verify_detached_at(buf.fd, sp.start, sp.signature)
    # gpg reads the range from a pipe: no copy of the signed part in a file.
    return keyring.verify_detached_stream(RangeReader(buf, sp.start, sp.end), sp.signature)


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
            if part.digest != rec["sha256"]:
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
