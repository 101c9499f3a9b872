"""RFC 3156 PGP/MIME entities: building and parsing, with an Autocrypt header.

Build: ``multipart/signed; micalg=pgp-sha256; protocol="application/pgp-signature"``
around the inner entity of :mod:`certmail.compose` (the signed bytes are that
entity exactly, CRLF canonical, RFC 3156 §5), and ``multipart/encrypted;
protocol="application/pgp-encrypted"`` around its ASCII-armored ciphertext (§4).
When the payload is encrypted, the outer Subject is the RFC 9788 obscured value
:data:`OBSCURED_SUBJECT`. The ``Autocrypt`` header (Autocrypt Level 1 §2.1)
carries the sender's public key; :func:`dearmor` reads ASCII armor (RFC 4880 §6.2).

Parse: :func:`signed_span` / :func:`signed_parts` and :func:`encrypted_part` /
:func:`encrypted_payload` take an entity read by :mod:`certmail.mime` (exact
bytes, so part 1 of ``multipart/signed`` can be handed to gpg as signed; the
``_span``/``_part`` forms only say where the bytes lie, for big messages), and
:func:`write_ciphertext` streams the ciphertext out of its armor. Nothing here
runs gpg.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import BinaryIO

from keys.errors import MalformedError

from .armor import BEGIN_MESSAGE, END_MESSAGE
from .compose import new_boundary
from .mime import (
    MAX_HEADER_BLOCK,
    Entity,
    base64_chunks,
    decode_body,
    decoded_chunks,
    parse_entity,
    part_spans,
    parts,
    transfer_encoding,
)

OBSCURED_SUBJECT = "[...]"  # RFC 9788 §4.5 recommended obscured Subject
PGP_ENCRYPTED = "application/pgp-encrypted"
PGP_SIGNATURE = "application/pgp-signature"
COPY_CHUNK = 1 << 20
#: Largest signature or control part read (a detached signature is a few KB).
MAX_SIGNATURE_PART = 1 << 20


# ---------------------------------------------------------------- building


def dearmor(armored: str | bytes) -> bytes:
    """The binary OpenPGP packets inside an ASCII armor block (RFC 4880 §6.2)."""
    text = armored.decode("ascii") if isinstance(armored, bytes) else armored
    lines = [ln.strip() for ln in text.strip().splitlines()]
    if not lines or not lines[0].startswith("-----BEGIN PGP"):
        raise MalformedError("not an ASCII-armored OpenPGP block")
    try:
        blank = lines.index("")
    except ValueError:
        raise MalformedError("ASCII armor without a blank line after its headers") from None
    body = []
    for ln in lines[blank + 1 :]:
        if ln.startswith("-----END PGP"):
            break
        if ln.startswith("="):
            continue  # CRC-24 checksum
        body.append(ln)
    try:
        return base64.b64decode("".join(body), validate=True)
    except ValueError:
        raise MalformedError("ASCII armor is not valid base64") from None


def autocrypt_header(addr: str, public_key_armored: str, *, prefer_encrypt: bool = True) -> str:
    """The ``Autocrypt:`` header field line (folded, CRLF inside) for ``addr``."""
    keydata = base64.b64encode(dearmor(public_key_armored)).decode("ascii")
    attrs = f"addr={addr};"
    if prefer_encrypt:
        attrs += " prefer-encrypt=mutual;"
    chunks = [keydata[i : i + 72] for i in range(0, len(keydata), 72)]
    return "Autocrypt: " + attrs + " keydata=\r\n " + "\r\n ".join(chunks)


def copy_stream(src: BinaryIO, out: BinaryIO) -> None:
    """Copy the rest of ``src`` to ``out`` in chunks."""
    while chunk := src.read(COPY_CHUNK):
        out.write(chunk)


def signed_head(micalg: str, boundary: str, fields: Sequence[str] = ()) -> bytes:
    """A ``multipart/signed`` entity up to where its signed part 1 begins."""
    ct = (
        f'Content-Type: multipart/signed; micalg="{micalg}";\r\n'
        f' protocol="{PGP_SIGNATURE}"; boundary="{boundary}"'
    )
    head = ("\r\n".join([*fields, ct]) + "\r\n\r\n").encode("ascii")
    return head + f"This is an OpenPGP/MIME signed message (RFC 3156).\r\n--{boundary}\r\n".encode()


def signed_tail(signature: bytes, boundary: str) -> bytes:
    """The rest of a ``multipart/signed`` entity after part 1: the signature part."""
    sig = signature.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    return (
        f"\r\n--{boundary}\r\n".encode()
        + f'Content-Type: {PGP_SIGNATURE}; name="signature.asc"\r\n'
        "Content-Description: OpenPGP digital signature\r\n"
        'Content-Disposition: attachment; filename="signature.asc"\r\n\r\n'.encode()
        + (sig if sig.endswith(b"\r\n") else sig + b"\r\n")
        + f"\r\n--{boundary}--\r\n".encode()
    )


def write_signed(
    out: BinaryIO,
    signed: BinaryIO,
    signature: bytes,
    micalg: str,
    fields: Sequence[str] = (),
) -> None:
    """A ``multipart/signed`` entity: ``signed`` is copied byte for byte as part 1.

    ``fields`` precede the Content-Type (outer message fields when this is the
    top-level entity). The bytes of ``signed`` must be those ``signature``
    covers and must end in CRLF.
    """
    b = new_boundary()
    out.write(signed_head(micalg, b, fields))
    copy_stream(signed, out)
    out.write(signed_tail(signature, b))


def encrypted_head(boundary: str, fields: Sequence[str] = ()) -> bytes:
    """A ``multipart/encrypted`` entity up to where the armored ciphertext begins."""
    ct = f'Content-Type: multipart/encrypted;\r\n protocol="{PGP_ENCRYPTED}"; boundary="{boundary}"'
    return (
        ("\r\n".join([*fields, ct]) + "\r\n\r\n").encode("ascii")
        + f"This is an OpenPGP/MIME encrypted message (RFC 3156).\r\n--{boundary}\r\n".encode()
        + f"Content-Type: {PGP_ENCRYPTED}\r\nContent-Description: PGP/MIME version "
        f"identification\r\n\r\nVersion: 1\r\n\r\n--{boundary}\r\n".encode()
        + b'Content-Type: application/octet-stream; name="encrypted.asc"\r\n'
        b"Content-Description: OpenPGP encrypted message\r\n"
        b'Content-Disposition: inline; filename="encrypted.asc"\r\n\r\n'
    )


def encrypted_tail(boundary: str) -> bytes:
    """The close of a ``multipart/encrypted`` entity after its (CRLF-ended) armor."""
    return f"\r\n--{boundary}--\r\n".encode()


# ---------------------------------------------------------------- parsing


@dataclass(frozen=True)
class SignedParts:
    """The pieces of a ``multipart/signed`` entity, exact bytes."""

    signed: bytes  # part 1, exactly as covered by the signature
    signature: bytes
    micalg: str | None


@dataclass(frozen=True)
class SignedSpan:
    """A ``multipart/signed`` entity read in place: where part 1 lies, and the signature."""

    start: int  # part 1 is entity.buf[start:end], exactly as covered by the signature
    end: int
    signature: bytes
    micalg: str | None


def signed_span(entity: Entity) -> SignedSpan:
    """Where part 1 lies and the detached signature of an RFC 3156 §5 entity (no copy)."""
    if entity.content_type != "multipart/signed":
        raise MalformedError(f"expected multipart/signed, got {entity.content_type}")
    proto = (entity.param("protocol") or "").lower()
    if proto != PGP_SIGNATURE:
        raise MalformedError(f"multipart/signed with protocol {proto or 'missing'}, not OpenPGP")
    spans = part_spans(entity, max_parts=16)
    if len(spans) != 2:
        raise MalformedError("multipart/signed must have exactly two parts")
    s, e = spans[1]
    if e - s > MAX_SIGNATURE_PART:
        raise MalformedError("the signature part of multipart/signed is too large")
    sig = parse_entity(entity.buf, s, e)
    if sig.content_type != PGP_SIGNATURE:
        raise MalformedError("the second part of multipart/signed is not a PGP signature")
    return SignedSpan(spans[0][0], spans[0][1], decode_body(sig), entity.param("micalg"))


def signed_parts(entity: Entity) -> SignedParts:
    """Part 1 bytes and the detached signature of an RFC 3156 §5 entity."""
    sp = signed_span(entity)
    return SignedParts(bytes(entity.buf[sp.start : sp.end]), sp.signature, sp.micalg)


def encrypted_part(entity: Entity) -> Entity:
    """The part of an RFC 3156 §4 ``multipart/encrypted`` entity that holds the ciphertext."""
    if entity.content_type != "multipart/encrypted":
        raise MalformedError(f"expected multipart/encrypted, got {entity.content_type}")
    proto = (entity.param("protocol") or "").lower()
    if proto != PGP_ENCRYPTED:
        raise MalformedError(f"multipart/encrypted with protocol {proto or 'missing'}, not OpenPGP")
    found = parts(entity, max_parts=16)
    if len(found) != 2:
        raise MalformedError("multipart/encrypted must have exactly two parts")
    control, payload = found
    if control.content_type != PGP_ENCRYPTED or control.body_size > MAX_SIGNATURE_PART:
        raise MalformedError("multipart/encrypted without the 'Version: 1' control part")
    if b"Version: 1" not in control.body:
        raise MalformedError("multipart/encrypted without the 'Version: 1' control part")
    if payload.buf.find(BEGIN_MESSAGE, payload.body_start, payload.end) < 0:
        raise MalformedError("the encrypted part holds no ASCII-armored OpenPGP message")
    return payload


def encrypted_payload(entity: Entity) -> bytes:
    """The armored ciphertext of an RFC 3156 §4 ``multipart/encrypted`` entity."""
    return decode_body(encrypted_part(entity))


def write_ciphertext(part: Entity, write: Callable[[bytes], object]) -> None:
    """The OpenPGP message of :func:`encrypted_part`'s ``part``, as gpg may read it.

    Where the part is plain 7-bit text (as RFC 3156 §4 has it) the armor
    (RFC 9580 §6.2) is removed here, streaming: gpg then reads binary packets,
    about three times faster than its own armor reader. The CRC-24 line is not
    checked (RFC 9580 §6.1: a receiver must not reject on it; the encryption's
    own integrity check is what counts). Otherwise the armored text is written
    as it is, for gpg to read.
    """
    for chunk in ciphertext_chunks(part):
        write(chunk)


def ciphertext_chunks(part: Entity) -> Iterator[bytes]:
    """:func:`write_ciphertext` as an iterator of chunks (the armor found before the first)."""
    buf = part.buf
    if transfer_encoding(part) not in ("7bit", "8bit", "binary"):
        return decoded_chunks(part)
    begin = buf.find(BEGIN_MESSAGE + b"\r\n", part.body_start, part.end)
    head_end = -1 if begin < 0 else buf.find(b"\r\n\r\n", begin, begin + MAX_HEADER_BLOCK)
    end = -1 if head_end < 0 else buf.rfind(b"\r\n" + END_MESSAGE, head_end, part.end)
    if end < 0:
        raise MalformedError("the encrypted part holds no complete ASCII-armored OpenPGP message")
    tail = buf[max(head_end, end - 128) : end]
    crc = tail.rfind(b"\r\n=")
    body_end = end if crc < 0 else end - len(tail) + crc
    return base64_chunks(buf, head_end + 4, body_end)
