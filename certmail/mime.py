"""Raw-bytes MIME (RFC 2045, RFC 2046 §5.1.1) and header fields (RFC 5322, RFC 2047).

The MIME reader and the one header-field reader of certmail, over the one
boundary splitter :mod:`notary.mime` (which the relay uses too). Parsing
keeps the exact bytes of every entity, so a signed part can be handed to gpg and
a message hashed as sent (Python's email package would re-serialise them).
Entities are read in place, by offsets into one buffer (``bytes`` or a
read-only ``mmap`` of the message file), and bodies are decoded as streams
(:func:`decode_to`), so a message of hundreds of megabytes is never copied
whole. The header-field readers (the From field read strictly, exactly one mailbox,
RFC 5322 §3.4, by :func:`single_mailbox`) are :mod:`certmail.mimefields`, re-exported
here. This module imports no GnuPG: the bundle verifier uses
it too.
"""

from __future__ import annotations

import binascii
import io
import mmap
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from email.message import Message

from certmail.mimefields import FIELDS as FIELDS
from certmail.mimefields import NOTARY_FIELD as NOTARY_FIELD
from certmail.mimefields import decode_field as decode_field
from certmail.mimefields import header_fields as header_fields
from certmail.mimefields import same_address as same_address
from certmail.mimefields import single_mailbox as single_mailbox
from keys.errors import MalformedError
from notary import fastpath

try:
    # The fast path of base64_chunks: pybase64's SIMD decoder, about 4x binascii's speed
    # (docs/send-open.md, "Big messages"). Without an "=" in the text (padding,
    # after which binascii stops reading) it returns what binascii returns and raises
    # binascii.Error where binascii does: both skip characters outside the alphabet.
    import pybase64 as _pybase64
except ImportError:  # pragma: no cover - a declared dependency
    _pybase64 = None  # type: ignore[assignment]
from notary import mime as rawmime
from notary.mime import Buffer

MAX_HEADER_BLOCK = 256 * 1024
#: Bytes read per step by :func:`is_canonical` and :func:`canonical_chunks`.
CANON_CHUNK = 16 << 20


@dataclass(frozen=True)
class Entity:
    """One MIME entity, read in place: where it lies in ``buf``, and its parsed fields.

    ``buf`` is the whole message (``bytes`` or a read-only ``mmap``); the
    entity is ``buf[start:end]``, its body from ``body_start``. Nothing is
    copied until :attr:`raw`, :attr:`header_block` or :attr:`body` is asked
    for (small entities); big ones are read by offsets (:func:`parts`,
    :func:`decode_to`).
    """

    buf: Buffer
    start: int
    body_start: int
    end: int
    headers: Message
    #: Where the header block ends (its last CRLF included).
    header_end: int

    @property
    def raw(self) -> bytes:
        return bytes(self.buf[self.start : self.end])

    @property
    def header_block(self) -> bytes:
        return bytes(self.buf[self.start : self.header_end])

    @property
    def body(self) -> bytes:
        return bytes(self.buf[self.body_start : self.end])

    @property
    def body_size(self) -> int:
        return self.end - self.body_start

    @property
    def content_type(self) -> str:
        return self.headers.get_content_type()

    def param(self, name: str) -> str | None:
        v = self.headers.get_param(name)
        if v is None or isinstance(v, tuple):
            return None if v is None else str(v[2])
        return str(v)


def canonicalize(raw: bytes) -> bytes:
    """``raw`` with CRLF line ends (messages saved by MUAs often have bare LF)."""
    if is_canonical(raw):
        return raw
    return raw.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def is_canonical(buf: Buffer) -> bool:
    """Whether every LF in ``buf`` is preceded by a CR (:func:`keys.dkim_body.crlf_only`).

    ``bytes`` are tested in place; a file or map is read in chunks (no whole copy).
    """
    from keys.dkim_body import crlf_only

    if isinstance(buf, bytes):
        return crlf_only(buf, 0, len(buf))
    check = CanonicalCheck()
    for i in range(0, len(buf), CANON_CHUNK):
        check.update(buf[i : i + CANON_CHUNK])
        if not check.ok:
            return False
    return True


