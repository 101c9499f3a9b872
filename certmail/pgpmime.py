"""RFC 3156 PGP/MIME with RFC 9788 header protection and an Autocrypt header.

Build: ``multipart/signed; micalg=pgp-sha256; protocol="application/pgp-signature"``
around the inner entity of :mod:`certmail.compose` (the signed bytes are that
entity exactly, CRLF canonical, RFC 3156 §5), and ``multipart/encrypted;
protocol="application/pgp-encrypted"`` around its ASCII-armored ciphertext (§4).
When the payload is encrypted, the outer Subject is the RFC 9788 obscured value
``[...]``; the real header fields live in the cryptographic payload. The
``Autocrypt`` header (Autocrypt Level 1 §2.1) carries the sender's public key.

Parse: a strict raw-bytes MIME splitter, so the exact bytes of a signed part
can be handed to gpg (Python's email package would re-serialise them).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from email.message import Message
from pathlib import Path
from typing import Any, BinaryIO, Literal

from keys.errors import Error, MalformedError, VerificationError
from keys.gpg import Keyring, SignatureInfo

from .armor import BEGIN_MESSAGE, END_MESSAGE, Crc24, fast_crc24
from .compose import (
    MANIFEST_TYPE,
    Headers,
    Manifest,
    Progress,
    ScanRecord,
    _base64_process,
    canonical_text,
    compose_inner,
    gnu_base64,
    header_lines,
    new_boundary,
)
from .mime import (
    MAX_HEADER_BLOCK,
    Entity,
    canonicalize,
    decode_body,
    parse_entity,
    split_multipart,
)

OBSCURED_SUBJECT = "[...]"  # RFC 9788 §4.5 recommended obscured Subject
PGP_ENCRYPTED = "application/pgp-encrypted"
PGP_SIGNATURE = "application/pgp-signature"
_COPY = 1 << 20


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


def write_header_block(out: BinaryIO, lines: Iterable[str]) -> None:
    """Field lines, then the blank line that ends a header block."""
    out.write(("\r\n".join(lines) + "\r\n\r\n").encode("ascii"))


def copy_stream(src: BinaryIO, out: BinaryIO) -> None:
    while True:
        chunk = src.read(_COPY)
        if not chunk:
            return
        out.write(chunk)


def signed_head(micalg: str, boundary: str, fields: Sequence[str] = ()) -> bytes:
    """A ``multipart/signed`` entity up to where its signed part 1 begins."""
    ct = (f'Content-Type: multipart/signed; micalg="{micalg}";\r\n'
          f' protocol="{PGP_SIGNATURE}"; boundary="{boundary}"')
    return (("\r\n".join([*fields, ct]) + "\r\n\r\n").encode("ascii")
            + f"This is an OpenPGP/MIME signed message (RFC 3156).\r\n--{boundary}\r\n".encode())


def signed_tail(signature: bytes, boundary: str) -> bytes:
    """The rest of a ``multipart/signed`` entity after part 1: the signature part."""
    sig = signature.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    return (
        f"\r\n--{boundary}\r\n".encode()
        + f'Content-Type: {PGP_SIGNATURE}; name="signature.asc"\r\n'
        'Content-Description: OpenPGP digital signature\r\n'
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

    ``header_lines`` precede the Content-Type (outer message fields when this is
    the top-level entity). The bytes of ``signed`` must be those ``signature``
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
    return f"\r\n--{boundary}--\r\n".encode()


def write_encrypted(out: BinaryIO, ciphertext: BinaryIO, fields: Sequence[str] = ()) -> None:
    """A ``multipart/encrypted`` entity around ASCII-armored ``ciphertext`` (RFC 3156 §4)."""
    b = new_boundary()
    out.write(encrypted_head(b, fields))
    last = b""
    while True:
        chunk = ciphertext.read(_COPY)
        if not chunk:
            break
        # gpg writes LF; the message is CRLF canonical. A CR never ends a chunk
        # of armor, so per-chunk conversion is exact.
        chunk = _crlf(chunk)
        out.write(chunk)
        last = chunk[-2:]
    if last != b"\r\n":
        out.write(b"\r\n")
    out.write(encrypted_tail(b))


def _crlf(chunk: bytes) -> bytes:
    """LF line ends as CRLF (gpg's armor has LF only; one pass when there is no CR)."""
    if b"\r" in chunk:
        chunk = chunk.replace(b"\r\n", b"\n")
    return chunk.replace(b"\n", b"\r\n")


# ---------------------------------------------------------------- parsing


@dataclass(frozen=True)
class SignedParts:
    """The pieces of a ``multipart/signed`` entity, exact bytes."""

    signed: bytes  # part 1, exactly as covered by the signature
    signature: bytes
    micalg: str | None


def signed_parts(entity: Entity) -> SignedParts:
    """Part 1 bytes and the detached signature of an RFC 3156 §5 entity."""
    if entity.content_type != "multipart/signed":
        raise MalformedError(f"expected multipart/signed, got {entity.content_type}")
    proto = (entity.param("protocol") or "").lower()
    if proto != PGP_SIGNATURE:
        raise MalformedError(f"multipart/signed with protocol {proto or 'missing'}, not OpenPGP")
    parts = split_multipart(entity)
    if len(parts) != 2:
        raise MalformedError("multipart/signed must have exactly two parts")
    sig = parse_entity(parts[1])
    if sig.content_type != PGP_SIGNATURE:
        raise MalformedError("the second part of multipart/signed is not a PGP signature")
    return SignedParts(parts[0], decode_body(sig), entity.param("micalg"))


def encrypted_payload(entity: Entity) -> bytes:
    """The armored ciphertext of an RFC 3156 §4 ``multipart/encrypted`` entity."""
    if entity.content_type != "multipart/encrypted":
        raise MalformedError(f"expected multipart/encrypted, got {entity.content_type}")
    proto = (entity.param("protocol") or "").lower()
    if proto != PGP_ENCRYPTED:
        raise MalformedError(f"multipart/encrypted with protocol {proto or 'missing'}, not OpenPGP")
    parts = split_multipart(entity)
    if len(parts) != 2:
        raise MalformedError("multipart/encrypted must have exactly two parts")
    control = parse_entity(parts[0])
    if control.content_type != PGP_ENCRYPTED or b"Version: 1" not in control.body:
        raise MalformedError("multipart/encrypted without the 'Version: 1' control part")
    data = decode_body(parse_entity(parts[1]))
    if b"-----BEGIN PGP MESSAGE-----" not in data:
        raise MalformedError("the encrypted part holds no ASCII-armored OpenPGP message")
    return data


# ---------------------------------------------------------------- seal / unseal


class _HashingWriter:
    """A binary file wrapper that SHA-256s and counts what is written.

    Every ``_WRITEBACK`` bytes it asks the kernel to start writing the new
    range to disk (asynchronously), so the fsync the ledger does when it
    stores the message finds little left to write.
    """

    def __init__(self, f: BinaryIO) -> None:
        self.f = f
        self.digest = hashlib.sha256()
        self.size = 0
        self._synced = 0

    def write(self, data: bytes) -> int:
        self.digest.update(data)
        self.size += len(data)
        n = self.f.write(data)
        if self.size - self._synced >= _WRITEBACK:
            self.f.flush()
            _start_writeback(self.f.fileno(), self._synced, self.size - self._synced)
            self._synced = self.size
        return n


_WRITEBACK = 8 << 20
_SYNC_FILE_RANGE_WRITE = 2
_sync_file_range: Any = None


def _start_writeback(fd: int, offset: int, length: int) -> None:
    """Start (not wait for) writing a dirty range to disk: sync_file_range(2) on Linux.

    Temporary files are not fsync'd here: durability is the ledger's job
    (:meth:`certmail.ledger.Ledger.enqueue` fsyncs the stored message). Starting
    the write-back early lets the disk work while gpg and Python compute.
    """
    global _sync_file_range
    if _sync_file_range is None:
        _sync_file_range = False
        with contextlib.suppress(OSError, AttributeError):
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            fn = libc.sync_file_range
            fn.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
            fn.restype = ctypes.c_int
            _sync_file_range = fn
    if _sync_file_range:
        _sync_file_range(fd, offset, length, _SYNC_FILE_RANGE_WRITE)


@dataclass(frozen=True)
class Sealed:
    """A finished message on disk: the exact bytes that will be sent."""

    path: Path
    sha256: str
    size: int
    manifest: Manifest
    signed: bool
    encrypted: bool


def _close(f: BinaryIO) -> None:
    """Close a finished temporary file, its write-back to disk started (not awaited)."""
    f.flush()
    _start_writeback(f.fileno(), 0, 0)  # length 0: to the end of the file
    f.close()


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
) -> Sealed:
    """Compose, sign, encrypt (to the recipients and to the sender) and re-verify a message.

    Every stage goes file to file inside ``workdir``; the result is
    ``workdir/message.eml``. ``dkim``, when given, reads the finished message
    file and returns the DKIM-Signature field line(s) to prepend. Before
    returning, the final bytes are checked: decryptable with our own key, the
    decrypted bytes equal to what was signed, and the signature valid.

    Encrypted messages go through one pipeline of gpg processes (see
    :func:`_encrypt_pipeline`): the signature is made while the payload is
    already being encrypted, and the armored ciphertext is decrypted again as
    it is written, so the re-verification costs no extra pass over the file.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    hp: Literal["cipher", "clear"] | None = "cipher" if encrypt else ("clear" if sign else None)
    outer = [
        *header_lines(headers, subject=OBSCURED_SUBJECT if encrypt else None),
        "MIME-Version: 1.0",
        *extra_outer,
    ]
    if autocrypt and (sign or encrypt):
        outer.append(autocrypt_header(headers.from_addr, keyring.export_public(headers.from_addr)))
    signer = keyring.signing_key(headers.from_addr) if sign else None
    inner = workdir / "inner.mime"
    unsigned = workdir / "message.unsigned"

    if encrypt:
        recipients = [keyring.encryption_key(a) for a in headers.recipients]
        own = keyring.encryption_key(headers.from_addr)
        fprs = [*dict.fromkeys([*recipients, own])]
        micalg = keyring.micalg(signer) if signer is not None else None
        sb = new_boundary()
        # The payload gpg encrypts is [multipart/signed head][inner][signature part];
        # its SHA-256 is taken as it is written, to compare with the decryption.
        phead = signed_head(micalg, sb) if micalg is not None else b""
        payload_hash = hashlib.sha256(phead)
        with inner.open("wb") as f:
            manifest = compose_inner(
                _Tap(f, payload_hash), headers, body, attachments,  # type: ignore[arg-type]
                hp=hp, outer_subject=OBSCURED_SUBJECT, progress=progress,
            )
        if progress is not None:
            progress("encrypt", 0, 1)
        digest, size = _encrypt_pipeline(
            keyring, inner, unsigned, fprs, outer, phead, payload_hash,
            signer=signer, micalg=micalg, boundary=sb,
        )
    else:
        with inner.open("wb") as f:
            manifest = compose_inner(f, headers, body, attachments, hp=hp, progress=progress)
        out = unsigned.open("wb")
        writer = _HashingWriter(out)  # type: ignore[arg-type]
        signature: bytes | None = None
        if sign:
            assert signer is not None
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
        _close(out)
        digest, size = writer.digest.hexdigest(), writer.size
        if progress is not None:
            progress("check", 0, 1)
        _check_sealed(keyring, workdir, unsigned, None, inner, signature)

    final = workdir / "message.eml"
    if dkim is not None:
        prefix = canonicalize(dkim(unsigned))
        with final.open("wb") as f:
            f.write(prefix)
            f.flush()
            with unsigned.open("rb") as src:
                _copy_file(src, f)
            f.flush()
            _start_writeback(f.fileno(), 0, 0)
        unsigned.unlink()
        # Read back: the stored bytes are the ones hashed, notarized and sent.
        digest, size = _file_sha256(final), final.stat().st_size
    else:
        os.replace(unsigned, final)
    return Sealed(final, digest, size, manifest, sign, encrypt)


class _Tap:
    """A binary file wrapper that also feeds what is written to a hash."""

    def __init__(self, f: BinaryIO, h: Any) -> None:
        self.f = f
        self.h = h

    def write(self, data: bytes) -> int:
        self.h.update(data)
        return self.f.write(data)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def _pump(src: int, dst: int) -> None:
    """Move the rest of file ``src`` into pipe ``dst`` in the kernel (splice(2))."""
    try:
        while os.splice(src, dst, _COPY):
            pass
        return
    except (OSError, AttributeError):  # no splice here: copy through a buffer
        pass
    while chunk := os.read(src, _COPY):
        _write_all(dst, chunk)


def _copy_file(src: BinaryIO, dst: BinaryIO) -> None:
    """Append the rest of ``src`` to ``dst`` (copy_file_range(2) when available)."""
    try:
        while os.copy_file_range(src.fileno(), dst.fileno(), 1 << 30):
            pass
        return
    except (OSError, AttributeError):
        pass
    copy_stream(src, dst)


def _encrypt_pipeline(
    keyring: Keyring,
    inner: Path,
    unsigned: Path,
    fprs: Sequence[str],
    outer: Sequence[str],
    phead: bytes,
    payload_hash: Any,
    *,
    signer: str | None,
    micalg: str | None,
    boundary: str,
) -> tuple[str, int]:
    """Sign, encrypt, write and re-verify in one pass; return (sha256, size) of the message.

    Four gpg processes run at once, data flowing through file descriptors:

    - ``sign``: a detached signature over ``inner`` (gpg reads the file);
    - ``encrypt`` (no compression: the payload is base64 text): its stdin gets
      the ``multipart/signed`` head, then ``inner`` spliced in the kernel, then
      the signature part once ``sign`` is done;
    - armor: with GNU ``base64`` and libgcrypt at hand (:mod:`certmail.armor`)
      gpg writes binary, a thread here takes its CRC-24 and passes it on to
      ``base64 -w 64``, and the armor is framed here (gpg's own armor writer
      costs as much CPU as the encryption); otherwise gpg armors;
    - the armored ciphertext is read here, turned into CRLF lines, written into
      the message file (hashed) and, the same bytes, into the check: with GNU
      ``base64`` installed its body goes through ``base64 -d`` straight into
      ``decrypt`` (binary input: gpg's armor reader costs ~3x more), the
      framing lines (BEGIN, headers, CRC-24, END) checked here; otherwise the
      armor goes to ``decrypt`` as it is;
    - ``decrypt``: its plaintext is hashed and must equal the payload; the
      signature is then verified over ``inner`` by gpg.
    """
    import threading

    sign_run = None
    if signer is not None:
        src = inner.open("rb")
        try:
            sign_run = keyring.start_sign_detached(src, signer)
        finally:
            src.close()
    # The check decodes the armor body (the bytes written to the message) with
    # GNU base64 and gives gpg binary: its own armor reader costs 3x more.
    tool = gnu_base64()
    self_armor = tool is not None and fast_crc24()
    enc = keyring.start_encrypt(fprs, armor=not self_armor, compress=False)
    b64e = _base64_process(tool, "-w", "64") if self_armor and tool is not None else None
    crc = Crc24() if b64e is not None else None
    b64d = None
    if tool is not None:
        b64d = _base64_process(tool, "-d", "-i")
        assert b64d.stdout is not None
        dec = keyring.start_decrypt(stdin=b64d.stdout)
        b64d.stdout.close()
    else:
        dec = keyring.start_decrypt()
    errors: list[BaseException] = []
    plain = hashlib.sha256()

    signed: list[bytes] = []
    signature_ready = threading.Event()

    def sign_and_verify() -> None:
        """Collect the signature as soon as gpg has it, then verify it over ``inner``.

        This runs while the payload is still being encrypted, so the
        verification is not a serial step at the end.
        """
        assert sign_run is not None
        try:
            try:
                signature, used = keyring.finish_sign_detached(sign_run)
                if used != micalg:
                    raise Error(f"gpg signed with {used}, not the announced {micalg}",
                                hint="this is a bug in certmail or gpg; nothing was sent")
                signed.append(signature)
            finally:
                signature_ready.set()
            keyring.verify_detached_file(inner, signature)
        except BaseException as e:  # reported by the main thread
            errors.append(e)

    def feed() -> None:
        assert enc.stdin is not None
        fd = enc.stdin.fileno()
        try:
            _write_all(fd, phead)
            with inner.open("rb") as f:
                _pump(f.fileno(), fd)
            if sign_run is not None:
                signature_ready.wait()
                if not signed:
                    return  # the signing failed: reported by sign_and_verify
                tail = signed_tail(signed[0], boundary)
                payload_hash.update(tail)
                _write_all(fd, tail)
        except BaseException as e:  # reported by the main thread
            errors.append(e)
        finally:
            if not enc.stdin.closed:
                enc.stdin.close()

    def drain() -> None:
        assert dec.stdout is not None
        with dec.stdout:
            while chunk := dec.stdout.read(_COPY):
                plain.update(chunk)

    def armor_feed() -> None:
        """gpg's binary ciphertext: CRC-24 here, on to ``base64 -w 64``."""
        assert b64e is not None and b64e.stdin is not None and enc.stdout is not None
        assert crc is not None
        src, dst = enc.stdout.fileno(), b64e.stdin.fileno()
        try:
            while chunk := os.read(src, _COPY):
                crc.update(chunk)
                _write_all(dst, chunk)
        except BaseException as e:  # reported by the main thread
            errors.append(e)
        finally:
            b64e.stdin.close()

    threads = [threading.Thread(target=feed, daemon=True),
               threading.Thread(target=drain, daemon=True)]
    if sign_run is not None:
        threads.append(threading.Thread(target=sign_and_verify, daemon=True))
    armorer = threading.Thread(target=armor_feed, daemon=True) if b64e is not None else None
    if armorer is not None:
        threads.append(armorer)
    for t in threads:
        t.start()
    eb = new_boundary()
    try:
        assert enc.stdout is not None
        check = _ArmorCheck(b64d.stdin if b64d is not None else dec.stdin,  # type: ignore[arg-type]
                            body_only=b64d is not None)
        with unsigned.open("wb") as out:
            w = _HashingWriter(out)  # type: ignore[arg-type]
            w.write(encrypted_head(eb, outer))
            source = enc.stdout if b64e is None else b64e.stdout
            assert source is not None
            last = b""
            if b64e is not None:
                begin = BEGIN_MESSAGE + b"\r\n\r\n"
                w.write(begin)
                check.write(begin)
            with source:
                while chunk := source.read(_COPY):
                    chunk = _crlf(chunk)
                    w.write(chunk)
                    check.write(chunk)
                    last = chunk[-2:]
            if armorer is not None:
                assert crc is not None
                armorer.join()
                if errors:
                    raise errors[0]
                end = b"%s\r\n%s\r\n" % (crc.checksum_line(), END_MESSAGE)
                if last != b"\r\n":
                    end = b"\r\n" + end
                w.write(end)
                check.write(end)
                last = b"\r\n"
            if last != b"\r\n":
                w.write(b"\r\n")
            w.write(encrypted_tail(eb))
            check.close()
            out.flush()
            _start_writeback(out.fileno(), 0, 0)
        for t in threads:
            t.join()
        keyring.finish_encrypt(enc)
        if errors:
            raise errors[0]
        keyring.finish_decrypt(dec)
        if b64d is not None and b64d.wait() != 0:
            raise VerificationError("the armored ciphertext is not valid base64")
        if b64e is not None and b64e.wait() != 0:
            raise VerificationError("base64 failed to encode the ciphertext")
        if plain.digest() != payload_hash.digest():
            raise VerificationError("the encrypted bytes do not decrypt to what was signed")
    except (VerificationError, MalformedError) as e:
        raise Error(
            f"refusing to send: the finished message did not re-verify ({e.message})",
            hint="this is a bug in certmail or gpg; nothing was sent",
        ) from e
    finally:
        for run in (sign_run, enc, dec):
            if run is not None:
                run.kill()
        for proc in (b64d, b64e):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()
    return w.digest.hexdigest(), w.size


class _ArmorCheck:
    """Feeds the armored ciphertext, as written to the message, to the verifying decrypt.

    ``body_only``: only the base64 body goes on (to a base64 decoder whose output
    is gpg's input): the header block up to its blank line and the trailer from
    the CRC-24 line (``=XXXX``) on are held back, and both must be there.
    Otherwise every byte goes to gpg, which reads the armor itself.
    """

    _HOLD = 128  # longer than "=XXXX" CRLF "-----END PGP MESSAGE-----" CRLF

    def __init__(self, dst: BinaryIO, *, body_only: bool) -> None:
        self.dst: BinaryIO | None = dst
        self.body_only = body_only
        self.head = b""
        self.in_body = False
        self.held = b""

    def _send(self, data: bytes) -> None:
        if self.dst is not None and data:
            try:
                self.dst.write(data)
            except BrokenPipeError:
                self.dst = None  # the decrypt failed: finish_decrypt says why

    def write(self, chunk: bytes) -> None:
        if not self.body_only:
            self._send(chunk)
            return
        if not self.in_body:
            self.head += chunk
            end = self.head.find(b"\r\n\r\n")
            if end < 0:
                if len(self.head) > MAX_HEADER_BLOCK:
                    raise MalformedError("armor without the blank line after its headers")
                return
            if not self.head.startswith(b"-----BEGIN PGP MESSAGE-----\r\n"):
                raise MalformedError("the encrypted part does not start with an armor line")
            self.in_body = True
            chunk, self.head = self.head[end + 4 :], b""
        data = self.held + chunk
        cut = max(0, len(data) - self._HOLD)
        self._send(data[:cut])
        self.held = data[cut:]

    def close(self) -> None:
        if self.body_only:
            tail = self.held
            crc = tail.rfind(b"\r\n=")
            end = tail.find(b"\r\n-----END PGP MESSAGE-----\r\n")
            if not self.in_body or crc < 0 or end < 0 or end < crc:
                raise MalformedError("the armored ciphertext has no CRC-24 line or END line")
            self._send(tail[: crc + 2])
        if self.dst is not None:
            with contextlib.suppress(BrokenPipeError):
                self.dst.close()


def _extract_armor(src: Path, dst: Path) -> None:
    """Copy the first ASCII-armored OpenPGP message in ``src`` to ``dst``, streaming."""
    begin, end = b"-----BEGIN PGP MESSAGE-----", b"-----END PGP MESSAGE-----"
    state = 0
    with src.open("rb") as f, dst.open("wb") as out:
        for line in f:
            if state == 0 and line.startswith(begin):
                state = 1
            if state == 1:
                out.write(line)
                if line.startswith(end):
                    return
    raise MalformedError("no complete OpenPGP message in the encrypted part (truncated?)")


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_COPY):
            h.update(chunk)
    return h.hexdigest()


