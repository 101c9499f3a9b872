"""Seal a message: compose, sign and encrypt it (RFC 3156 §6), then re-verify it.

The layout is RFC 3156 with RFC 9788 header protection (:mod:`certmail.rfc3156`)
around the inner entity of :mod:`certmail.compose`. Every stage goes file to
file; the encrypted case runs the one-pass gpg pipeline of
:mod:`certmail.pipeline`. Before :func:`seal` returns, the final bytes are
checked (DESIGN §5: re-verify the bytes before they leave).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Literal

from keys.dkim_body import SIGNING_CANONICALIZATION, BodyHash
from keys.errors import Error, MalformedError, VerificationError
from keys.gpg import Keyring
from notary import fastpath

from .compose import (
    Headers,
    Manifest,
    Progress,
    ScanRecord,
    compose_inner,
    header_lines,
    new_boundary,
)
from .fileio import HashingWriter, close_file, copy_file, file_sha256, start_writeback
from .mime import canonicalize
from .pipeline import DEFAULT_GPG, REVERIFY_HINT, EncryptPipeline, GpgOptions
from .rfc3156 import OBSCURED_SUBJECT, autocrypt_header, copy_stream, signed_head, write_signed


@dataclass(frozen=True)
class Sealed:
    """A finished message on disk: the exact bytes that will be sent."""

    path: Path
    sha256: str
    size: int
    manifest: Manifest
    signed: bool
    encrypted: bool


def seal(
    keyring: Keyring,
    workdir: Path,
    headers: Headers,
    body: bytes,
    attachments: Sequence[tuple[Path, ScanRecord]] = (),
    *,
    sign: bool = True,
    encrypt: bool = True,
    extra_outer: Sequence[str] = (),
    autocrypt: bool = True,
    dkim: Callable[[Path], bytes] | None = None,
    progress: Progress | None = None,
    compress: bool = False,
    dkim_check: Callable[[Path, Any], None] | None = None,
    dkim_hashed: Callable[[bytes, bytes], bytes] | None = None,
    html: bytes | None = None,
    gpg: GpgOptions = DEFAULT_GPG,
) -> Sealed:
    """Compose, sign, encrypt (to the recipients and to the sender) and re-verify a message.

    ``gpg``: the layout (``combined``, RFC 3156 §6.2, the default, or §6.1) and where
    the base64 work is done (``external_base64``): :class:`certmail.pipeline.GpgOptions`.

    ``html``: an HTML alternative of the body, for a message that is not encrypted
    (the pickup notice; :func:`certmail.compose.compose_inner`).

    ``compress`` lets gpg deflate the signed part before encrypting it
    (:func:`certmail.msgsize.should_compress` decides; docs/send-open.md#size).

    Every stage goes file to file inside ``workdir``; the result is
    ``workdir/message.eml``. ``dkim``, when given, reads the finished message
    file and returns the DKIM-Signature field line(s) to prepend;
    ``dkim_check(path, sha256)`` then DKIM-verifies the finished file, feeding
    ``sha256`` (a :mod:`hashlib` object) every byte it reads: the message's
    SHA-256 is taken in that same pass. ``dkim_hashed(header block, body
    hash)``, when given with ``dkim``, makes the same field from the body hash
    (:data:`keys.dkim_body.SIGNING_CANONICALIZATION`) taken while an encrypted
    message is written, so the file is not read again to sign it. Before
    returning, the final bytes are checked: decryptable with our own key, the
    decrypted bytes equal to what was signed, and the signature valid.

    Encrypted messages go through one pipeline of gpg processes
    (:class:`certmail.pipeline.EncryptPipeline`): the signature is made while
    the payload is already being encrypted, and the armored ciphertext is
    decrypted again as it is written, so the re-verification costs no extra
    pass over the file.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    outer = _outer_fields(
        keyring, headers, sign=sign, encrypt=encrypt, extra_outer=extra_outer, autocrypt=autocrypt
    )
    signer = keyring.signing_key(headers.from_addr) if sign else None
    unsigned = workdir / "message.unsigned"
    args = (keyring, workdir, headers, body, attachments, outer, signer, unsigned, progress)
    gap = 0
    if encrypt:
        manifest, digest, size, dkim, gap = _seal_encrypted_for_dkim(
            args, compress=compress, dkim=dkim, dkim_hashed=dkim_hashed, gpg=gpg
        )
    else:
        manifest, digest, size = _seal_clear(
            *args, extra_outer=extra_outer, html=html, external_base64=gpg.external_base64
        )
    final = workdir / "message.eml"
    if dkim is not None:
        digest, size = _prepend_dkim(dkim, unsigned, final, dkim_check, gap=gap)
    else:
        os.replace(unsigned, final)
    return Sealed(final, digest, size, manifest, sign, encrypt)


def _seal_encrypted_for_dkim(
    args: tuple[Any, ...],
    *,
    compress: bool,
    dkim: Callable[[Path], bytes] | None,
    dkim_hashed: Callable[[bytes, bytes], bytes] | None,
    gpg: GpgOptions,
) -> tuple[Manifest, str, int, Callable[[Path], bytes] | None, int]:
    """:func:`_seal_encrypted` (``args`` its positional arguments), the DKIM
    signer for the result and the gap left for its field at the start of the file.

    With ``dkim_hashed``, the signer makes the field from the body hash taken
    while the message was written (the file is not read again), and the message
    is written ``gap`` bytes into the file: the length of the field signed for
    the same header block with a dummy body hash (the same length for every
    body hash: ``bh=`` and ``b=`` have fixed sizes for a key), so that the field
    is written in place and the message not copied behind it (:func:`_prepend_dkim`).
    ``CERTMAIL_REFERENCE_ONLY`` (:mod:`notary.fastpath`) leaves no gap."""
    streamed = BodyHash(SIGNING_CANONICALIZATION) if dkim and dkim_hashed else None
    gaps: list[int] = []
    hashed = dkim_hashed

    def reserve(head: bytes) -> int:
        assert hashed is not None
        gaps.append(len(canonicalize(hashed(head, bytes(32)))))
        return gaps[-1]

    room = reserve if streamed is not None and fastpath.enabled() else None
    manifest, digest, size, head = _seal_encrypted(
        *args, compress=compress, dkim=streamed, gpg=gpg, reserve=room
    )
    if streamed is None or hashed is None:
        return manifest, digest, size, dkim, 0
    bh = streamed.digest()

    def dkim_from_hash(_: Path) -> bytes:
        return hashed(head, bh)

    return manifest, digest, size, dkim_from_hash, gaps[0] if gaps else 0


def _outer_fields(
    keyring: Keyring,
    headers: Headers,
    *,
    sign: bool,
    encrypt: bool,
    extra_outer: Sequence[str],
    autocrypt: bool,
) -> list[str]:
    """The outer header field lines: Subject obscured when encrypted (RFC 9788), Autocrypt."""
    outer = [
        *header_lines(headers, subject=OBSCURED_SUBJECT if encrypt else None),
        "MIME-Version: 1.0",
        *extra_outer,
    ]
    if autocrypt and (sign or encrypt):
        outer.append(autocrypt_header(headers.from_addr, keyring.export_public(headers.from_addr)))
    return outer


def _seal_encrypted(
    keyring: Keyring,
    workdir: Path,
    headers: Headers,
    body: bytes,
    attachments: Sequence[tuple[Path, ScanRecord]],
    outer: Sequence[str],
    signer: str | None,
    unsigned: Path,
    progress: Progress | None,
    *,
    compress: bool = False,
    dkim: BodyHash | None = None,
    gpg: GpgOptions = DEFAULT_GPG,
    reserve: Callable[[bytes], int] | None = None,
) -> tuple[Manifest, str, int, bytes]:
    """``multipart/encrypted`` around ``multipart/signed`` (RFC 3156 §6.1), or around
    the inner entity signed in the encryption (``gpg.combined``, §6.2), to ``unsigned``.

    ``dkim`` is fed the body as it is written; the header block is returned with
    the manifest, the SHA-256 and the size. ``reserve`` (with ``dkim``): the
    room left at the start of the file (:attr:`EncryptPipeline.reserve`).
    """
    hp: Literal["cipher"] = "cipher"
    inner = workdir / "inner.mime"
    recipients = [keyring.encryption_key(a) for a in headers.recipients]
    own = keyring.encryption_key(headers.from_addr)
    fprs = [*dict.fromkeys([*recipients, own])]
    # Unlock the keys before the streaming pipeline, whose runs cannot be repeated:
    # the micalg probe signs (asking for the passphrase if needed); unsigned, a
    # probe decrypts for the re-verification.
    micalg = keyring.micalg(signer) if signer is not None else None
    if signer is None:
        keyring.unlock_decryption(own)
    sb = new_boundary()
    if gpg.combined:
        micalg = None  # the probe above unlocked the key; no multipart/signed head
    # The payload gpg encrypts is [multipart/signed head][inner][signature part] (§6.1)
    # or the inner entity alone (§6.2);
    # each piece is held as it goes into gpg, to compare with the decryption.
    # The inner entity is composed straight into gpg (and into ``inner``, for the
    # signature check) while gpg signs and encrypts: no stage waits for a whole file.
    phead = signed_head(micalg, sb) if micalg is not None else b""

    def write_inner(out: BinaryIO) -> Manifest:
        manifest = compose_inner(
            out,
            headers,
            body,
            attachments,
            hp=hp,
            outer_subject=OBSCURED_SUBJECT,
            progress=progress,
            external_base64=gpg.external_base64,
        )
        if progress is not None:
            progress("encrypt", 0, 1)
        return manifest

    pipeline = EncryptPipeline(
        keyring,
        inner,
        fprs,
        signer=signer,
        micalg=micalg,
        payload_head=phead,
        boundary=sb,
        compress=compress,
        write_inner=write_inner,
        body_hash=dkim,
        options=gpg,
    )
    pipeline.reserve = reserve
    digest, size = pipeline.run(unsigned, outer)
    manifest: Manifest = pipeline.composed
    return manifest, digest, size, pipeline.header_block


def _seal_clear(
    keyring: Keyring,
    workdir: Path,
    headers: Headers,
    body: bytes,
    attachments: Sequence[tuple[Path, ScanRecord]],
    outer: Sequence[str],
    signer: str | None,
    unsigned: Path,
    progress: Progress | None,
    *,
    extra_outer: Sequence[str],
    html: bytes | None = None,
    external_base64: bool = True,
) -> tuple[Manifest, str, int]:
    """``multipart/signed`` (RFC 3156 §5), or the bare inner entity, to ``unsigned``."""
    hp: Literal["clear"] | None = "clear" if signer is not None else None
    inner = workdir / "inner.mime"
    with inner.open("wb") as f:
        manifest = compose_inner(
            f,
            headers,
            body,
            attachments,
            hp=hp,
            progress=progress,
            html=html,
            external_base64=external_base64,
        )
    out = unsigned.open("wb")
    writer = HashingWriter(out)  # type: ignore[arg-type]
    signature: bytes | None = None
    if signer is not None:
        if progress is not None:
            progress("sign", 0, 1)
        signature, micalg_used = keyring.sign_detached_file(inner, signer)
        with inner.open("rb") as src:
            write_signed(writer, src, signature, micalg_used, outer)  # type: ignore[arg-type]
    else:
        # Neither signed nor encrypted: the inner entity is the message.
        if extra_outer:
            writer.write(("\r\n".join(extra_outer) + "\r\n").encode("ascii"))
        with inner.open("rb") as src:
            copy_stream(src, writer)  # type: ignore[arg-type]
    close_file(out)
    if progress is not None:
        progress("check", 0, 1)
    if signature is not None:
        try:
            keyring.verify_detached_file(inner, signature)
        except (VerificationError, MalformedError) as e:
            raise Error(
                f"refusing to send: the finished message did not re-verify ({e.message})",
                hint=REVERIFY_HINT,
            ) from e
    return manifest, writer.digest.hexdigest(), writer.size


def _prepend_dkim(
    dkim: Callable[[Path], bytes],
    unsigned: Path,
    final: Path,
    check: Callable[[Path, Any], None] | None = None,
    *,
    gap: int = 0,
) -> tuple[str, int]:
    """``final`` = the DKIM-Signature field(s) for ``unsigned``, then ``unsigned``.

    ``gap``: the message starts that many bytes into ``unsigned``; a field of
    exactly that length is written into the gap and the file renamed (the
    message is not copied); otherwise the message is copied behind the field.
    The finished file is read back once: its SHA-256 (and, with ``check``, the
    DKIM check of the same bytes) come from what is stored.
    """
    prefix = canonicalize(dkim(unsigned))
    if gap and len(prefix) == gap:
        with unsigned.open("r+b") as f:
            f.write(prefix)
            f.flush()
            start_writeback(f.fileno(), 0, 0)
        os.replace(unsigned, final)
    else:
        with final.open("wb") as f:
            f.write(prefix)
            f.flush()
            with unsigned.open("rb") as src:
                src.seek(gap)
                copy_file(src, f)
            f.flush()
            start_writeback(f.fileno(), 0, 0)
        unsigned.unlink()
    # Read back: the stored bytes are the ones hashed, notarized and sent.
    if check is None:
        return file_sha256(final), final.stat().st_size
    digest = hashlib.sha256()
    check(final, digest)
    return digest.hexdigest(), final.stat().st_size
