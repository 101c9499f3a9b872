"""What the send-side self-check (DESIGN §5) is fed: the armor exactly as written.

:class:`certmail.pipeline.EncryptPipeline` writes the armored ciphertext to the
message file and, chunk by chunk as it is written, gives the same bytes to the
check, a ``gpg --decrypt`` that runs at the same time as the encryption (both
cores work):

- :class:`BodyDecoder` (certmail's own armor, GNU ``base64 -w 64``): each body
  chunk as ``base64`` wrote it (LF lines; the message file gets the same chunk
  with CRLF line ends) is decoded here with pybase64, on a thread of its own,
  and the ciphertext goes straight into the decrypt; the armor's CRC-24 line is
  taken over that decoded ciphertext, i.e. over what the written armor decodes to;
- :class:`ArmorCheck` (gpg's own armor, without GNU ``base64`` or libgcrypt): every
  byte to ``gpg --decrypt``, which reads the armor itself.

Both are fail-closed: armor that is not exactly what a strict decoder reads
raises :class:`keys.errors.MalformedError` and nothing leaves.
"""

from __future__ import annotations

import collections
import contextlib
import hashlib
import os
import queue
import threading
from typing import IO

import pybase64

from keys.errors import MalformedError

from .armor import Crc24
from .fileio import write_all

#: Base64 characters per armor line (``base64 -w 64``; RFC 4880 §6.3 allows up to 76).
ARMOR_WIDTH = 64
_LINE = ARMOR_WIDTH + 1  # the characters and LF
_BYTES = ARMOR_WIDTH // 4 * 3  # ciphertext bytes per full line


class BodyDecoder:
    """The check's feed for certmail's own armor: decode the body as written, on a thread.

    :meth:`put` (the writing thread) hands over each chunk of the armor body as
    ``base64 -w 64`` wrote it, the very bytes written to the message with their
    LFs as CRLFs; the thread decodes them, takes the CRC-24 of the ciphertext
    and writes it to ``dst`` (the decrypt's stdin, a file descriptor). As strict
    as GNU ``base64 -d`` and stricter: every full line is 64 alphabet characters
    and a LF (pybase64's fast decoder skips what is not in the alphabet, so the
    decoded length must be exactly 48 bytes a line), the last line (1-64
    characters, its padding) is decoded with ``validate=True``. :meth:`close`
    waits for the thread and raises what it found.
    """

    def __init__(self, dst: int, *, depth: int = 8) -> None:
        """``dst`` is this decoder's own descriptor (a dup): the thread closes it when done,
        so no other thread can close it under a write."""
        self.fd = dst
        self.dst: int | None = dst
        self.crc = Crc24()
        self.error: BaseException | None = None
        self.held = b""  # the start of a line whose end has not come yet
        self.size = 0  # ciphertext bytes decoded
        self._q: queue.Queue[bytes | None] = queue.Queue(depth)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def put(self, chunk: bytes) -> None:
        """The next chunk of the body (blocks while ``depth`` chunks wait)."""
        self._q.put(chunk)

    def close(self) -> bytes:
        """All is in: wait for the decoding; the armor's CRC-24 line (``=XXXX``)."""
        self._q.put(None)
        self._thread.join()
        if self.error is not None:
            raise self.error
        return self.crc.checksum_line()

    def abort(self) -> None:
        """Stop the thread after a failure elsewhere (never blocks for long)."""
        self.error = self.error or MalformedError("the check was stopped")
        with contextlib.suppress(queue.Full):
            self._q.put(None, timeout=5)  # the thread drains once it sees the error

    def _run(self) -> None:
        while True:
            chunk = self._q.get()
            if self.error is None:
                try:
                    if chunk is None:
                        self._last(self.held)
                    else:
                        self._chunk(chunk)
                except BaseException as e:  # raised by close() in the writing thread
                    self.error = e  # the rest is only drained: the writer then raises it
            if chunk is None:
                break
        self.dst = None
        os.close(self.fd)  # the decrypt's EOF

    def _chunk(self, chunk: bytes) -> None:
        """Decode the full lines; the last one is held back until more comes (the
        body's last line may be 64 characters with its padding)."""
        view = memoryview(chunk)
        if self.held:
            need = _LINE - len(self.held)
            self.held += bytes(view[:need])
            view = view[need:]
            if not view:
                return
            self._lines(self.held)  # more follows: not the last line
            self.held = b""
        cut = len(view) - (len(view) % _LINE or _LINE)
        if cut > 0:
            self._lines(view[:cut])
        self.held = bytes(view[max(cut, 0) :])

    def _lines(self, data: bytes | memoryview) -> None:
        """Full lines: 64 alphabet characters and LF each, 48 bytes of ciphertext."""
        n = len(data) // _LINE
        if bytes(data[_LINE - 1 :: _LINE]) != b"\n" * n:
            raise MalformedError("the armor has a line that is not 64 characters")
        try:
            out = pybase64.b64decode(data)
        except ValueError as e:
            raise MalformedError(f"the armor is not valid base64 ({e})") from None
        if len(out) != n * _BYTES:  # a character not in the alphabet was skipped
            raise MalformedError("the armor is not valid base64")
        self._out(out)

    def _last(self, line: bytes) -> None:
        """The last line: 1-64 characters and its padding, validated; or none."""
        if line.endswith(b"\n"):
            line = line[:-1]
        if b"\n" in line or len(line) > ARMOR_WIDTH:
            raise MalformedError("the armor has a line that is not 64 characters")
        try:
            out = pybase64.b64decode(line, validate=True)
        except ValueError as e:
            raise MalformedError(f"the armor's last line is not valid base64 ({e})") from None
        if out:
            self._out(out)

    def _out(self, data: bytes) -> None:
        self.crc.update(data)
        self.size += len(data)
        if self.dst is not None:
            try:
                write_all(self.dst, data)
            except BrokenPipeError:
                self.dst = None  # the decrypt failed: finish_decrypt says why