class CanonicalCheck:
    """:func:`is_canonical` of bytes fed in consecutive pieces (e.g. by a hashing pass)."""

    def __init__(self) -> None:
        self.ok = True
        self._last = b""

    def update(self, data: bytes) -> None:
        if not self.ok or not data:
            return
        from keys.dkim_body import crlf_only

        first = data[:1] == b"\n"  # its CR, if any, ended the piece before
        if first and self._last != b"\r":
            self.ok = False
        elif not crlf_only(data, int(first), len(data)):
            self.ok = False
        self._last = data[-1:]


def canonical_chunks(buf: Buffer) -> Iterator[bytes]:
    """:func:`canonicalize` of ``buf``, a chunk at a time (a CR at a chunk's end waits)."""
    step = CANON_CHUNK
    carry = b""
    for i in range(0, len(buf), step):
        chunk = carry + buf[i : i + step]
        carry = b""
        if chunk.endswith(b"\r") and i + step < len(buf):
            chunk, carry = chunk[:-1], b"\r"
        yield chunk.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    if carry:
        yield carry


def parse_entity(raw: Buffer, start: int = 0, end: int | None = None) -> Entity:
    """Read the entity ``raw[start:end]`` (CRLF canonical): its header block, where its body is."""
    end = len(raw) if end is None else end
    if end - start < 2:  # nothing of the buffer beyond ``end`` is read
        raise MalformedError("not a MIME entity: empty")
    if raw[start : start + 2] == b"\r\n":
        return Entity(raw, start, start + 2, end, Message(), start)
    limit = min(end, start + MAX_HEADER_BLOCK + 4)
    hend = raw.find(b"\r\n\r\n", start, limit)
    if hend < 0:
        if end > limit:
            raise MalformedError("header block too large")
        if raw[end - 2 : end] == b"\r\n" and raw.find(b":", start, end) >= 0:
            hend = end - 2
        else:
            raise MalformedError("not a MIME entity: no end of the header block")
    block = bytes(raw[start : hend + 2])
    first = block.split(b"\r\n", 1)[0]
    if b":" not in first or first[:1] in (b" ", b"\t"):
        raise MalformedError("not a MIME entity: the first line is not a header field")
    headers = header_block_message(block)
    return Entity(raw, start, min(hend + 4, end), end, headers, hend + 2)


def header_block_message(block: bytes) -> Message:
    """The fields of a header block (its last CRLF included) as the email package's
    ``BytesHeaderParser`` reads them (policy compat32: raw 8-bit bytes kept as
    surrogates; email.policy, which would import the header registry at start-up, is
    not needed for it). A block of CRLF lines that are each a field or its
    continuation is split here (:func:`_simple_fields`: the fast path, off with
    ``CERTMAIL_REFERENCE_ONLY=1``); any other block goes to the parser."""
    text = block.decode("ascii", "surrogateescape")  # what BytesParser decodes
    fields = _simple_fields(text) if fastpath.enabled() else None
    if fields is None:
        from email.parser import HeaderParser  # imported when a block needs it

        return HeaderParser().parsestr(text)
    msg = Message()
    source_parse = msg.policy.header_source_parse  # the parser's own (compat32)
    for lines in fields:
        msg.set_raw(*source_parse(lines))
    msg.set_payload("")  # headers only: nothing after the fields (the parser's "")
    return msg


def _simple_fields(text: str) -> list[list[str]] | None:
    """The source lines (CRLF kept, as the parser hands them to the policy) of each
    field of a header block whose line ends are all CRLF and whose lines each start a
    field (``Name:``) or continue one (a space or tab first); None for any other block
    (a bare CR or LF, a line the parser would take for the body or an mbox ``From ``
    line, a nameless field, a continuation first): those are the parser's."""
    if not text.endswith("\r\n"):
        return None
    crlf = text.count("\r\n")
    if text.count("\r") != crlf or text.count("\n") != crlf:
        return None
    fields: list[list[str]] = []
    for line in text[:-2].split("\r\n"):
        if line[:1] in (" ", "\t"):
            if not fields:
                return None
            fields[-1].append(line + "\r\n")
            continue
        # A field starts as the parser's headerRE says: a name of printable ASCII less
        # space and ":" (so no mbox "From " line), then ":". No name is its defect.
        name = line[: max(line.find(":"), 0)]  # none without a colon
        if not name or not name.isascii() or not name.isprintable() or " " in name:
            return None
        fields.append([line + "\r\n"])
    return fields


