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
import io
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence
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
    """A writer that hashes what is written and sends it to pipes and (``f``) a file."""

    def __init__(self, f: BinaryIO | None, fds: Sequence[int], h: Any) -> None:
        self.f = f
        self.fds = fds
        self.h = h

    def write(self, data: bytes) -> int:
        self.h.update(data)
        if self.f is not None:
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


class ChunkReader(io.RawIOBase):
    """A read-only binary file whose bytes are the chunks of an iterator, pulled as read
    (e.g. ciphertext taken out of its armor while gpg reads it from a pipe). An
    exception of the iterator is raised by ``read``."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        super().__init__()
        self._chunks = iter(chunks)
        self._rest = b""

    def readable(self) -> bool:
        return True

    def close(self) -> None:
        """Closed, and so is the iterator (a generator's clean-up runs now)."""
        close = getattr(self._chunks, "close", None)
        if close is not None:
            close()
        super().close()

    def read(self, size: int | None = -1) -> bytes:
        """Up to ``size`` bytes (all the rest: -1 or None); b"" at the end."""
        if size is None or size < 0:
            out, self._rest = self._rest + b"".join(self._chunks), b""
            return out
        while not self._rest:
            nxt = next(self._chunks, None)
            if nxt is None:
                return b""
            self._rest = nxt
        if len(self._rest) <= size:
            out, self._rest = self._rest, b""
            return out
        out, self._rest = self._rest[:size], self._rest[size:]
        return out

    def readinto(self, b: Any) -> int:
        data = self.read(len(b))
        b[: len(data)] = data
        return len(data)


#: Bytes a :class:`RangeReader` reads at a time, whatever ``read`` is asked for.
RANGE_STEP = 8 << 20


class RangeReader(io.RawIOBase):
    """``buf[start:end]`` as a read-only binary file for a copier that reads until b""
    (python-gnupg's): ``read`` returns the next :data:`RANGE_STEP` bytes whatever size
    it is asked for, so the copier needs the GIL once per step, not once per
    megabyte, while another thread decodes."""

    def __init__(self, buf: Buffer, start: int, end: int) -> None:
        super().__init__()
        self._buf = buf
        self._pos = start
        self._end = end

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
        stop = min(self._end, self._pos + RANGE_STEP)
        out = bytes(self._buf[self._pos : stop])
        self._pos = stop
        return out


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
