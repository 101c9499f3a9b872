"""The file helpers of the send pipeline (:mod:`certmail.pipeline`, :mod:`certmail.seal`):
a writer that hashes what it writes, a fan-out to several descriptors, kernel copies
(copy_file_range; :func:`copy_range` is unseal's and the proof bundle writer's too),
CRLF line ends, early write-back (sync_file_range(2)) so a big message's pages
reach the disk while it is still being written, and the private work directory
(:func:`private_dir`) every command works in."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

if TYPE_CHECKING:
    from notary.mime import Buffer

from .mime import FileBuffer
from .rfc3156 import COPY_CHUNK, copy_stream

WRITEBACK = 8 << 20  # bytes between two early write-back requests
_SYNC_FILE_RANGE_WRITE = 2


@contextlib.contextmanager
def private_dir(prefix: str = "certmail-", under: Path | None = None) -> Iterator[Path]:
    """A fresh 0700 directory (in ``under``, made 0700 when missing, else the system's
    temporary directory), removed with what is in it on exit."""
    if under is not None:
        under.mkdir(parents=True, exist_ok=True, mode=0o700)
    d = Path(tempfile.mkdtemp(prefix=prefix, dir=under))
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


@functools.cache
def _sync_file_range() -> Callable[[int, int, int, int], int] | None:
    """libc's sync_file_range(2), or None where there is none (not Linux)."""
    with contextlib.suppress(OSError, AttributeError):
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        fn = libc.sync_file_range
        fn.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
        fn.restype = ctypes.c_int
        return fn  # type: ignore[no-any-return]
    return None


def start_writeback(fd: int, offset: int, length: int) -> None:
    """Start (not wait for) writing a dirty range to disk: sync_file_range(2) on Linux.

    Temporary files are not fsync'd here: durability is the ledger's job
    (:meth:`certmail.ledger.Ledger.enqueue` fsyncs the stored message). Starting
    the write-back early lets the disk work while gpg and Python compute.
    ``length`` 0 means to the end of the file.
    """
    fn = _sync_file_range()
    if fn is not None:
        fn(fd, offset, length, _SYNC_FILE_RANGE_WRITE)


def close_file(f: BinaryIO) -> None:
    """Close a finished temporary file, its write-back to disk started (not awaited)."""
    f.flush()
    start_writeback(f.fileno(), 0, 0)
    f.close()


class HashingWriter:
    """A binary file wrapper that SHA-256s and counts what is written.

    Every :data:`WRITEBACK` bytes it asks the kernel to start writing the new
    range to disk (asynchronously), so the fsync the ledger does when it stores
    the message finds little left to write.
    """

    def __init__(self, f: BinaryIO) -> None:
        self.f = f
        self.digest = hashlib.sha256()
        self.size = 0
        self._synced = 0
        #: Also fed what is written, when set (the DKIM body hash, from the body on).
        self.tap: Any = None

    def write(self, data: bytes) -> int:
        self.digest.update(data)
        if self.tap is not None:
            self.tap.update(data)
        self.size += len(data)
        n = self.f.write(data)
        if self.size - self._synced >= WRITEBACK:
            self.f.flush()
            start_writeback(self.f.fileno(), self._synced, self.size - self._synced)
            self._synced = self.size
        return n


class Fanout:
    """A writer that hashes what is written and sends it to a file and to pipes."""

    def __init__(self, f: BinaryIO, fds: Sequence[int], h: Any) -> None:
        self.f = f
        self.fds = fds
        self.h = h

    def write(self, data: bytes) -> int:
        self.h.update(data)
        self.f.write(data)
        for fd in self.fds:
            write_all(fd, data)
        return len(data)


def write_all(fd: int, data: bytes) -> None:
    """Write all of ``data`` to ``fd`` (a pipe may take less per call)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def copy_file(src: BinaryIO, dst: BinaryIO) -> None:
    """Append the rest of ``src`` to ``dst`` (copy_file_range(2) when available)."""
    try:
        while os.copy_file_range(src.fileno(), dst.fileno(), 1 << 30):
            pass
        return
    except (OSError, AttributeError):
        pass
    copy_stream(src, dst)


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


def crlf(chunk: bytes) -> bytes:
    """LF line ends as CRLF (gpg's armor has LF only; one pass when there is no CR).

    A CR never ends a chunk of armor, so per-chunk conversion is exact.
    """
    if b"\r" in chunk:
        chunk = chunk.replace(b"\r\n", b"\n")
    return chunk.replace(b"\n", b"\r\n")


def file_sha256(path: Path) -> str:
    """Lowercase hex SHA-256 of a file's bytes, streamed."""
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(COPY_CHUNK):
            h.update(chunk)
    return h.hexdigest()