class TooManyParts(MalformedError):
    """A multipart body with more parts than its reader allows (:func:`part_spans`)."""


def _boundary(entity: Entity) -> bytes:
    boundary = entity.param("boundary")
    if not boundary or len(boundary) > rawmime.MAX_BOUNDARY:
        raise MalformedError(f"{entity.content_type} without a usable boundary parameter")
    return boundary.encode("ascii", "replace")


def part_spans(entity: Entity, *, max_parts: int | None = None) -> list[tuple[int, int]]:
    """Where each body part of a multipart entity lies in ``entity.buf`` (RFC 2046 §5.1.1).

    The split is :func:`notary.mime.split` (the one splitter). More than
    ``max_parts`` parts is a :class:`MalformedError`, found without reading further.
    """
    found = rawmime.split(
        entity.buf, _boundary(entity), entity.body_start, entity.end, max_parts=max_parts
    )
    if max_parts is not None and len(found.parts) > max_parts:
        raise TooManyParts(f"too many parts (more than {max_parts} MIME entities)")
    if not found.closed:
        raise MalformedError("multipart body has no closing boundary (truncated?)")
    if not found.parts:
        raise MalformedError("multipart body has no parts")
    return found.parts


def parts(entity: Entity, *, max_parts: int | None = None) -> list[Entity]:
    """The body parts of a multipart entity, each read in place (no copy)."""
    return [parse_entity(entity.buf, s, e) for s, e in part_spans(entity, max_parts=max_parts)]


def split_multipart(entity: Entity) -> list[bytes]:
    """The raw bytes of each body part of a multipart entity (copies: small entities)."""
    return [bytes(entity.buf[s:e]) for s, e in part_spans(entity)]


def transfer_encoding(entity: Entity) -> str:
    """The entity's Content-Transfer-Encoding, lower case (RFC 2045 §6; default 7bit)."""
    cte = str(entity.headers.get("Content-Transfer-Encoding") or "7bit").strip().lower()
    if cte not in ("base64", "quoted-printable", "7bit", "8bit", "binary"):
        raise MalformedError(f"unknown Content-Transfer-Encoding {cte!r}")
    return cte


def decode_body(entity: Entity) -> bytes:
    """The body of a leaf entity with its Content-Transfer-Encoding removed."""
    out = io.BytesIO()
    decode_to(entity, out.write)
    return out.getvalue()


#: Encoded bytes decoded per step by :func:`decode_to`.
DECODE_CHUNK = 4 << 20
#: Bytes searched per mapped window by :meth:`FileBuffer.find`.
FIND_WINDOW = 32 << 20
_B64_ALPHABET = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/="
_NOT_B64 = bytes(c for c in range(256) if c not in _B64_ALPHABET)


def decode_to(
    entity: Entity, write: Callable[[bytes], object], progress: Callable[[int], None] | None = None
) -> None:
    """Decode the body of a leaf entity into ``write``, a chunk at a time.

    Base64 (RFC 2045 §6.8) goes through :func:`decode_base64`; quoted-printable
    (§6.7) is cut at line ends; 7bit, 8bit and binary bodies pass unchanged.
    ``progress`` sees the encoded bytes read.
    """
    for chunk in decoded_chunks(entity, progress):
        write(chunk)


def decoded_chunks(
    entity: Entity, progress: Callable[[int], None] | None = None
) -> Iterator[bytes]:
    """:func:`decode_to` as an iterator of the decoded chunks (pulled, e.g. by a pipe's writer)."""
    cte = transfer_encoding(entity)
    if cte == "base64":
        yield from base64_chunks(entity.buf, entity.body_start, entity.end, progress)
        return
    for chunk in line_chunks(entity.buf, entity.body_start, entity.end):
        yield binascii.a2b_qp(chunk) if cte == "quoted-printable" else chunk
        if progress is not None:
            progress(len(chunk))


def line_chunks(buf: Buffer, start: int, end: int) -> Iterator[bytes]:
    """``buf[start:end]`` in pieces of about :data:`DECODE_CHUNK`, each cut after a LF."""
    pos = start
    while pos < end:
        stop = min(end, pos + DECODE_CHUNK)
        if stop < end:
            nl = buf.find(b"\n", stop, min(end, stop + MAX_HEADER_BLOCK))
            stop = end if nl < 0 else nl + 1
        yield buf[pos:stop]
        pos = stop


