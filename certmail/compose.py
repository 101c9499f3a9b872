"""The inner MIME entity of a certmail message, and its manifest (docs/send-open.md).

The entity is an RFC 2046 ``multipart/mixed``: the text body, each attachment
(base64), and a manifest part (``application/vnd.certmail.manifest+json``) that
records the SHA-256 of the body and of every attachment, the virus-scan verdict,
and the message's From/To/Cc/Date/Message-ID/Subject. Its header block carries
the RFC 9788 protected header fields (``hp="cipher"`` or ``hp="clear"``).

Everything is written once, in canonical form (CRLF line ends, 7-bit), to a
file: these are the bytes the signature covers (RFC 3156 §5), so nothing may
re-serialise them later. Attachments are streamed: memory use does not grow with
their size.
"""

from __future__ import annotations

import binascii
import functools
import hashlib
import json
import mimetypes
import os
import secrets
import subprocess
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from email.header import Header
from email.utils import encode_rfc2231, format_datetime, formatdate
from pathlib import Path
from typing import Any, BinaryIO, Literal

from keys.errors import Error, MalformedError, NotFoundError
from notary import fastpath

MANIFEST_TYPE = "application/vnd.certmail.manifest+json"
MANIFEST_FILENAME = "certmail-manifest.json"
MANIFEST_VERSION = 1
NOT_SCANNED = "not scanned"

#: Progress callback: (stage, bytes done, bytes total).
Progress = Callable[[str, int, int], None]

_B64_LINE = 57  # raw bytes per 76-character base64 line (RFC 2045 §6.8)
_CHUNK = _B64_LINE * 16384  # ~0.9 MB of input per read


@dataclass(frozen=True)
class Headers:
    """The addressing fields of one message; ``date`` is an RFC 5322 date string."""

    from_addr: str
    to: tuple[str, ...]
    subject: str
    message_id: str
    date: str
    cc: tuple[str, ...] = ()
    from_name: str | None = None

    @property
    def recipients(self) -> tuple[str, ...]:
        """Envelope recipients: To then Cc, duplicates removed."""
        seen: dict[str, None] = {}
        for addr in (*self.to, *self.cc):
            seen.setdefault(addr, None)
        return tuple(seen)


@dataclass(frozen=True)
class ScanRecord:
    """What the virus scan said about one attachment, as written in the manifest."""

    status: str  # "clean" or "not scanned" (infected content is never composed)
    engine: str | None = None  # e.g. "ClamAV 1.0.7/27300/..." (engine and signature versions)

    def to_json(self) -> dict[str, Any]:
        return {"status": self.status, "engine": self.engine}


@dataclass(frozen=True)
class AttachmentRecord:
    """One attachment as the manifest lists it."""

    filename: str
    content_type: str
    size: int
    sha256: str
    scan: ScanRecord

    def to_json(self) -> dict[str, Any]:
        return {
            "filename": self.filename,
            "content_type": self.content_type,
            "size": self.size,
            "sha256": self.sha256,
            "scan": self.scan.to_json(),
        }


@dataclass(frozen=True)
class Manifest:
    """The manifest part: what the sender vouches the message contains."""

    headers: Headers
    body_sha256: str
    body_size: int
    attachments: tuple[AttachmentRecord, ...] = field(default_factory=tuple)

    def to_json(self) -> dict[str, Any]:
        h = self.headers
        return {
            "v": MANIFEST_VERSION,
            "type": "certmail-manifest",
            "from": h.from_addr,
            "to": list(h.to),
            "cc": list(h.cc),
            "date": h.date,
            "message_id": h.message_id,
            "subject": h.subject,
            "body": {"sha256": self.body_sha256, "size": self.body_size},
            "attachments": [a.to_json() for a in self.attachments],
        }

    def to_bytes(self) -> bytes:
        return json.dumps(self.to_json(), sort_keys=True, ensure_ascii=True, indent=1).encode()


def new_message_id(domain: str) -> str:
    """A fresh ``<random@domain>`` Message-ID (128 random bits)."""
    return f"<{secrets.token_hex(16)}@{domain}>"


def now_date() -> str:
    """The current time as an RFC 5322 date."""
    return formatdate(localtime=False, usegmt=True)


def date_from(dt: Any) -> str:
    """An RFC 5322 date from an aware datetime (for injected clocks)."""
    return format_datetime(dt, usegmt=True)


def new_boundary() -> str:
    """A MIME boundary that cannot occur in base64 or quoted-printable text."""
    return "=_certmail_" + secrets.token_hex(12)


def canonical_text(body: bytes) -> bytes:
    """The body with every line ending as CRLF (RFC 3156 §5 canonical form)."""
    return body.replace(b"\r\n", b"\n").replace(b"\r", b"\n").replace(b"\n", b"\r\n")


