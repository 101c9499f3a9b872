"""A big message file written and read past the page cache (``O_DIRECT``), issue 16.

Writing a file through the page cache costs the kernel a copy into freshly
allocated page-cache pages, and on the development VM that copy is the single
largest item of a big send: ``perf`` of a 100 MB send put 18.6 % of all samples
in ``copy_folio_from_iter_atomic`` under ``ext4_buffered_write_iter`` (the
197 MB message file), and ``dd`` of 200 MB took 0.41 s of system CPU buffered
against 0.08 s with ``oflag=direct``. Reading it back cold costs the same kind
of copy (0.17 s buffered, 0.02 s ``iflag=direct``). So the message file of an
encrypted send (:class:`DirectWriter`, :mod:`certmail.pipeline`) is written with
``O_DIRECT`` from an aligned buffer, and SMTP DATA reads it the same way
(:func:`read_chunks`, :mod:`certmail.smtpdata`).

Both fall back to ordinary I/O where ``O_DIRECT`` is refused (``EINVAL`` at
open or at a transfer: file systems without it, e.g. tmpfs before Linux 6.6), and with
``CERTMAIL_REFERENCE_ONLY=1`` (:mod:`notary.fastpath`). The bytes are the same
either way; only the kernel's copy differs. Durability is unchanged: the ledger
still fsyncs the stored file (:meth:`certmail.ledger.Ledger.enqueue`).
"""

from __future__ import annotations

import contextlib
import errno
import mmap
import os
from collections.abc import Iterator
from pathlib import Path

from notary import fastpath

__all__ = ["ALIGN", "BUFFER", "DirectWriter", "read_chunks"]

#: The alignment of ``O_DIRECT`` transfers (offset, length, buffer address): a page,
#: which is a multiple of every block size Linux file systems use.
ALIGN = 4096
#: Bytes gathered before one direct write.
BUFFER = 4 << 20
_REFUSED = (errno.EINVAL, errno.EOPNOTSUPP, errno.ENOTSUP)


def _open_direct(path: Path, flags: int) -> int | None:
    """``path`` opened with ``O_DIRECT`` added to ``flags``, or None where it cannot be."""
    direct = getattr(os, "O_DIRECT", 0)
    if not direct or not fastpath.enabled():
        return None
    try:
        return os.open(path, flags | direct | os.O_CLOEXEC)
    except OSError as e:
        if e.errno in _REFUSED:
            return None
        raise


class DirectWriter:
    """A new file at ``path`` written with ``O_DIRECT``: ``write``, ``seek`` (before the
    first write: the room a DKIM field is written into later), ``flush``, ``fileno``,
    ``close`` (also as a context manager).

    Bytes gather in a page-aligned buffer of :data:`BUFFER` bytes that goes to the
    disk in one direct write; the tail that does not fill an aligned block is
    written through the page cache at :meth:`close`. The file is created 0600
    (like :func:`open`'s files here, it lives in a private work directory).
    """

    def __init__(self, path: Path) -> None:
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        self.direct = _open_direct(path, os.O_WRONLY)
        self.buf = mmap.mmap(-1, BUFFER)  # anonymous: page-aligned, zero-filled
        self.fill = 0  # bytes in buf
        self.base = 0  # the file offset of buf[0]
        self.closed = False

    def __enter__(self) -> DirectWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def fileno(self) -> int:
        """The ordinary descriptor (for sync_file_range: a no-op on what went direct)."""
        return self.fd

    def seek(self, offset: int) -> None:
        """Start the file's content ``offset`` bytes in (zeros before it, to be overwritten)."""
        if self.base or self.fill:
            raise ValueError("DirectWriter.seek only before the first write")
        self.write(bytes(offset))

    def write(self, data: bytes | memoryview) -> int:
        view = memoryview(data)
        n = len(view)
        while view:
            k = min(len(view), BUFFER - self.fill)
            self.buf[self.fill : self.fill + k] = view[:k]
            self.fill += k
            view = view[k:]
            if self.fill == BUFFER:
                self._drain(BUFFER)
        return n

    def flush(self) -> None:
        """Nothing to do: the buffer goes out when full and at :meth:`close`."""

    def _drain(self, length: int) -> None:
        """Write ``buf[:length]`` (a multiple of :data:`ALIGN`, or all at close) at ``base``."""
        view = memoryview(self.buf)[:length]
        try:
            self._write_view(view, length)
        finally:
            view.release()
        self.base += length
        rest = self.fill - length
        if rest:
            self.buf.move(0, length, rest)
        self.fill = rest

    def _write_view(self, view: memoryview, length: int) -> None:
        if self.direct is not None and length % ALIGN == 0:
            try:
                self._write_at(self.direct, view, self.base)
                return
            except OSError as e:
                if e.errno not in _REFUSED:
                    raise
                os.close(self.direct)  # refused after all: the page cache from here on
                self.direct = None
        self._write_at(self.fd, view, self.base)

    @staticmethod
    def _write_at(fd: int, view: memoryview, offset: int) -> None:
        done = 0
        while done < len(view):
            done += os.pwrite(fd, view[done:], offset + done)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        try:
            whole = self.fill - self.fill % ALIGN
            if whole:
                self._drain(whole)
            if self.fill:  # the tail, not a whole block: through the page cache
                self._drain(self.fill)
        finally:
            if self.direct is not None:
                os.close(self.direct)
            os.close(self.fd)
            self.buf.close()


def read_chunks(path: Path, size: int) -> Iterator[bytes]:
    """The bytes of ``path`` in pieces of ``size`` (a multiple of :data:`ALIGN`),
    read with ``O_DIRECT`` where it can be, else through the page cache."""
    fd = _open_direct(path, os.O_RDONLY)
    if fd is None:
        with path.open("rb") as f:
            while chunk := f.read(size):
                yield chunk
        return
    buf = mmap.mmap(-1, size)
    try:
        offset = 0
        while True:
            try:
                n = os.preadv(fd, [buf], offset)
            except OSError as e:
                if e.errno not in _REFUSED:
                    raise
                with path.open("rb") as f:  # refused after all: the rest through the cache
                    f.seek(offset)
                    while chunk := f.read(size):
                        yield chunk
                return
            if not n:
                return
            yield buf[:n]
            offset += n
    finally:
        with contextlib.suppress(OSError):
            os.close(fd)
        buf.close()