def _check_sealed(
    keyring: Keyring,
    workdir: Path,
    final: Path,
    payload: Path | None,
    inner: Path,
    signature: bytes | None,
) -> None:
    """Re-verify the finished bytes before they leave (DESIGN §5)."""
    try:
        if payload is not None:
            armored = workdir / "check.asc"
            _extract_armor(final, armored)
            decrypted = workdir / "check.out"
            keyring.decrypt_file(armored, decrypted)
            if _file_sha256(decrypted) != _file_sha256(payload):
                raise VerificationError("the encrypted bytes do not decrypt to what was signed")
            armored.unlink()
            decrypted.unlink()
        if signature is not None:
            keyring.verify_detached_file(inner, signature)
    except (VerificationError, MalformedError) as e:
        raise Error(
            f"refusing to send: the finished message did not re-verify ({e.message})",
            hint="this is a bug in certmail or gpg; nothing was sent",
        ) from e


@dataclass(frozen=True)
class Part:
    """A leaf of the opened message: decoded content and its declared names."""

    content_type: str
    filename: str | None  # as declared (RFC 2231 / 2047 decoded), untrusted
    data: bytes
    is_attachment: bool


@dataclass
class Unsealed:
    """What :func:`unseal` found: structure, signature, protected headers, parts."""

    encrypted: bool
    signature: SignatureInfo | None
    header_protection: str | None  # RFC 9788 hp value of the payload, if any
    fields: dict[str, str]  # protected (or, failing that, outer) header fields
    outer_fields: dict[str, str]
    body: bytes | None
    parts: list[Part]
    manifest: dict[str, Any] | None


