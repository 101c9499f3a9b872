"""The streaming gpg pipeline that signs, encrypts and re-verifies a message in one pass.

Signed, then encrypted, over the inner entity of :mod:`certmail.compose`, with
the armor of RFC 4880 §6 / RFC 9580 §6.2, in either RFC 3156 form: ``combined``,
§6.2 (one OpenPGP message that is signed and encrypted; two gpg processes:
``--sign --encrypt``, and ``--decrypt``, which checks the signature as it
decrypts; what ``certmail send`` and campaigns write) or §6.1
(``multipart/signed`` inside the encryption; four gpg processes: sign, encrypt,
decrypt, verify; an option no command uses, kept for the tests of readers).
The inner entity is composed straight into gpg; the processes run at once,
the data flowing through file descriptors, so that the re-verification
DESIGN §5 asks for ("re-verify the bytes before they leave") costs no extra
pass over the message file.
What the check is fed, the armor exactly as written, is :mod:`certmail.selfcheck`.
:class:`EncryptPipeline` has one method per stage; the file helpers it shares with
:mod:`certmail.seal` (hashing writer, kernel copies, early write-back) are :mod:`certmail.fileio`.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from keys.errors import Error, MalformedError, VerificationError
from keys.gpg import GpgProcess, Keyring
from keys.gpg.process import widen_pipe

from .armor import BEGIN_MESSAGE, END_MESSAGE, fast_crc24
from .compose import base64_argv, gnu_base64, new_boundary
from .directio import DirectWriter
from .fileio import (
    Fanout,
    HashingWriter,
    crlf,
    start_writeback,
    write_all,
)
from .msgsize import COMPRESS_LEVEL
from .rfc3156 import COPY_CHUNK, encrypted_head, encrypted_tail, signed_tail
from .selfcheck import ARMOR_WIDTH, ArmorCheck, BodyDecoder, PayloadMatch

REVERIFY_HINT = "this is a bug in certmail or gpg; nothing was sent"

#: The digest preferences of a §6.2 signature (no ``micalg`` names it): SHA-256
#: first. libgcrypt hashes with the CPU's SHA extensions (x86 SHA-NI, ARMv8) at
#: about twice its SHA-512 speed here, and gpg hashes the payload twice, signing
#: and checking (docs/send-open.md, "RFC 3156 §6.2 for every send").
SIGN_DIGESTS = "SHA256 SHA512 SHA384"


# ---------------------------------------------------------------- the pipeline


@dataclass(frozen=True)
class GpgOptions:
    """How a message is sealed with gpg (:func:`certmail.seal.seal`, :class:`EncryptPipeline`).

    ``combined`` (the default): a signed and encrypted message is one OpenPGP
    message signed and encrypted by one gpg run (RFC 3156 §6.2), not
    ``multipart/signed`` inside the encryption (§6.1, ``combined=False``): two
    gpg processes instead of four, and no copy of the inner entity on disk
    (docs/send-open.md, "RFC 3156 §6.2 for every send"). ``external_base64=False``
    keeps the base64 work in this process: no GNU ``base64`` processes, gpg
    armors and the check decodes in gpg (:func:`certmail.compose.gnu_base64`;
    cheaper for small messages, a campaign's worker decides).
    """

    combined: bool = True
    external_base64: bool = True


#: The default (``certmail send``, campaigns): RFC 3156 §6.2, GNU ``base64``
#: processes for the base64 work.
DEFAULT_GPG = GpgOptions()
#: Under this many bytes (body and attachments) ``certmail send`` keeps the base64 work in
#: this process (``external_base64=False``): four ``base64``/``stdbuf`` processes and their
#: version checks cost more than they save (as a campaign's worker decides for its messages).
SMALL_MESSAGE = 4 << 20


class EncryptPipeline:
    """Sign, encrypt, write and re-verify one message in one pass.

    The processes, data flowing through file descriptors:

    - the inner entity is composed (``write_inner``, :func:`certmail.compose.compose_inner`)
      in the feeding thread straight into the pipes of ``sign`` and ``encrypt`` and
      (§6.1 only) into the file ``inner`` (:meth:`_feed_inner`, :class:`Fanout`),
      hashed as it goes: no stage waits for a whole file, no copy of it is held
      in memory;
    - ``sign``: a detached signature over the inner entity (its stdin);
    - ``encrypt`` (with ``compress``, zlib at :data:`certmail.msgsize.COMPRESS_LEVEL`:
      it takes back base64's 8/6 even for incompressible attachments): its stdin gets
      the ``multipart/signed`` head, the inner entity, then the signature part
      once ``sign`` is done (:meth:`_feed`);
    - armor: with GNU ``base64`` and libgcrypt at hand (:mod:`certmail.armor`)
      gpg writes binary straight into ``base64 -w 64`` (:meth:`_start_armor`) and
      the armor is framed here (:meth:`_self_armored`); otherwise gpg armors
      (:meth:`_gpg_armored`);
    - the message file gets the armored ciphertext in CRLF lines (hashed) and
      the check the same bytes, while they are written: with certmail's armor
      each body chunk as ``base64`` wrote it (the written CRLFs turned back into
      LFs, which is that chunk) goes to :class:`certmail.selfcheck.BodyDecoder`,
      which decodes it on its own thread straight into ``decrypt`` (binary input:
      gpg's armor reader costs ~3x more) and takes the CRC-24 line over what it
      decoded; otherwise gpg armors and the armor goes, as written, through
      :class:`certmail.selfcheck.ArmorCheck` to ``decrypt``, which reads it;
    - ``decrypt``: its plaintext must equal the payload byte for byte (:meth:`_drain`,
      :class:`certmail.selfcheck.PayloadMatch`); the signature is verified over
      ``inner`` (:meth:`_sign_and_verify`) while the payload is still being encrypted.

    ``combined`` (RFC 3156 §6.2): no ``sign`` process and no file ``inner``;
    ``encrypt`` signs too (``--sign --encrypt``, digest :data:`SIGN_DIGESTS`) and
    its payload is the inner entity alone; ``decrypt``
    must report exactly one good signature by ``signer`` over that plaintext
    (:meth:`keys.gpg.Keyring.finish_decrypt`), the plaintext still equal to the
    payload.

    The check is one symmetric pass: gpg's public-key step is one operation on a
    session key of a few dozen bytes, so checking "with the session key"
    (``--show-session-key`` / ``--override-session-key``) would save nothing
    measurable; GnuPG 2.2 does not report the session key when it encrypts.
    """

    def __init__(
        self,
        keyring: Keyring,
        inner: Path,
        recipients: Sequence[str],
        *,
        signer: str | None,
        micalg: str | None,
        payload_head: bytes,
        boundary: str,
        compress: bool = False,
        write_inner: Callable[[Any], Any] | None = None,
        body_hash: Any = None,
        options: GpgOptions = DEFAULT_GPG,
    ) -> None:
        """The payload is ``payload_head``, the inner entity and (§6.1) the signature
        part; each piece is handed to :attr:`match` before it goes into ``encrypt``.

        ``write_inner(out)`` writes the inner entity (``out`` has ``write``), in
        the feeding thread while gpg signs and encrypts; what it returns is
        :attr:`composed`. Without it, ``inner`` is an existing file (its bytes are
        read and hashed here). ``compress``: gpg deflates the payload
        (:data:`certmail.msgsize.COMPRESS_LEVEL`). ``body_hash`` (a
        :class:`keys.dkim_body.BodyHash`), when given, is fed the message's body
        as it is written, for its DKIM signature; :attr:`header_block` is then
        the message's header block (its field lines, without the empty line).
        ``options``: the layout (``combined``) and the base64 work (:class:`GpgOptions`).
        """
        self.external_base64 = options.external_base64
        self.body_hash = body_hash
        self.header_block = b""
        #: With ``body_hash``: called with :attr:`header_block` before the message is
        #: written; the message then starts that many bytes into the file, leaving
        #: room for the DKIM-Signature field (:func:`certmail.seal.seal`).
        self.reserve: Callable[[bytes], int] | None = None
        self.write_inner = write_inner
        self.composed: Any = None
        #: An error of ``write_inner`` (bad input, a missing file): raised as it is.
        self.compose_error: BaseException | None = None
        self.compress = compress
        self.combined = options.combined and signer is not None
        self.keyring = keyring
        self.inner = inner
        self.recipients = recipients
        self.signer = signer
        self.micalg = micalg
        self.payload_head = payload_head
        self.boundary = boundary
        self.errors: list[BaseException] = []
        #: The payload as it goes into gpg against the check's plaintext, byte for byte.
        self.match = PayloadMatch()
        self.signature: list[bytes] = []
        self.signature_ready = threading.Event()
        self.inner_done = threading.Event()  # all of the inner entity is in sign and inner
        self.sign_run: GpgProcess | None = None
        self.enc: GpgProcess | None = None
        self.dec: GpgProcess | None = None
        self.b64e: Any = None  # base64 -w 64 (armor), a Popen
        self.armor_tool: str | None = None  # GNU base64, when certmail armors
        self.decoder: BodyDecoder | None = None  # the check's decoder of certmail's armor

    def run(self, message: Path, outer: Sequence[str]) -> tuple[str, int]:
        """Write the ``multipart/encrypted`` message with ``outer`` fields; (sha256, size)."""
        try:
            try:
                self._start()
                self._start_armor()
                threads = [
                    threading.Thread(target=self._feed, daemon=True),
                    threading.Thread(target=self._drain, daemon=True),
                ]
                if self.sign_run is not None:
                    threads.append(threading.Thread(target=self._sign_and_verify, daemon=True))
                for t in threads:
                    t.start()
                result = self._write_message(message, outer)
                for t in threads:
                    t.join()
                if self.compose_error is not None:
                    raise self.compose_error
                self._finish()
            except BaseException:
                # What went wrong first: the inner entity could not be written (a
                # missing attachment, a body that is not text) is not a failed check.
                self._stop()
                if self.compose_error is not None:
                    raise self.compose_error from None
                raise
        except (VerificationError, MalformedError) as e:
            if e is self.compose_error:
                raise
            raise Error(
                f"refusing to send: the finished message did not re-verify ({e.message})",
                hint=REVERIFY_HINT,
            ) from e
        finally:
            self._stop()
        return result

    def _start(self) -> None:
        """Start the processes: sign, encrypt, the base64 coders, decrypt."""
        if self.signer is not None and not self.combined:
            self.sign_run = self.keyring.start_sign_detached(subprocess.PIPE, self.signer)
        tool = gnu_base64(external=self.external_base64)
        self_armor = tool is not None and fast_crc24()
        self.enc = self.keyring.start_encrypt(
            self.recipients,
            armor=not self_armor,
            compress=self.compress,
            compress_level=COMPRESS_LEVEL,
            signer=self.signer if self.combined else None,
            digests=SIGN_DIGESTS if self.combined else None,
        )
        if self_armor:
            self.armor_tool = tool
        # Fed by BodyDecoder (certmail's armor), or gpg's armor as written (ArmorCheck).
        self.dec = self.keyring.start_decrypt()

    def _start_armor(self) -> None:
        """With certmail's armor: gpg's binary ciphertext straight into ``base64 -w 64``,
        and the check's decoder (started here, after :meth:`_start`, so that the
        tests can put a tampering relay between gpg and ``base64``)."""
        if self.armor_tool is None:
            return
        assert self.enc is not None and self.enc.stdout is not None and self.dec is not None
        assert self.dec.stdin is not None
        self.b64e = subprocess.Popen(
            base64_argv(self.armor_tool, "-w", str(ARMOR_WIDTH)),
            stdin=self.enc.stdout,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        self.enc.stdout.close()  # base64 has it now: its EOF is gpg's
        widen_pipe(self.b64e.stdout.fileno())
        self.decoder = BodyDecoder(os.dup(self.dec.stdin.fileno()))  # the decoder's own
        self.dec.stdin.close()

    def _sign_and_verify(self) -> None:
        """Collect the signature as soon as gpg has it, then verify it over ``inner``."""
        assert self.sign_run is not None
        try:
            try:
                self.inner_done.wait()  # finishing closes sign's stdin: only once all is in
                signature, used = self.keyring.finish_sign_detached(self.sign_run)
                if used != self.micalg:
                    raise Error(
                        f"gpg signed with {used}, not the announced {self.micalg}",
                        hint=REVERIFY_HINT,
                    )
                self.signature.append(signature)
            finally:
                self.signature_ready.set()
            self.keyring.verify_detached_file(self.inner, signature)
        except BaseException as e:  # reported by the main thread
            self.errors.append(e)

    def _feed(self) -> None:
        """The payload into ``encrypt``: head, the inner entity, the signature part.

        The inner entity goes, as it is written (:meth:`_feed_inner`), into
        ``encrypt``, into ``sign`` and into the file ``inner`` (the signature is
        verified over it once gpg has made it).
        """
        assert self.enc is not None and self.enc.stdin is not None
        stdin = self.enc.stdin
        fd = stdin.fileno()
        try:
            self.match.update(self.payload_head)
            write_all(fd, self.payload_head)
            self._feed_inner(fd)
            if self.sign_run is not None:
                self.signature_ready.wait()
                if not self.signature:
                    return  # the signing failed: reported by _sign_and_verify
                tail = signed_tail(self.signature[0], self.boundary)
                self.match.update(tail)
                write_all(fd, tail)
        except BaseException as e:  # reported by the main thread
            self.errors.append(e)
        finally:
            self.match.finish()
            self.inner_done.set()
            if not stdin.closed:
                stdin.close()

    def _feed_inner(self, fd: int) -> None:
        """The inner entity into the pipe ``fd``, and the hash; signed in the §6.1
        form, also into ``sign``'s stdin and the file ``inner`` (the detached
        signature is checked over it). §6.2 and unsigned messages write no file."""
        sign_in = self.sign_run.stdin if self.sign_run is not None else None
        try:
            fds = [fd] if sign_in is None else [fd, sign_in.fileno()]
            if self.write_inner is None:
                with self.inner.open("rb") as src:
                    while chunk := src.read(COPY_CHUNK):
                        self.match.update(chunk)
                        for dst in fds:
                            write_all(dst, chunk)
                return
            with contextlib.ExitStack() as files:
                f = None if sign_in is None else files.enter_context(self.inner.open("wb"))
                fanout = Fanout(f, fds, self.match)
                try:
                    self.composed = self.write_inner(fanout)
                except BaseException as e:  # a gpg that died (a broken pipe) says why itself
                    if not isinstance(e, BrokenPipeError):
                        self.compose_error = e
                    raise
                if f is not None:
                    f.flush()
        finally:
            if sign_in is not None and not sign_in.closed:
                with contextlib.suppress(BrokenPipeError):
                    sign_in.close()
            self.inner_done.set()

    def _drain(self) -> None:
        """Compare the plaintext the verifying ``decrypt`` gives back with the payload."""
        assert self.dec is not None and self.dec.stdout is not None
        with self.dec.stdout as out:
            self.match.drain(out, COPY_CHUNK)

    def _write_message(self, message: Path, outer: Sequence[str]) -> tuple[str, int]:
        """The message file: outer fields, the armored ciphertext in CRLF lines, the close.

        The armor goes, byte for byte as written, into the check as well. When
        certmail armors (``base64 -w 64``), the check is fed each body chunk as
        ``base64`` wrote it, before its LFs became CRLFs: exactly what turning
        the written CRLFs back into LFs gives (a chunk with a CR is refused), so
        the written bytes need not be converted back (:meth:`_self_armored`).
        """
        assert self.enc is not None and self.dec is not None
        eb = new_boundary()
        with DirectWriter(message) as out:
            w = HashingWriter(out)  # type: ignore[arg-type]
            head = encrypted_head(eb, outer)
            if self.body_hash is not None:
                cut = head.index(b"\r\n\r\n")  # our own fields: no empty line before
                self.header_block = head[: cut + 2]
                if self.reserve is not None:
                    out.seek(self.reserve(self.header_block))
                w.write(head)
                self.body_hash.update(head[cut + 4 :])
                w.tap = self.body_hash
            else:
                w.write(head)
            if self.decoder is not None:
                self._self_armored(w)
            else:
                self._gpg_armored(w)
            w.write(encrypted_tail(eb))
            out.flush()
            start_writeback(out.fileno(), 0, 0)
        return w.digest.hexdigest(), w.size

    def _self_armored(self, w: HashingWriter) -> None:
        """The armor framed here around ``base64 -w 64``'s body; each body chunk, as
        written, also to the check's decoder (:class:`certmail.selfcheck.BodyDecoder`),
        whose CRC-24 of the decoded ciphertext is the armor's checksum line."""
        assert self.b64e is not None and self.decoder is not None
        source = self.b64e.stdout
        assert source is not None
        w.write(BEGIN_MESSAGE + b"\r\n\r\n")
        last = b"\n"
        with source:
            while chunk := source.read(COPY_CHUNK):
                # No test for a CR here: the decoder accepts nothing but base64
                # characters and LFs, so the CRLFs written turn back into this chunk.
                w.write(chunk.replace(b"\n", b"\r\n"))
                self.decoder.put(chunk)
                last = chunk[-1:]
        try:
            crc_line = self.decoder.close()  # all decoded, into the decrypt; its stdin closed
        except MalformedError as e:
            # Raised by _finish after the processes' own errors (an encryption that
            # died half-way leaves a broken last line: its cause is gpg's message).
            self.errors.append(e)
            return
        end = b"%s\r\n%s\r\n" % (crc_line, END_MESSAGE)
        w.write(end if last == b"\n" else b"\r\n" + end)

    def _gpg_armored(self, w: HashingWriter) -> None:
        """gpg's own armor, in CRLF lines, to the message and (:class:`ArmorCheck`) the check."""
        assert self.enc is not None and self.dec is not None
        assert self.dec.stdin is not None and self.enc.stdout is not None
        check = ArmorCheck(self.dec.stdin)
        last = b""
        with self.enc.stdout as source:
            while chunk := source.read(COPY_CHUNK):
                chunk = crlf(chunk)
                w.write(chunk)
                check.write(chunk)
                last = chunk[-2:]
        if last != b"\r\n":
            w.write(b"\r\n")
        check.close()

    def _finish(self) -> None:
        """Every process succeeded, and the decryption gave back exactly the payload."""
        assert self.enc is not None and self.dec is not None
        self.keyring.finish_encrypt(self.enc, signed=self.combined)
        if self.errors:
            raise self.errors[0]
        self.keyring.finish_decrypt(self.dec, signed_by=self.signer if self.combined else None)
        if self.b64e is not None and self.b64e.wait() != 0:
            raise VerificationError("base64 failed to encode the ciphertext")
        if not self.match.equal:
            raise VerificationError("the encrypted bytes do not decrypt to what was signed")

    def _stop(self) -> None:
        """Kill whatever still runs (after an error; a no-op after success)."""
        for run in (self.sign_run, self.enc, self.dec):
            if run is not None:
                run.kill()
        if self.decoder is not None:
            self.decoder.abort()
        if self.b64e is not None and self.b64e.poll() is None:
            self.b64e.kill()
            self.b64e.wait()