def encode_header_value(value: str) -> str:
    """An RFC 2047 encoded-word form of ``value`` when it is not plain ASCII."""
    _check_header_value(value)
    if value.isascii():
        return value
    return Header(value, "utf-8").encode(maxlinelen=76, linesep="\r\n")


def _check_header_value(value: str) -> None:
    if "\r" in value or "\n" in value or "\0" in value:
        raise Error("a header value contains a line break", hint="remove newlines from --subject")


def address_header(addrs: Sequence[str]) -> str:
    """A To/Cc field value; addresses are validated bare addr-specs."""
    for a in addrs:
        check_address(a)
    return ", ".join(addrs)


def check_address(addr: str) -> None:
    """Reject anything but a plain ``local@domain`` address."""
    bad = set(' <>(),;:"\\\r\n\t\0')
    local, at, domain = addr.rpartition("@")
    if not at or not local or not domain or any(c in bad for c in addr) or not addr.isascii():
        raise Error(
            f"not an email address: {addr!r}", hint="give a plain address like alice@example.org"
        )


def from_header(h: Headers) -> str:
    if h.from_name:
        name = h.from_name.replace('"', "")
        _check_header_value(name)
        if name.isascii():
            return f'"{name}" <{h.from_addr}>'
        return f"{Header(name, 'utf-8').encode()} <{h.from_addr}>"
    return h.from_addr


def header_lines(h: Headers, subject: str | None = None) -> list[str]:
    """From, To, Cc, Subject, Date, Message-ID as CRLF-free field lines."""
    lines = [f"From: {from_header(h)}", f"To: {address_header(h.to)}"]
    if h.cc:
        lines.append(f"Cc: {address_header(h.cc)}")
    lines.append(f"Subject: {encode_header_value(h.subject if subject is None else subject)}")
    lines.append(f"Date: {h.date}")
    lines.append(f"Message-ID: {h.message_id}")
    return lines


def safe_filename_param(name: str) -> str:
    """``filename=...`` for Content-Disposition, RFC 2231 encoded when not ASCII."""
    plain = name.isascii() and all(c.isprintable() for c in name)
    if plain and '"' not in name and "\\" not in name:
        return f'filename="{name}"'
    return f"filename*={encode_rfc2231(name, 'utf-8')}"


def write_base64(
    src: BinaryIO, out: BinaryIO, on_bytes: Callable[[bytes], None], tool: str | None
) -> None:
    """Base64 ``src`` into ``out`` in 76-character CRLF lines, streaming.

    The bytes are those of :func:`b64_lines` over the whole of ``src`` (RFC 2045
    §6.8); ``on_bytes`` sees every byte read. ``tool`` is GNU coreutils'
    ``base64`` (:func:`gnu_base64`) or None for ``binascii`` in this process.
    Why the external tool stays (issue 9; measured on 100 MB, 2 loaded cores,
    ``write_base64`` alone, two runs each): binascii with the lines cut by
    slicing takes 0.32-0.35 CPU s, all of it holding this process's GIL, which
    the send pipeline's other threads (armor, hashing, the check) need; GNU
    base64 takes 0.19-0.20 CPU s, half of it in its own process, and 0.26-0.52 s
    wall against 0.94-2.17. In ``send`` the inner entity streams into gpg
    (:mod:`certmail.pipeline`), so the encoder runs beside gpg on the other core.
    """
    if tool is None:
        _write_b64_python(src, out, on_bytes)
    else:
        _write_b64_external(tool, src, out, on_bytes)


def b64_lines(data: bytes | memoryview, width: int = 76) -> bytes:
    """``data`` base64-encoded in CRLF-terminated lines of ``width`` characters.

    One ``binascii`` call for the whole input, then the lines are cut by
    slicing (no per-line encoder call); equal to the standard library's
    encoding with its line breaks as CRLF.
    """
    enc = binascii.b2a_base64(data, newline=False)
    if not enc:
        return b""
    n = len(enc)
    lines = [enc[i : i + width] for i in range(0, n, width)]
    lines.append(b"")
    return b"\r\n".join(lines)


def _write_b64_python(src: BinaryIO, out: BinaryIO, on_bytes: Callable[[bytes], None]) -> None:
    carry = b""
    while True:
        chunk = src.read(_CHUNK)
        if not chunk:
            break
        on_bytes(chunk)
        data = carry + chunk if carry else chunk
        cut = len(data) - len(data) % _B64_LINE  # whole lines only; the rest waits
        carry = data[cut:]
        if cut:
            out.write(b64_lines(memoryview(data)[:cut]))
    if carry:
        out.write(b64_lines(carry))