_FIELDS = ("From", "To", "Cc", "Subject", "Date", "Message-ID")


def _fields(msg: Message) -> dict[str, str]:
    out: dict[str, str] = {}
    for name in _FIELDS:
        v = msg.get(name)
        if v is not None:
            out[name] = _decode_header(str(v))
    for v in msg.get_all("Certmail-Notary") or []:
        out.setdefault("Certmail-Notary", _decode_header(str(v)))
    return out


def _decode_header(value: str) -> str:
    from email.header import decode_header, make_header

    try:
        return str(make_header(decode_header(value))).replace("\r", "").replace("\n", "")
    except (ValueError, LookupError, UnicodeDecodeError):
        return value.replace("\r", "").replace("\n", "")


def _walk(entity: Entity, out: list[Part], depth: int = 0) -> None:
    if depth > 20:
        raise MalformedError("MIME nesting too deep")
    ct = entity.content_type
    if ct.startswith("multipart/"):
        for raw in split_multipart(entity):
            _walk(parse_entity(raw), out, depth + 1)
        return
    try:
        filename = entity.headers.get_filename()
    except (ValueError, LookupError, UnicodeError):
        filename = None
    raw_filename = _raw_filename(entity)
    if filename is None and raw_filename is not None:
        filename = raw_filename
    disp = str(entity.headers.get("Content-Disposition") or "").split(";")[0].strip().lower()
    if filename is not None:
        filename = str(filename)
    attached = disp == "attachment" or filename is not None
    out.append(Part(ct, filename, decode_body(entity), attached))


