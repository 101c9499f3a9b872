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

import contextlib
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