class ArmorCheck:
    """Feeds gpg's armored ciphertext, as written to the message, to the verifying decrypt,
    which reads the armor itself (certmail armors wherever GNU ``base64`` and libgcrypt
    are at hand, :class:`BodyDecoder`; this is the path without them, or with
    ``CERTMAIL_REFERENCE_ONLY``)."""

    def __init__(self, dst: IO[bytes]) -> None:
        self.dst: IO[bytes] | None = dst

    def write(self, chunk: bytes) -> None:
        if self.dst is not None and chunk:
            try:
                self.dst.write(chunk)
            except BrokenPipeError:
                self.dst = None  # the decrypt failed: finish_decrypt says why

    def close(self) -> None:
        if self.dst is not None:
            with contextlib.suppress(BrokenPipeError):
                self.dst.close()


class PayloadMatch:
    """The payload as it goes into gpg against the plaintext the check's decrypt gives
    back, compared byte for byte instead of SHA-256'd twice (issue 16: the two hashes
    were 274 MB of SHA-256 for a 100 MB attachment, ~0.16 CPU s; ``bytes ==`` is a
    ``memcmp``).

    The feeding thread calls :meth:`update` with each payload chunk *before* writing
    it to gpg (as :class:`certmail.fileio.Fanout` does its hash), so a plaintext byte
    is never read before the payload byte it must equal is held here. The chunks are
    held by reference until the plaintext has passed them, at most ``window`` bytes;
    beyond that (a gpg that buffers more than the pipes do) the rest of both sides is
    SHA-256'd from the same offset on, so memory stays bounded and nothing waits.
    :meth:`drain` (the draining thread) reads the plaintext in pieces that line up
    with the held chunks; :attr:`equal` is the verdict once both sides are done.
    """

    def __init__(self, window: int = 64 << 20) -> None:
        self._cond = threading.Condition()
        self._held: collections.deque[bytes] = collections.deque()
        self._held_size = 0
        self._window = window
        self._split: int | None = None  # the offset from which both sides are hashed
        self._fed = 0
        self._done = False  # the payload is complete (or its feeding stopped)
        self._tail_fed = hashlib.sha256()
        self._tail_plain = hashlib.sha256()
        self._plain = 0  # plaintext bytes read
        self._differs = False

    def update(self, data: bytes) -> None:
        """The next payload bytes (the feeding thread, before they go into gpg)."""
        if not data:
            return
        data = bytes(data)
        with self._cond:
            if self._split is None and self._held_size + len(data) <= self._window:
                self._held.append(data)
                self._held_size += len(data)
                self._fed += len(data)
                self._cond.notify_all()
                return
            if self._split is None:
                self._split = self._fed
            self._fed += len(data)
        self._tail_fed.update(data)

    def finish(self) -> None:
        """No more payload (also after a failed feed: the drain stops waiting)."""
        with self._cond:
            self._done = True
            self._cond.notify_all()

    def _next(self) -> bytes | None:
        """The held chunk the next plaintext bytes must equal; None: hash from here on."""
        with self._cond:
            while not self._held and self._split is None and not self._done:
                self._cond.wait()
            if not self._held:
                return None
            want = self._held.popleft()
            self._held_size -= len(want)
            return want

    def drain(self, src: IO[bytes], chunk: int) -> None:
        """Read ``src`` (the decrypt's plaintext) to its end, comparing as it goes."""
        while True:
            want = self._next()
            if want is None:
                break
            got = src.read(len(want))
            self._plain += len(got)
            if got != want:
                self._differs = True
                if not got:
                    return  # the plaintext ended early
        while data := src.read(chunk):
            self._plain += len(data)
            self._tail_plain.update(data)

    @property
    def equal(self) -> bool:
        """Whether the plaintext was exactly the payload (once both sides are done)."""
        with self._cond:
            fed, split = self._fed, self._split
        if self._differs or self._plain != fed:
            return False
        return split is None or self._tail_fed.digest() == self._tail_plain.digest()