def decode_base64(
    buf: Buffer,
    start: int,
    end: int,
    write: Callable[[bytes], object],
    progress: Callable[[int], None] | None = None,
) -> None:
    """Base64 text ``buf[start:end]`` decoded into ``write`` chunk by chunk (RFC 2045 §6.8).

    Characters outside the base64 alphabet (line breaks, white space) are
    ignored, as decoders do. Chunks end at line ends; where a chunk's
    characters do not make whole 4-character groups (odd line lengths), the
    rest is carried over to the next.
    """
    for out in base64_chunks(buf, start, end, progress):
        write(out)


def base64_chunks(
    buf: Buffer, start: int, end: int, progress: Callable[[int], None] | None = None
) -> Iterator[bytes]:
    """:func:`decode_base64` as an iterator of the decoded chunks."""
    carry = b""
    fast = _pybase64 if fastpath.enabled() else None
    for chunk in line_chunks(buf, start, end):
        data = carry + chunk
        carry = b""
        try:
            if fast is not None and b"=" not in data:
                out = fast.b64decode(data, validate=False)  # the fast path: see _pybase64
            else:
                out = binascii.a2b_base64(data, strict_mode=False)
        except binascii.Error:
            data = data.translate(None, _NOT_B64)
            cut = len(data) - len(data) % 4
            data, carry = data[:cut], data[cut:]
            try:
                out = binascii.a2b_base64(data, strict_mode=False)
            except binascii.Error:
                raise MalformedError("a base64 part is not valid base64") from None
        yield out
        if progress is not None:
            progress(len(chunk))
    if carry:
        raise MalformedError("a base64 part is not valid base64 (it ends in a partial group)")


class FileBuffer:
    """A file read as a :class:`notary.mime.Buffer`: ``find`` and slices by ``pread``.

    The message is never held whole: a slice reads just that range, and
    ``find`` searches in chunks of :data:`DECODE_CHUNK`, so memory stays
    bounded however large the file is.
    """

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.size = os.fstat(fd).st_size

    def __len__(self) -> int:
        return self.size

    def truncate(self, size: int) -> None:
        """Cut the file (opened for writing) after ``size`` bytes: nothing past them is read."""
        self.size = min(self.size, size)
        os.ftruncate(self.fd, self.size)

    def __getitem__(self, index: slice) -> bytes:
        start, stop, step = index.indices(self.size)
        if step != 1:
            raise ValueError("FileBuffer slices have step 1")
        if stop <= start:
            return b""
        return os.pread(self.fd, stop - start, start)

    def find(self, sub: bytes, start: int = 0, end: int | None = None) -> int:
        """The first offset of ``sub`` in ``[start, end)``, or -1 (searched in mapped windows)."""
        end = self.size if end is None else min(end, self.size)
        pos = max(start, 0)
        while pos < end:
            stop = min(end, pos + FIND_WINDOW)
            i = self._find_in(sub, pos, min(end, stop + len(sub) - 1))
            if i >= 0:
                return i
            pos = stop
        return -1

    def rfind(self, sub: bytes, start: int = 0, end: int | None = None) -> int:
        """The last offset of ``sub`` in ``[start, end)``, or -1 (searched from the end)."""
        end = self.size if end is None else min(end, self.size)
        start = max(start, 0)
        stop = end
        while stop > start:
            pos = max(start, stop - DECODE_CHUNK)
            chunk = self[pos : min(end, stop + len(sub) - 1)]
            i = chunk.rfind(sub)
            if i >= 0:
                return pos + i
            stop = pos
        return -1

    def _find_in(self, sub: bytes, start: int, end: int) -> int:
        """``find`` in one window, through a read-only map of just that window.

        The map is dropped at once, so the pages never stay counted against
        this process, and nothing is copied into Python.
        """
        if end - start < (1 << 16):
            i = self[start:end].find(sub)
            return -1 if i < 0 else start + i
        base = start - start % mmap.ALLOCATIONGRANULARITY
        with mmap.mmap(self.fd, end - base, access=mmap.ACCESS_READ, offset=base) as m:
            i = m.find(sub, start - base)
        return -1 if i < 0 else base + i
