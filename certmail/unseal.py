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

import codecs
import contextlib
import hashlib
import io
import json
import os
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from email.header import Header
from email.message import Message
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from keys.errors import MalformedError, VerificationError
from keys.gpg import Keyring, SignatureInfo
from notary.mime import Buffer

from .compose import MANIFEST_TYPE, Progress, canonical_text
from .mailfile import check_message_file
from .mime import (
    Entity,
    FileBuffer,
    TooManyParts,
    canonical_chunks,
    canonicalize,
    decode_body,
    decode_field,
    decode_to,
    header_fields,
    is_canonical,
    parse_entity,
    parts,
    same_address,
    single_mailbox,
)
from .protected import (
    is_protected,
    merged_fields,
    scheme,
    strip_legacy_display,
    without_legacy_display,
)
from .rfc3156 import (
    COPY_CHUNK,
    SignedSpan,
    encrypted_part,
    signed_span,
    write_ciphertext,
)
from .smime.entities import is_smime

if TYPE_CHECKING:
    from .smime.opening import SmimeContext

MAX_DEPTH = 20  # MIME nesting
# MIME entities (multipart containers and leaves) one message may hold. With
# the nesting bound this also bounds the walk's work: every entity is parsed
# once, and its bytes are copied at most MAX_DEPTH times.
MAX_PARTS = 1000
#: Parts up to this many encoded bytes are decoded in memory; bigger ones into files.
INLINE = 1 << 20
MAX_MANIFEST = 16 << 20
#: Messages and payloads up to this size get bare LF line ends mended before anything
#: is read; bigger ones are read as they are (and mended, into a file, only if that fails).
CHECK_CANONICAL = 16 << 20


@dataclass(frozen=True)
class Part:
    """A leaf of the opened message: decoded content and its declared names.

    ``content`` is the decoded bytes, or for a big part (over :data:`INLINE`
    encoded bytes) the file in the work directory that holds them: read it
    with :meth:`open`; :attr:`data` reads it whole.
    """

    content_type: str
    filename: str | None  # as declared (RFC 2231 / 2047 decoded), untrusted
    content: bytes | Path
    is_attachment: bool
    size: int = -1  # of the decoded content (-1: len(content))
    sha256: str = ""  # hex of the decoded content ("": computed when asked)

    @property
    def data(self) -> bytes:
        return self.content if isinstance(self.content, bytes) else self.content.read_bytes()

    @property
    def length(self) -> int:
        return self.size if self.size >= 0 else len(self.data)

    @property
    def digest(self) -> str:
        return self.sha256 or hashlib.sha256(self.data).hexdigest()

    def open(self) -> BinaryIO:
        """The decoded content as a binary file object."""
        if isinstance(self.content, bytes):
            return io.BytesIO(self.content)
        return self.content.open("rb")


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
        sha = pool.submit(_hash, buf)  # beside the rest: hashlib and pread free the GIL
        if len(buf) <= CHECK_CANONICAL:
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
            u = _unseal_big(keyring, buf, workdir, allow_unsigned, progress, smime)
        u.sha256 = sha.result()
    return u


def _unseal_big(
    keyring: Keyring,
    buf: FileBuffer,
    workdir: Path,
    allow_unsigned: bool,
    progress: Progress | None,
    smime: SmimeContext | None = None,
) -> Unsealed:
    """A big message read as it is (its ciphertext is decoded whatever its line ends);
    when that fails on a file with bare LF line ends, a CRLF copy of it (streamed)."""
    try:
        return _unseal(keyring, buf, workdir, allow_unsigned, progress, smime)
    except MalformedError:
        if is_canonical(buf):
            raise
    copy = workdir / "canonical.eml"
    with copy.open("wb") as out:
        for chunk in canonical_chunks(buf):
            out.write(chunk)
    with copy.open("rb") as f:
        return _unseal(keyring, FileBuffer(f.fileno()), workdir, allow_unsigned, progress, smime)


def _hash(buf: FileBuffer) -> str:
    h = hashlib.sha256()
    step = 4 << 20
    for i in range(0, len(buf), step):
        h.update(buf[i : i + step])
    return h.hexdigest()


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
) -> Unsealed:
    if _blank(buf):
        raise MalformedError("the message file is empty")
    workdir.mkdir(parents=True, exist_ok=True)
    top = parse_entity(buf)
    with contextlib.ExitStack() as stack:
        if is_smime(top):  # RFC 8551: certmail/smime/
            entity, encrypted, pending = _open_smime(smime, top, workdir)
        else:
            entity, encrypted, pending = _open_layers(keyring, top, workdir, stack, progress)
        if pending is None and not allow_unsigned:
            raise VerificationError(
                "the message is not signed (the signature may have been stripped)",
                hint="certmail open --allow-unsigned FILE to read it anyway",
            )
        walk = _Walk(workdir, progress, entity.end - entity.start)
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
    body, rest, manifest = _sort_parts(walk.out)
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
        if signature is not None:
            pending = Future()
            pending.set_result(signature)
    elif top.content_type == "application/pgp-encrypted" or top.buf[
        top.body_start : top.body_start + 4096
    ].lstrip().startswith(b"-----BEGIN PGP MESSAGE"):
        raise MalformedError("inline PGP is not supported; certmail reads PGP/MIME (RFC 3156)")
    if entity.content_type == "multipart/signed":
        sp = signed_span(entity)
        if progress is not None:
            progress("verify", 0, 1)
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
    ct = workdir / "encrypted.pgp"
    with ct.open("wb") as f:
        write_ciphertext(part, f.write)
    pt = workdir / "decrypted.mime"
    if progress is not None:
        progress("decrypt", 0, 1)
    signature = keyring.decrypt_file(ct, pt)
    ct.unlink()
    fh = stack.enter_context(pt.open("rb"))
    buf: Buffer = FileBuffer(fh.fileno())
    # A signed payload is canonical (RFC 3156 §5); only a small one is mended.
    if len(buf) <= CHECK_CANONICAL and not is_canonical(buf):
        buf = canonicalize(pt.read_bytes())
    return parse_entity(buf), signature