def _raw_filename(entity: Entity) -> str | None:
    """A filename parameter even when its charset is wrong (non-UTF-8 bytes kept as U+FFFD)."""
    for name in ("filename", "name"):
        for header in ("Content-Disposition", "Content-Type"):
            v = entity.headers.get_param(name, header=header)
            if v is None:
                continue
            if isinstance(v, tuple):
                charset, _, text = v
                raw = text.encode("latin-1", "replace") if isinstance(text, str) else bytes(text)
                return raw.decode(charset or "utf-8", "replace") if _known(charset) else (
                    raw.decode("utf-8", "replace"))
            return str(v)
    return None


def _known(charset: str | None) -> bool:
    import codecs

    if not charset:
        return False
    try:
        codecs.lookup(charset)
    except LookupError:
        return False
    return True


def unseal(
    keyring: Keyring, raw: bytes, workdir: Path, *, allow_unsigned: bool = False
) -> Unsealed:
    """Decrypt and verify an RFC 3156 message; parse its payload.

    Raises :class:`VerificationError` for a bad, forged or (unless
    ``allow_unsigned``) missing signature and :class:`MalformedError` for
    anything that is not well-formed MIME / OpenPGP.
    """
    if not raw.strip():
        raise MalformedError("the message file is empty")
    workdir.mkdir(parents=True, exist_ok=True)
    top = parse_entity(canonicalize(raw))
    outer_fields = _fields(top.headers)
    entity = top
    encrypted = False
    signature: SignatureInfo | None = None
    if top.content_type == "multipart/encrypted":
        encrypted = True
        ct = workdir / "encrypted.asc"
        ct.write_bytes(encrypted_payload(top))
        pt = workdir / "decrypted.mime"
        signature = keyring.decrypt_file(ct, pt)
        entity = parse_entity(canonicalize(pt.read_bytes()))
    elif top.content_type == "application/pgp-encrypted" or top.body.lstrip().startswith(
        b"-----BEGIN PGP MESSAGE"
    ):
        raise MalformedError("inline PGP is not supported; certmail reads PGP/MIME (RFC 3156)")
    if entity.content_type == "multipart/signed":
        sp = signed_parts(entity)
        signature = keyring.verify_detached(sp.signed, sp.signature)
        entity = parse_entity(sp.signed)
    if signature is None and not allow_unsigned:
        raise VerificationError(
            "the message is not signed (the signature may have been stripped)",
            hint="certmail open --allow-unsigned FILE to read it anyway",
        )
    hp = entity.param("hp")
    fields = _fields(entity.headers) if (hp or "From" in entity.headers) else dict(outer_fields)
    if signature is not None:
        sender = fields.get("From", "")
        if signature.signer_email and signature.signer_email.lower() not in sender.lower():
            raise VerificationError(
                f"signed by {signature.signer_email}, but the message says it is from {sender}"
            )
    parts: list[Part] = []
    _walk(entity, parts)
    manifest: dict[str, Any] | None = None
    body: bytes | None = None
    rest: list[Part] = []
    for p in parts:
        if p.content_type == MANIFEST_TYPE and manifest is None:
            try:
                obj = json.loads(p.data)
            except ValueError:
                raise MalformedError("the manifest part is not JSON") from None
            if not isinstance(obj, dict):
                raise MalformedError("the manifest part is not a JSON object")
            manifest = obj
        elif body is None and p.content_type == "text/plain" and not p.is_attachment:
            body = p.data
        else:
            rest.append(p)
    return Unsealed(encrypted, signature, hp, fields, outer_fields, body, rest, manifest)