def gnu_base64(*, external: bool = True) -> str | None:
    """The path of GNU coreutils' ``base64`` (``-w`` line width, ``-d -i``), or None.

    A fast path (see :func:`write_base64` and :mod:`certmail.pipeline`): None
    when ``CERTMAIL_REFERENCE_ONLY`` (:mod:`notary.fastpath`) is set or the
    caller says ``external=False`` (a campaign of small messages,
    :func:`certmail.campaign.worker.init_worker`), and then binascii and gpg's
    own armor do the work.
    """
    if not external or not fastpath.enabled():
        return None
    return _find_gnu_base64()


def _find_gnu_base64() -> str | None:
    return _coreutils("base64")


@functools.cache
def _coreutils(name: str) -> str | None:
    """The path of GNU coreutils' ``name`` (its ``--version`` says so), or None."""
    import shutil

    path = shutil.which(name)
    if path is None:
        return None
    try:
        r = subprocess.run([path, "--version"], capture_output=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return path if r.returncode == 0 and b"GNU coreutils" in r.stdout else None


def _write_b64_external(
    tool: str, src: BinaryIO, out: BinaryIO, on_bytes: Callable[[bytes], None]
) -> None:
    """The attachment goes through ``base64 -w 76``; LF line ends become CRLF here.

    This thread reads ``src`` (hashing it: the manifest's SHA-256 is of the very
    bytes encoded) and writes them to the encoder; a helper thread writes the
    encoder's output to ``out``.
    """
    import threading

    proc = base64_process(tool, "-w", "76")
    assert proc.stdin is not None and proc.stdout is not None
    errors: list[BaseException] = []

    def drain(f: BinaryIO) -> None:
        try:
            while chunk := f.read1(_CHUNK):  # type: ignore[attr-defined]
                out.write(chunk.replace(b"\n", b"\r\n"))
        except BaseException as e:  # reported below
            errors.append(e)
            proc.kill()

    t = threading.Thread(target=drain, args=(proc.stdout,), daemon=True)
    t.start()
    try:
        fd = proc.stdin.fileno()
        while chunk := src.read(_CHUNK):
            on_bytes(chunk)
            view = memoryview(chunk)
            while view:
                view = view[os.write(fd, view) :]
    except BrokenPipeError:
        pass  # the drain failed: reported below
    finally:
        proc.stdin.close()
        t.join()
        proc.stdout.close()
        code = proc.wait()
    if errors:
        raise errors[0]
    if code != 0:
        raise Error(f"base64 exited with status {code}", hint="this is a bug; nothing was sent")


def base64_argv(tool: str, *args: str) -> list[str]:
    """GNU ``base64`` (``tool``) with ``args``, under coreutils' ``stdbuf -o 1M`` where
    it is at hand: output in 1 MiB blocks, not stdio's 4 KiB for a pipe (the same
    bytes; reading 142 MB of armor cost this process 0.118 CPU s in 3,581 reads, 0.039
    in 136 with it; docs/send-open.md, issue 16)."""
    stdbuf = _coreutils("stdbuf")
    return [tool, *args] if stdbuf is None else [stdbuf, "-o", "1M", tool, *args]


def base64_process(tool: str, *args: str) -> subprocess.Popen[bytes]:
    """GNU ``base64`` (``tool``) with ``args`` (:func:`base64_argv`), between two widened pipes."""
    proc = subprocess.Popen(
        base64_argv(tool, *args),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    assert proc.stdin is not None and proc.stdout is not None
    for pipe in (proc.stdin, proc.stdout):
        _widen_pipe(pipe.fileno())
    return proc


def _widen_pipe(fd: int, size: int = 1 << 20) -> None:
    try:
        import fcntl

        fcntl.fcntl(fd, 1031, size)  # F_SETPIPE_SZ (Linux)
    except (OSError, ImportError):
        pass


def _qp(body: bytes) -> bytes:
    lf = body.replace(b"\r\n", b"\n")
    enc = binascii.b2a_qp(lf, quotetabs=False, istext=True, header=False)
    # Encode a leading "From " and a lone "." so no transport rewrites them.
    out = []
    for line in enc.split(b"\n"):
        if line.startswith(b"From "):
            line = b"=46" + line[1:]
        elif line.startswith(b"."):
            line = b"=2E" + line[1:]
        out.append(line)
    return b"\r\n".join(out)


def attachment_name(path: Path) -> str:
    """The name an attachment is sent under: the file's base name, NFC."""
    return unicodedata.normalize("NFC", os.fsdecode(path.name))


def _body_text(body: bytes) -> bytes:
    """The message body as canonical CRLF text ending in a line end; refuse non-UTF-8."""
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        raise MalformedError(
            "the message body is not UTF-8 text", hint="send binary content with --attach FILE"
        ) from None
    text = canonical_text(body)
    if text and not text.endswith(b"\r\n"):
        text += b"\r\n"
    return text


def _write_body_part(out: BinaryIO, text: bytes, html: bytes | None) -> None:
    """Write the text body part, or a ``multipart/alternative`` of it and ``html``."""
    w = out.write
    alt = new_boundary()
    if html is not None:
        w(f'Content-Type: multipart/alternative; boundary="{alt}"\r\n\r\n--{alt}\r\n'.encode())
    w(b'Content-Type: text/plain; charset="utf-8"\r\n')
    w(b"Content-Transfer-Encoding: quoted-printable\r\n\r\n")
    w(_qp(text))
    w(b"\r\n")
    if html is not None:
        w(f'--{alt}\r\nContent-Type: text/html; charset="utf-8"\r\n'.encode())
        w(b"Content-Transfer-Encoding: quoted-printable\r\n\r\n")
        w(_qp(canonical_text(html)))
        w(f"\r\n--{alt}--\r\n".encode())


def compose_inner(
    out: BinaryIO,
    headers: Headers,
    body: bytes,
    attachments: Sequence[tuple[Path, ScanRecord]] = (),
    *,
    hp: Literal["cipher", "clear"] | None = "cipher",
    outer_subject: str | None = None,
    progress: Progress | None = None,
    html: bytes | None = None,
    external_base64: bool = True,
) -> Manifest:
    """Write the inner entity to ``out`` and return its manifest.

    ``body`` is UTF-8 text (any line ends); ``attachments`` pairs each file with
    its scan verdict. ``hp`` is the RFC 9788 header-protection mode; with
    ``"cipher"`` an ``HP-Outer`` field records the obscured outer Subject.
    ``html`` (UTF-8) makes the body a ``multipart/alternative`` of the text and
    this HTML (RFC 2046 §5.1.4; the pickup notice, docs/sealed.md); the
    manifest covers the text. ``external_base64=False`` encodes the attachments
    in this process (:func:`gnu_base64`).
    """
    text = _body_text(body)
    boundary = new_boundary()
    ctype = f'multipart/mixed; boundary="{boundary}"'
    if hp is not None:
        ctype += f';\r\n hp="{hp}"'
    lines = [f"Content-Type: {ctype}", "MIME-Version: 1.0", *header_lines(headers)]
    if hp == "cipher" and outer_subject is not None:
        lines.append(f"HP-Outer: Subject: {outer_subject}")
    w = out.write
    w(("\r\n".join(lines) + "\r\n\r\n").encode("ascii"))
    w(f"This is a MIME-formatted message.\r\n--{boundary}\r\n".encode())
    _write_body_part(out, text, html)

    try:
        total = sum(p.stat().st_size for p, _ in attachments)
    except FileNotFoundError as e:
        raise NotFoundError(f"no such file: {e.filename}", hint="check the --attach path") from None
    done = 0
    records: list[AttachmentRecord] = []
    for path, scan in attachments:
        name = attachment_name(path)
        ctype_guess = mimetypes.guess_type(name)[0] or "application/octet-stream"
        w(f"--{boundary}\r\n".encode())
        w(f"Content-Type: {ctype_guess}\r\n".encode())
        w(f"Content-Disposition: attachment; {safe_filename_param(name)}\r\n".encode("ascii"))
        w(b"Content-Transfer-Encoding: base64\r\n\r\n")
        digest = hashlib.sha256()
        size = 0

        def on_bytes(chunk: bytes, digest: Any = digest) -> None:
            nonlocal size, done
            digest.update(chunk)
            size += len(chunk)
            done += len(chunk)
            if progress is not None:
                progress("compose", done, total)

        try:
            with path.open("rb") as src:
                write_base64(src, out, on_bytes, gnu_base64(external=external_base64))
        except FileNotFoundError:
            raise NotFoundError(f"no such file: {path}", hint="check the --attach path") from None
        records.append(AttachmentRecord(name, ctype_guess, size, digest.hexdigest(), scan))

    manifest = Manifest(headers, hashlib.sha256(text).hexdigest(), len(text), tuple(records))
    w(f"--{boundary}\r\n".encode())
    w(f'Content-Type: {MANIFEST_TYPE}; charset="utf-8"\r\n'.encode())
    w(f'Content-Disposition: attachment; filename="{MANIFEST_FILENAME}"\r\n'.encode())
    w(b"Content-Transfer-Encoding: base64\r\n\r\n")
    w(b64_lines(manifest.to_bytes()))
    w(f"--{boundary}--\r\n".encode())
    return manifest