def _verify(keyring: Keyring, buf: Buffer, sp: SignedSpan, workdir: Path) -> SignatureInfo | None:
    """The detached signature checked over ``buf[sp.start:sp.end]`` (a file when it is big)."""
    if sp.end - sp.start <= INLINE:
        return keyring.verify_detached(bytes(buf[sp.start : sp.end]), sp.signature)
    signed = workdir / "signed.mime"
    with signed.open("wb") as out:
        copy_range(buf, sp.start, sp.end, out)
    try:
        return keyring.verify_detached_file(signed, sp.signature)
    finally:
        signed.unlink()


def copy_range(buf: Buffer, start: int, end: int, out: BinaryIO) -> None:
    """Write ``buf[start:end]`` to ``out``: in the kernel (copy_file_range) from a file."""
    if isinstance(buf, FileBuffer):
        out.flush()
        pos = start
        try:
            while pos < end:
                n = os.copy_file_range(buf.fd, out.fileno(), end - pos, pos)
                if n <= 0:
                    break
                pos += n
        except OSError:
            pass
        while pos < end:
            chunk = buf[pos : min(end, pos + COPY_CHUNK)]
            out.write(chunk)
            pos += len(chunk)
        return
    out.write(memoryview(buf)[start:end])  # type: ignore[arg-type]


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
            if p.length > MAX_MANIFEST:
                raise MalformedError("the manifest part is too large")
            try:
                obj = json.loads(p.data)
            except ValueError:
                raise MalformedError("the manifest part is not JSON") from None
            if not isinstance(obj, dict):
                raise MalformedError("the manifest part is not a JSON object")
            manifest = obj
        elif (
            body is None
            and p.content_type == "text/plain"
            and not p.is_attachment
            and isinstance(p.content, bytes)
        ):
            body = p.data
        else:
            rest.append(p)
    return body, rest, manifest


class _Walk:
    """Collects the leaves of an entity, decoded: small ones in memory, big ones to files.

    Raises :class:`MalformedError` past :data:`MAX_DEPTH` levels or
    :data:`MAX_PARTS` entities; a multipart body is split only up to the
    entities still allowed, so the work is bounded by the caps, not the input.
    """

    def __init__(self, workdir: Path, progress: Progress | None, total: int) -> None:
        self.workdir = workdir
        self.progress = progress
        self.total = total
        self.done = 0
        self.budget = MAX_PARTS
        self.out: list[Part] = []

    def entity(self, entity: Entity, depth: int = 0) -> None:
        if depth > MAX_DEPTH:
            raise MalformedError("MIME nesting too deep")
        self.budget -= 1
        if self.budget < 0:
            raise MalformedError(f"too many parts (more than {MAX_PARTS} MIME entities)")
        if entity.content_type.startswith("multipart/"):
            try:
                children = parts(entity, max_parts=self.budget)
            except TooManyParts:
                raise MalformedError(
                    f"too many parts (more than {MAX_PARTS} MIME entities)"
                ) from None
            for child in without_legacy_display(entity, children):
                self.entity(child, depth + 1)
            return
        self.out.append(self.leaf(entity))

    def leaf(self, entity: Entity) -> Part:
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
        content, size, digest = self.decode(entity)
        return Part(entity.content_type, filename, content, attached, size, digest)

    def decode(self, entity: Entity) -> tuple[bytes | Path, int, str]:
        """The decoded body (bytes, or a file for a big one), its size and SHA-256."""
        h = hashlib.sha256()
        size = 0
        if entity.body_size <= INLINE:
            data = strip_legacy_display(entity, decode_body(entity))
            h.update(data)
            self._advance(entity.body_size)
            return data, len(data), h.hexdigest()
        path = self.workdir / f"part-{len(self.out)}"
        with path.open("wb") as f:

            def write(chunk: bytes) -> None:
                nonlocal size
                h.update(chunk)
                size += len(chunk)
                f.write(chunk)

            decode_to(entity, write, self._advance)
        return path, size, h.hexdigest()

    def _advance(self, n: int) -> None:
        self.done += n
        if self.progress is not None:
            self.progress("decode", self.done, self.total)


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
