"""The leaves of an opened message (RFC 2045/2046): each part decoded, small ones in
memory and big ones into files, within bounds on nesting and on the number of entities.

:class:`Walk` collects the leaves of the decrypted, verified entity that
:mod:`certmail.unseal` hands it; :func:`sort_parts` picks out the body and the
manifest. Pure: no GnuPG.
"""

from __future__ import annotations

import codecs
import hashlib
import io
import json
import os
from dataclasses import dataclass
from email.message import Message
from pathlib import Path
from typing import Any, BinaryIO

from keys.errors import MalformedError

from .compose import MANIFEST_TYPE, Progress
from .mime import Entity, TooManyParts, decode_body, decode_to, parts
from .protected import strip_legacy_display, without_legacy_display

__all__ = ["INLINE", "MAX_DEPTH", "MAX_MANIFEST", "MAX_PARTS", "Part", "Walk", "sort_parts"]

MAX_DEPTH = 20  # MIME nesting
# MIME entities (multipart containers and leaves) one message may hold. With
# the nesting bound this also bounds the walk's work: every entity is parsed
# once, and its bytes are copied at most MAX_DEPTH times.
MAX_PARTS = 1000
#: Parts up to this many encoded bytes are decoded in memory; bigger ones into files.
INLINE = 1 << 20
MAX_MANIFEST = 16 << 20


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


def sort_parts(
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


class Walk:
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
        # 0600: the file may become the saved attachment itself (linked, attachments.py).
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        with os.fdopen(fd, "wb") as f:

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