def check_manifest(u: Unsealed) -> None:
    """Raise VerificationError unless the manifest matches the content and the header fields."""
    m = u.manifest
    if m is None:
        return
    try:
        body_meta = m["body"]
        atts = m["attachments"]
        if not isinstance(atts, list) or not isinstance(body_meta, dict):
            raise TypeError
        body = canonical_text(u.body or b"")
        if (u.body or b"") and not body.endswith(b"\r\n"):
            body += b"\r\n"
        if hashlib.sha256(body).hexdigest() != body_meta["sha256"]:
            raise VerificationError("the body does not match the manifest's SHA-256")
        if len(atts) != len(u.parts):
            raise VerificationError(
                f"the manifest lists {len(atts)} attachments, the message has {len(u.parts)}"
            )
        for rec, part in zip(atts, u.parts, strict=True):
            if hashlib.sha256(part.data).hexdigest() != rec["sha256"]:
                raise VerificationError(
                    f"attachment {rec.get('filename')!r} does not match the manifest's SHA-256"
                )
        if m.get("message_id") != u.fields.get("Message-ID"):
            raise VerificationError("the Message-ID does not match the manifest")
        if m.get("subject") != u.fields.get("Subject"):
            raise VerificationError("the Subject does not match the manifest")
        if m.get("from", "").lower() not in u.fields.get("From", "").lower():
            raise VerificationError("the From address does not match the manifest")
    except (KeyError, TypeError):
        raise MalformedError("the manifest is missing required members") from None
