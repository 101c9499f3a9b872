"""Proof bundles (DESIGN §4.5): one zip that proves what was sent and what happened to it.

Layout (docs/proof-bundle.md)::

    message.eml                       the exact bytes the notary hashed
    notary.vkey                       checkpoint verifier key (one line)
    tsa-chain.pem                     TSA certificate, then its issuers up to the root
    evidence/NN-<event>.json          receipts (DESIGN §4.3), in time order
    evidence/NN-<event>.tlog-proof    the same proof as a file (c2sp.org/tlog-proof)
    evidence/NN-<event>.tsr           the RFC 3161 TimeStampToken (DER), where there is one
    evidence/consistency-M-N.json     RFC 9162 consistency proof between checkpoints M < N
    certificate.html, certificate.pdf human-readable certificate
    VERIFY.txt                        how to check every item with stock tools

:func:`verify_bundle` checks a bundle offline and returns a
:class:`BundleReport` or raises :class:`keys.errors.VerificationError` naming
what failed. Every file is covered: machine-readable files must be in their one
canonical form and verify; the human-readable ones are regenerated from the
verified evidence and must be byte-identical. :func:`export_bundle` writes a
bundle and verifies it before returning it. The library never prints.
"""

from __future__ import annotations

import base64
import hashlib
import io
import itertools
import json
import re
import struct
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from keys.errors import MalformedError, VerificationError
from notary.note import Verifier

if TYPE_CHECKING:
    from email.message import Message

    from cryptography import x509

    from certmail.certificate import Facts, MimeLayout
    from keys.gpg import Keyring
    from notary.receipt import Receipt

__all__ = [
    "MAX_BUNDLE_SIZE",
    "MAX_MESSAGE_SIZE",
    "BundleReport",
    "Check",
    "ReportEvent",
    "export_bundle",
    "verify_bundle",
]

MESSAGE = "message.eml"
VKEY = "notary.vkey"
CHAIN = "tsa-chain.pem"
HTML = "certificate.html"
PDF = "certificate.pdf"
VERIFY_TXT = "VERIFY.txt"

#: Largest message.eml accepted, in bytes.
MAX_MESSAGE_SIZE = 256 << 20
#: Largest other member, in bytes (a receipt holds a tlog-proof of at most ~1.1 MiB).
MAX_MEMBER_SIZE = 4 << 20
#: Largest bundle file, and largest total of its uncompressed members.
MAX_BUNDLE_SIZE = MAX_MESSAGE_SIZE + (64 << 20)
#: Most events in one bundle.
MAX_EVENTS = 999
#: Most members in one bundle.
MAX_MEMBERS = 3 * MAX_EVENTS + MAX_EVENTS + 6

_EVIDENCE = re.compile(r"evidence/(\d{2,3})-([A-Za-z]{1,64})\.(json|tlog-proof|tsr)")
_CONSISTENCY = re.compile(r"evidence/consistency-(0|[1-9]\d{0,18})-(0|[1-9]\d{0,18})\.json")
_FIXED = (MESSAGE, VKEY, CHAIN, HTML, PDF, VERIFY_TXT)
_ZIP_DATE = (1980, 1, 1, 0, 0, 0)
_UNTRUSTED_VKEY = (
    "no trusted verifier key given: checkpoints were checked against the bundle's own "
    "notary.vkey, which anyone who forged the bundle could have replaced; "
    "pass --vkey with the notary's key from a source you trust"
)
_UNTRUSTED_ROOT = (
    "no trusted TSA root given: time-stamps were checked against the root at the end of "
    "the bundle's own tsa-chain.pem; pass --tsa-root with the TSA's root from a source "
    "you trust"
)


# ------------------------------------------------------------------- report


@dataclass(frozen=True)
class Check:
    """One item checked: what, how it came out (ok, warning, skipped) and the detail."""

    item: str
    status: str
    detail: str


@dataclass(frozen=True)
class ReportEvent:
    """One verified event of the bundle."""

    number: int
    event: str
    time: str
    recipient: str | None
    index: int
    checkpoint_size: int
    timestamp: str | None
    proves: str


@dataclass(frozen=True)
class BundleReport:
    """What a valid bundle proves and how each item was checked.

    ``warnings`` are things the verifier should act on (an untrusted key or
    root); a report is only ever returned for a bundle whose every present
    item verified.
    """

    sha256: str
    message_id: str
    sender: str
    recipients: tuple[str, ...]
    vkey: str
    vkey_trusted: bool
    tsa_root_trusted: bool
    events: tuple[ReportEvent, ...]
    checks: tuple[Check, ...]
    warnings: tuple[str, ...] = field(default=())

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready object (``valid`` is always true: invalid bundles raise)."""
        obj = asdict(self)
        obj["valid"] = True
        return obj


# ------------------------------------------------------------------- zip reading


def _fail(what: str) -> VerificationError:
    return VerificationError(f"{what}; the bundle may have been modified maliciously")


def _check_name(name: str) -> None:
    if name in _FIXED or _EVIDENCE.fullmatch(name) or _CONSISTENCY.fullmatch(name):
        return
    shown = name.encode("unicode_escape").decode("ascii")[:120]
    raise MalformedError(f"the bundle holds an unexpected member {shown!r}")


def read_members(source: str | Path | bytes) -> dict[str, bytes]:
    """The members of a bundle zip, read with size caps and name checks; MalformedError."""
    if isinstance(source, bytes):
        if len(source) > MAX_BUNDLE_SIZE:
            raise MalformedError("the bundle is too large")
        fast = _read_zip_fast(source)
        if fast is not None:
            return fast
        fileobj: Any = io.BytesIO(source)
        size = -1  # already tried
    else:
        path = Path(source)
        try:
            size = path.stat().st_size
            if size > MAX_BUNDLE_SIZE:
                raise MalformedError("the bundle is too large")
            fileobj = path.open("rb")
        except FileNotFoundError:
            from keys.errors import NotFoundError

            raise NotFoundError(f"no such bundle: {path}") from None
        except IsADirectoryError:
            raise MalformedError(f"{path} is a directory, not a bundle") from None
    try:
        if 0 <= size <= _FAST_ZIP_SIZE:
            fast = _read_zip_fast(fileobj.read(_FAST_ZIP_SIZE + 1))
            if fast is not None:
                return fast
            fileobj.seek(0)
        return _read_zip(fileobj)
    except Exception as e:
        import zipfile

        if isinstance(e, MalformedError) or not isinstance(e, (
                zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError, ValueError,
                NotImplementedError, RuntimeError, zlib.error)):
            raise
        raise MalformedError(f"the bundle is not a readable zip file ({e})") from None
    finally:
        fileobj.close()


#: Bundles up to this size are first read whole by :func:`_read_zip_fast`.
_FAST_ZIP_SIZE = 16 << 20
_LOCAL = struct.Struct("<4s2B4HL2L2H")
_CENTRAL = struct.Struct("<4s4B4HL2L5H2L")
_END = struct.Struct("<4s4H2LH")


def _read_zip_fast(buf: bytes) -> dict[str, bytes] | None:
    """The members of a zip in exactly the simple layout :func:`write_members` writes
    (members back to back from offset 0, then the central directory, then the end
    record; no comment, extra fields, flags, zip64 or data descriptors; each central
    entry equal to its local header; stored or deflated; sizes and CRC-32 right; every
    name allowed, once; within the caps) -- or None, and :func:`_read_zip` reads it
    (and refuses it where it must), so its verdicts and messages are unchanged."""
    n = len(buf)
    if n < _END.size or n > _FAST_ZIP_SIZE:
        return None
    sig, disk, disk_cd, count, total_count, cd_size, cd_off, comment = _END.unpack_from(
        buf, n - _END.size)
    if (sig != b"PK\x05\x06" or disk or disk_cd or comment or count != total_count
            or count > MAX_MEMBERS or cd_off + cd_size != n - _END.size):
        return None
    out: dict[str, bytes] = {}
    pos = 0  # the next local header
    at = cd_off  # the next central entry
    total = 0
    crc32, decompressobj = zlib.crc32, zlib.decompressobj
    for _ in range(count):
        if at + _CENTRAL.size > cd_off + cd_size:
            return None
        (csig, _cver, _csys, cext, cres, cflags, method, ctime, cdate, crc, csize, usize,
         nlen, xlen, clen, dstart, _iattr, _eattr, offset) = _CENTRAL.unpack_from(buf, at)
        if (csig != b"PK\x01\x02" or xlen or clen or dstart or cflags or offset != pos
                or method not in (0, 8)):
            return None
        raw_name = buf[at + _CENTRAL.size:at + _CENTRAL.size + nlen]
        at += _CENTRAL.size + nlen
        if pos + _LOCAL.size + nlen > cd_off:
            return None
        local = _LOCAL.unpack_from(buf, pos)
        if local != (b"PK\x03\x04", cext, cres, cflags, method, ctime, cdate, crc, csize,
                     usize, nlen, 0):
            return None
        start = pos + _LOCAL.size
        if buf[start:start + nlen] != raw_name or not raw_name.isascii():
            return None
        name = raw_name.decode("ascii")
        if name in out or not (name in _FIXED or _EVIDENCE.fullmatch(name)
                               or _CONSISTENCY.fullmatch(name)):
            return None
        if usize > (MAX_MESSAGE_SIZE if name == MESSAGE else MAX_MEMBER_SIZE):
            return None
        start += nlen
        pos = start + csize
        if pos > cd_off:
            return None
        if method == 0:
            if csize != usize:
                return None
            data = buf[start:pos]
        else:
            d = decompressobj(-15)
            try:
                data = d.decompress(buf[start:pos], usize + 1)
            except zlib.error:
                return None
            if not d.eof or d.unused_data or d.unconsumed_tail or len(data) != usize:
                return None
        if crc32(data) != crc:
            return None
        total += usize
        if total > MAX_BUNDLE_SIZE:
            return None
        out[name] = data
    if pos != cd_off or at != cd_off + cd_size:
        return None
    return out


def _read_zip(fileobj: Any) -> dict[str, bytes]:
    import zipfile

    with zipfile.ZipFile(fileobj) as zf:
        infos = zf.infolist()
        if len(infos) > MAX_MEMBERS:
            raise MalformedError("the bundle has too many members")
        out: dict[str, bytes] = {}
        total = 0
        for info in infos:
            name = info.filename
            _check_name(name)
            if name in out:
                raise MalformedError(f"the bundle holds {name} twice")
            if info.flag_bits & 0x1:
                raise MalformedError(f"{name} is encrypted")
            cap = MAX_MESSAGE_SIZE if name == MESSAGE else MAX_MEMBER_SIZE
            if info.file_size > cap:
                raise MalformedError(f"{name} is too large")
            with zf.open(info) as f:
                data = f.read(cap + 1)
            if len(data) > cap:
                raise MalformedError(f"{name} is too large")
            total += len(data)
            if total > MAX_BUNDLE_SIZE:
                raise MalformedError("the bundle's contents are too large")
            out[name] = data
        return out


#: Members up to this size are written uncompressed (ZIP_STORED): a few KB of JSON or
#: text costs more to inflate (zlib's set-up per member) than it saves in the file.
STORED_UP_TO = 64 << 10


def write_members(files: Mapping[str, bytes], *, stored_up_to: int = STORED_UP_TO) -> bytes:
    """A deterministic zip of ``files`` (fixed dates and modes); members up to
    ``stored_up_to`` bytes stored, larger ones deflated. Readers accept both forms
    (bundles written before were deflated throughout: ``stored_up_to=-1``)."""
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in files.items():
            info = zipfile.ZipInfo(name, date_time=_ZIP_DATE)
            info.compress_type = (zipfile.ZIP_STORED if len(data) <= stored_up_to
                                  else zipfile.ZIP_DEFLATED)
            info.external_attr = 0o644 << 16
            info.create_system = 3
            zf.writestr(info, data)
    return buf.getvalue()


# ------------------------------------------------------------------- canonical forms


def receipt_text(obj: Mapping[str, Any]) -> bytes:
    """The one form of evidence/NN-<event>.json: sorted keys, 2-space indent, ASCII, LF."""
    return (json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=True) + "\n").encode("ascii")


def _consistency_text(old: int, new: int, proof: Sequence[bytes]) -> bytes:
    return receipt_text({"old": old, "new": new,
                         "proof": [base64.b64encode(h).decode("ascii") for h in proof]})


_ENCODE_STR: Callable[[str], str] = json.encoder.encode_basestring_ascii  # type: ignore[attr-defined]


def _flat_text(obj: object) -> bytes | None:
    """:func:`receipt_text` of a JSON object whose values are strings, integers, booleans,
    null or lists of strings (receipts and consistency proofs), built directly from the
    encoder's own string escaping instead of by json's pure-Python indenting encoder;
    None for any other value."""
    if type(obj) is not dict:
        return None
    if not obj:
        return b"{}\n"
    enc = _ENCODE_STR
    parts = []
    for key in sorted(obj):
        v = obj[key]
        t = type(v)
        if t is str:
            text = enc(v)
        elif t is int:
            text = int.__repr__(v)
        elif v is True or v is False or v is None:
            text = "true" if v is True else "false" if v is False else "null"
        elif t is list and all(type(x) is str for x in v):
            text = "[\n    " + ",\n    ".join(map(enc, v)) + "\n  ]" if v else "[]"
        else:
            return None
        parts.append(f"  {enc(key)}: {text}")
    return ("{\n" + ",\n".join(parts) + "\n}\n").encode("ascii")


def _json_member(files: Mapping[str, bytes], name: str) -> Any:
    data = files[name]
    try:
        obj = json.loads(data)
    except (ValueError, RecursionError):
        raise _fail(f"{name} is not JSON") from None
    try:
        canonical = _flat_text(obj) or receipt_text(obj)
    except (TypeError, ValueError):
        raise _fail(f"{name} is not in its canonical form") from None
    if canonical != data:
        raise _fail(f"{name} is not in its canonical form")
    return obj


# ------------------------------------------------------------------- verification


@dataclass
class _Event:
    number: int
    stem: str
    receipt: Receipt
    statement: dict[str, Any]
    token: Any  # notary.rfc3161.TokenInfo | None
    checkpoint: Any  # notary.checkpoint.Checkpoint, verified


@dataclass
class _Checked:
    facts: Facts
    checks: list[Check]
    warnings: list[str]
    events: list[_Event]
    vkey_trusted: bool
    root_trusted: bool


class _CachingVerifier(Verifier):
    """A Verifier that remembers signatures it verified, by the exact (text, signature)
    bytes: every bundle of one notary carries the same few checkpoints. A pure function
    of the key and the bytes; only successes are kept."""

    __slots__ = ("_good",)

    def __init__(self, name: str, public_key: bytes) -> None:
        super().__init__(name, public_key)
        self._good: set[tuple[bytes, bytes]] = set()

    def verify(self, text: bytes, signature: bytes) -> None:
        k = (bytes(text), bytes(signature))
        if k in self._good:
            return
        super().verify(text, signature)
        if len(self._good) >= 4096:
            self._good.clear()
        self._good.add(k)


_VERIFIERS: dict[str, _CachingVerifier] = {}

#: Chains already checked in this process, by their exact bytes (every bundle of a
#: notary carries the same chain; the check is a pure function of the bytes).
_CHAINS: dict[bytes, list[x509.Certificate]] = {}


#: Subjects (RFC 4514, cut to 200 characters) and SHA-256 fingerprints of certificates
#: seen in checked chains and tokens; pure functions of the certificate.
_CERT_FACTS: dict[x509.Certificate, tuple[str, str]] = {}


def _cert_facts(cert: x509.Certificate) -> tuple[str, str]:
    got = _CERT_FACTS.get(cert)
    if got is None:
        from cryptography.hazmat.primitives import hashes

        got = (cert.subject.rfc4514_string()[:200], cert.fingerprint(hashes.SHA256()).hex())
        if len(_CERT_FACTS) >= 256:
            _CERT_FACTS.clear()
        _CERT_FACTS[cert] = got
    return got


def _pem_chain(data: bytes) -> list[x509.Certificate]:
    cached = _CHAINS.get(data)
    if cached is not None:
        return list(cached)
    certs = _check_pem_chain(data)
    if len(_CHAINS) >= 64:
        _CHAINS.clear()
    _CHAINS[data] = certs
    return list(certs)


#: Parsed checkpoints by their signed note's bytes (receipts of one notary share them).
_CHECKPOINTS: dict[bytes, Any] = {}


def _checkpoint_of(receipt: Receipt) -> Any:
    """``receipt.checkpoint()``, parsed once per distinct note (a pure function of it)."""
    note = bytes(receipt.proof.checkpoint)
    cp = _CHECKPOINTS.get(note)
    if cp is None:
        cp = receipt.checkpoint()
        if len(_CHECKPOINTS) >= 4096:
            _CHECKPOINTS.clear()
        _CHECKPOINTS[note] = cp
    return cp


def _verifier(vkey: str) -> Verifier:
    """The checkpoint verifier of a vkey text, made once per process (MalformedError)."""
    v = _VERIFIERS.get(vkey)
    if v is None:
        base = Verifier.from_vkey(vkey)
        v = _CachingVerifier(base.name, base.public_key)
        if len(_VERIFIERS) >= 64:
            _VERIFIERS.clear()
        _VERIFIERS[vkey] = v
    return v


def _check_pem_chain(data: bytes) -> list[x509.Certificate]:
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding

    try:
        certs = x509.load_pem_x509_certificates(data)
    except ValueError:
        raise _fail(f"{CHAIN} holds no readable PEM certificates") from None
    if b"".join(c.public_bytes(Encoding.PEM) for c in certs) != data:
        raise _fail(f"{CHAIN} is not in its canonical PEM form")
    if len(certs) > 8:
        raise _fail(f"{CHAIN} holds too many certificates")
    for child, parent in itertools.pairwise(certs):
        try:
            child.verify_directly_issued_by(parent)
        except Exception:
            raise _fail(f"{CHAIN}: a certificate is not issued by the next one") from None
    try:
        certs[-1].verify_directly_issued_by(certs[-1])
    except Exception:
        raise _fail(f"{CHAIN} does not end with a valid self-signed root") from None
    return certs


def _check_token_form(token: bytes, chain: Sequence[x509.Certificate], name: str) -> None:
    """The parts of a CMS SignedData the signature does not cover must be as certmail's TSA
    writes them: no CRLs, no unsigned attributes, NULL or absent algorithm parameters,
    one digest algorithm, embedded certificates only from tsa-chain.pem."""
    from asn1crypto import cms as a_cms
    from asn1crypto import core as a_core
    from cryptography.hazmat.primitives.serialization import Encoding

    sd = a_cms.ContentInfo.load(token, strict=True)["content"]
    if len(sd["digest_algorithms"]) != 1:
        raise _fail(f"{name}: unexpected digest algorithms")
    si = sd["signer_infos"][0]
    for algo in (sd["digest_algorithms"][0], si["digest_algorithm"], si["signature_algorithm"]):
        params = algo["parameters"]
        if params.dump() not in (b"", b"\x05\x00"):
            raise _fail(f"{name}: unexpected algorithm parameters")
    if si["unsigned_attrs"].dump() != b"" or sd["crls"].dump() != b"":
        raise _fail(f"{name}: unexpected unsigned content")
    chain_der = {c.public_bytes(Encoding.DER) for c in chain}
    certs = sd["certificates"]
    for choice in [] if isinstance(certs, a_core.Void) else certs:
        if choice.name != "certificate" or choice.chosen.dump() not in chain_der:
            raise _fail(f"{name}: embeds a certificate that is not in {CHAIN}")


#: Largest header block read from message.eml (as certmail.pgpmime.MAX_HEADER_BLOCK).
_MAX_HEADER_BLOCK = 256 * 1024


@dataclass(frozen=True)
class _Entity:
    """One MIME entity as raw bytes: header block, parsed fields (compat32), body."""

    header_block: bytes
    body: bytes
    headers: Message


def _parse_entity(raw: bytes) -> _Entity:
    """Split ``raw`` into header block and body, exactly as certmail.pgpmime.parse_entity
    does (kept here so that verifying a bundle does not import GnuPG support)."""
    from email.message import Message
    from email.parser import BytesHeaderParser

    if raw.startswith(b"\r\n"):
        return _Entity(b"", raw[2:], Message())
    end = raw.find(b"\r\n\r\n")
    if end < 0:
        if raw.endswith(b"\r\n") and b":" in raw:
            end = len(raw) - 2
        else:
            raise MalformedError("not a MIME entity: no end of the header block")
    if end > _MAX_HEADER_BLOCK:
        raise MalformedError("header block too large")
    block = raw[: end + 2]
    first = block.split(b"\r\n", 1)[0]
    if b":" not in first or first[:1] in (b" ", b"\t"):
        raise MalformedError("not a MIME entity: the first line is not a header field")
    return _Entity(block, raw[end + 4:], BytesHeaderParser().parsebytes(block))


def _split_multipart(entity: _Entity) -> list[bytes]:
    """The raw bytes of each body part (RFC 2046 §5.1.1), as certmail.pgpmime.split_multipart."""
    v = entity.headers.get_param("boundary")
    boundary = None if v is None else str(v[2]) if isinstance(v, tuple) else str(v)
    if not boundary or len(boundary) > 200:
        raise MalformedError("multipart without a usable boundary parameter")
    body = entity.body
    delim = b"--" + boundary.encode("ascii", "replace")
    pattern = re.compile(b"(?:^|\r\n)" + re.escape(delim) + b"(--)?[ \t]*(?:\r\n|$)")
    parts: list[bytes] = []
    start: int | None = None
    closed = False
    for m in pattern.finditer(body):
        if start is not None:
            parts.append(body[start: m.start()])
        if m.group(1):
            closed = True
            break
        start = m.end()
    if not closed:
        raise MalformedError("multipart body has no closing boundary (truncated?)")
    if not parts:
        raise MalformedError("multipart body has no parts")
    return parts


#: A To:/Cc: value of bare ``local@domain`` addresses, comma-separated (dot-atoms only).
_BARE_ADDRESSES = re.compile(
    r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*@[A-Za-z0-9.-]+"
    r"(?:, *[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    r"@[A-Za-z0-9.-]+)*")

#: A header field the fast path reads: a name, a colon, printable ASCII; nothing folded.
_SIMPLE_FIELD = re.compile(rb"([\x21-\x39\x3b-\x7e]+): *([\x20-\x7e]*)")


def _header_facts(message: bytes) -> tuple[str, list[str], str | None, MimeLayout | None]:
    """From:, To:/Cc: addresses, Subject: and the OpenPGP layout of message.eml (best effort)."""
    fast = _header_facts_simple(message)
    return fast if fast is not None else _header_facts_email(message)


def _header_facts_simple(message: bytes) -> tuple[str, list[str], str | None, None] | None:
    """:func:`_header_facts_email`'s answer for the common header block, read directly: every
    line a ``Name: value`` field of printable ASCII (no folding, tabs, encoded words or bare
    CR/LF), not OpenPGP/MIME. None for anything else (the email package decides). For such a
    block compat32 gives each value as the text after the colon less leading blanks, and
    make_header(decode_header(v)) is ``v`` (test: equal to the email package's answer)."""
    end = message.find(b"\r\n\r\n")
    if end <= 0 or end > _MAX_HEADER_BLOCK:
        return None
    block = message[:end]
    if not block.isascii() or b"=?" in block:
        return None
    fields: list[tuple[str, str]] = []
    match = _SIMPLE_FIELD.fullmatch
    for line in block.split(b"\r\n"):
        m = match(line)
        if m is None:
            return None
        fields.append((m.group(1).decode("ascii").lower(), m.group(2).decode("ascii")))

    def first(name: str) -> str | None:
        return next((v for k, v in fields if k == name), None)

    ctype_value = first("content-type")
    if ctype_value is not None:
        ctype = ctype_value.partition(";")[0].strip().lower()
        if ctype in ("multipart/signed", "multipart/encrypted"):
            return None  # OpenPGP/MIME: the layout needs the full parser
    sender = (first("from") or "")[:300] or "(no From: header)"
    rcpts: list[str] = []
    values = [v for want in ("to", "cc") for k, v in fields if k == want]
    if all(_BARE_ADDRESSES.fullmatch(v) for v in values):
        # Plain comma-separated addr-specs (what certmail writes): getaddresses would
        # return each one as it is.
        addrs = [a.strip() for v in values for a in v.split(",")]
    else:
        from email.utils import getaddresses

        addrs = [addr for _name, addr in getaddresses(values)]
    for addr in addrs:
        if addr and addr not in rcpts:
            rcpts.append(addr[:300])
    subject = first("subject")
    return sender, rcpts, None if subject is None else subject[:300], None


def _header_facts_email(message: bytes) -> tuple[str, list[str], str | None, MimeLayout | None]:
    """:func:`_header_facts` by the email package (compat32), for any message."""
    from email.header import decode_header, make_header
    from email.utils import getaddresses

    from certmail.certificate import MimeLayout

    try:
        entity = _parse_entity(message)
    except (MalformedError, ValueError, LookupError):
        return "(message.eml has no readable header)", [], None, None

    def text(value: object) -> str:
        try:
            return str(make_header(decode_header(str(value))))[:300]
        except (ValueError, LookupError, UnicodeError, TypeError):
            return str(value)[:300]

    h = entity.headers
    sender = text(h.get("From", "")) or "(no From: header)"
    rcpts: list[str] = []
    for _name, addr in getaddresses([str(v) for k in ("To", "Cc") for v in h.get_all(k, [])]):
        if addr and addr not in rcpts:
            rcpts.append(addr[:300])
    subject = text(h["Subject"]) if h.get("Subject") is not None else None
    layout = None
    try:
        ctype = entity.headers.get_content_type()
        if ctype in ("multipart/signed", "multipart/encrypted"):
            parts = _split_multipart(entity)
            base = len(entity.header_block) + 2
            if len(parts) == 2:
                off0 = entity.body.find(parts[0])
                off1 = entity.body.find(parts[1], off0 + len(parts[0]))
                second = _parse_entity(parts[1])
                cte = str(second.headers.get("Content-Transfer-Encoding") or "7bit").lower()
                body_off = base + off1 + len(second.header_block) + 2
                if off0 >= 0 and off1 >= 0 and cte.strip() in ("7bit", "8bit"):
                    if ctype == "multipart/signed":
                        layout = MimeLayout("signed", (base + off0, len(parts[0])),
                                            (body_off, len(second.body)))
                    else:
                        layout = MimeLayout("encrypted", (body_off, len(second.body)))
    except (MalformedError, ValueError, LookupError):
        layout = None
    return sender, rcpts, subject, layout


def _details(stmt: Mapping[str, Any]) -> tuple[str, ...]:
    out = []
    mx = stmt.get("mx") or stmt.get("host")
    if isinstance(mx, str):
        out.append(f"server: {mx[:200]}")
    reply = stmt.get("reply")
    if isinstance(reply, dict):
        reply = f"{reply.get('code', '')} {reply.get('text', '')}".strip()
    if isinstance(reply, str):
        out.append(f"reply: {reply[:300]}")
    reason = stmt.get("reason")
    if isinstance(reason, str):
        out.append(f"reason: {reason[:300]}")
    tls = stmt.get("tls")
    if isinstance(tls, dict):
        out.append(f"TLS: {str(tls.get('version', ''))[:40]} {str(tls.get('cipher', ''))[:80]}")
    fpr = stmt.get("fingerprint")
    if isinstance(fpr, str):
        out.append(f"signer key: {fpr[:80]}")
    return tuple(out)


def _check(
    files: Mapping[str, bytes],
    vkey: str | None,
    tsa_roots: Sequence[x509.Certificate] | None,
    keyring: Keyring | None,
    *,
    documents: bool,
) -> _Checked:
    """Verify every machine-readable member; derive the facts. Raises VerificationError."""

    from certmail.certificate import CheckpointFact, EventFact, Facts, TsaFact
    from notary import merkle
    from notary.receipt import Receipt
    from notary.rfc3161 import verify_token

    checks: list[Check] = []
    warnings: list[str] = []
    required = [MESSAGE, VKEY, CHAIN] + ([HTML, PDF, VERIFY_TXT] if documents else [])
    for name in required:
        if name not in files:
            raise _fail(f"the bundle has no {name}")

    # message.eml
    message = files[MESSAGE]
    digest = hashlib.sha256(message).digest()
    sha256 = digest.hex()

    # notary.vkey: one line, the key and a newline
    raw_vkey = files[VKEY]
    try:
        vkey_text = raw_vkey.decode("ascii")
    except UnicodeDecodeError:
        raise _fail(f"{VKEY} is not a verifier key") from None
    if not vkey_text.endswith("\n") or vkey_text.count("\n") != 1:
        raise _fail(f"{VKEY} must be one line")
    try:
        bundle_verifier = _verifier(vkey_text[:-1])
    except MalformedError as e:
        raise _fail(f"{VKEY}: {e.message}") from None
    if vkey is not None:
        try:
            trusted = _verifier(vkey.strip())
        except MalformedError as e:
            raise VerificationError(f"the trusted verifier key is malformed: {e.message}") from None
        if trusted != bundle_verifier or trusted.vkey() != vkey_text[:-1]:
            raise _fail(f"{VKEY} is not the trusted verifier key {trusted.vkey()}")
        checks.append(Check("notary key", "ok", f"{VKEY} is the trusted key {trusted.vkey()}"))
    else:
        trusted = bundle_verifier
        warnings.append(_UNTRUSTED_VKEY)
        checks.append(Check("notary key", "warning", f"not pinned: using {VKEY} from the bundle"))

    # tsa-chain.pem
    chain = _pem_chain(files[CHAIN])
    if tsa_roots:
        roots = list(tsa_roots)
        last = chain[-1]
        if last not in roots and not any(_issued_by(last, r) for r in roots):
            raise _fail(f"{CHAIN} does not end at a trusted TSA root")
        root_trusted = True
        checks.append(Check("TSA chain", "ok", f"{CHAIN} ends at a trusted root"))
    else:
        roots = [chain[-1]]
        root_trusted = False
        warnings.append(_UNTRUSTED_ROOT)
        checks.append(Check("TSA chain", "warning",
                            f"not pinned: using the root at the end of {CHAIN}"))

    # evidence
    numbered: dict[int, dict[str, str]] = {}
    consistency_files: dict[tuple[int, int], str] = {}
    for name in files:
        m = _EVIDENCE.fullmatch(name)
        if m:
            numbered.setdefault(int(m.group(1)), {})[m.group(3)] = name
            continue
        c = _CONSISTENCY.fullmatch(name)
        if c:
            consistency_files[(int(c.group(1)), int(c.group(2)))] = name
    if not numbered:
        raise _fail("the bundle holds no evidence")
    if sorted(numbered) != list(range(1, len(numbered) + 1)) or len(numbered) > MAX_EVENTS:
        raise _fail("evidence files are not numbered 01, 02, ... without gaps")

    events: list[_Event] = []
    message_id: str | None = None
    for n in range(1, len(numbered) + 1):
        names = numbered[n]
        if "json" not in names or "tlog-proof" not in names:
            raise _fail(f"evidence {n:02d} lacks its .json or .tlog-proof file")
        stems = {nm.rsplit(".", 1)[0] for nm in names.values()}
        if len(stems) != 1:
            raise _fail(f"evidence {n:02d} files name different events")
        stem = stems.pop().removeprefix("evidence/")
        jname = names["json"]
        obj = _json_member(files, jname)
        try:
            receipt = Receipt.from_json(obj)
            stmt = receipt.verify(trusted)
        except VerificationError as err:
            raise _fail(f"{jname}: {err.message}") from None
        if stem != f"{n:02d}-{stmt['event']}":
            raise _fail(f"{jname} holds a {stmt['event']} statement, not what its name says")
        if stmt["message"]["sha256"] != sha256:
            raise _fail(f"{jname} is about message {stmt['message']['sha256']}, "
                        f"not message.eml ({sha256})")
        if message_id is None:
            message_id = stmt["message"]["id"]
        elif stmt["message"]["id"] != message_id:
            raise _fail(f"{jname} names another Message-ID")
        if files[names["tlog-proof"]] != obj["proof"].encode("utf-8"):
            raise _fail(f"{names['tlog-proof']} is not the proof in {jname}")
        token: Any = None
        if (receipt.tst is None) != ("tsr" not in names):
            raise _fail(f"evidence {n:02d}: the .tsr file and the receipt's tst disagree")
        if receipt.tst is not None:
            tname = names["tsr"]
            if files[tname] != receipt.tst:
                raise _fail(f"{tname} is not the token in {jname}")
            try:
                token = verify_token(receipt.tst, roots=roots, data=message, certificates=chain)
                if not token.from_template:  # not in our TSA's exact layout
                    _check_token_form(receipt.tst, chain, tname)
            except VerificationError as err:
                raise _fail(f"{tname}: {err.message}") from None
            except (ValueError, TypeError, KeyError, IndexError) as err:
                raise _fail(f"{tname}: malformed token ({err})") from None
            checks.append(Check(f"{n:02d} time-stamp", "ok",
                                f"{tname}: RFC 3161 token over message.eml, "
                                f"genTime {token.gen_time:%Y-%m-%dT%H:%M:%SZ}"))
        checks.append(Check(f"{n:02d} {stmt['event']}", "ok",
                            f"{jname}: entry included at index {receipt.index} under a "
                            f"checkpoint signed by the notary key; statement about message.eml"))
        events.append(_Event(n, stem, receipt, stmt, token, _checkpoint_of(receipt)))
    order = sorted(events, key=lambda e: (e.statement["time"], e.receipt.index))
    if [e.number for e in order] != [e.number for e in events]:
        raise _fail("evidence files are not in time order")
    assert message_id is not None

    # checkpoints and consistency
    cps: dict[int, Any] = {}
    for ev in events:
        cp = ev.checkpoint
        have = cps.get(cp.size)
        if have is not None and have.root_hash != cp.root_hash:
            raise _fail(f"two checkpoints of size {cp.size} with different roots: the log forked")
        cps[cp.size] = cp
    sizes = sorted(cps)
    pairs = list(itertools.pairwise(sizes))
    if set(consistency_files) != set(pairs):
        raise _fail("the consistency proofs do not match the checkpoints "
                    f"(need {[f'{m}-{n}' for m, n in pairs]})")
    for old, new in pairs:
        cname = consistency_files[(old, new)]
        obj = _json_member(files, cname)
        try:
            if not isinstance(obj, dict) or set(obj) != {"old", "new", "proof"} or (
                obj["old"], obj["new"]) != (old, new) or not isinstance(obj["proof"], list):
                raise ValueError("members")
            proof = [base64.b64decode(h, validate=True) for h in obj["proof"]]
            merkle.verify_consistency(old, new, proof, cps[old].root_hash, cps[new].root_hash)
        except VerificationError as err:
            raise _fail(f"{cname}: {err.message}") from None
        except (ValueError, TypeError):
            raise _fail(f"{cname} is not a consistency proof") from None
        checks.append(Check("consistency", "ok",
                            f"{cname}: the checkpoint of size {new} extends that of size {old}"))

    sender, rcpts, subject, layout = _header_facts(message)
    for ev in events:
        for key in ("recipient", "recipients"):
            v = ev.statement.get(key)
            for r in [v] if isinstance(v, str) else v if isinstance(v, list) else []:
                if isinstance(r, str) and r not in rcpts:
                    rcpts.append(r[:300])

    checks.extend(_check_pgp(message, layout, sender, keyring))
    checks.extend(_check_acks(events, rcpts, sha256, keyring))

    fp = [_cert_facts(c) for c in chain]
    facts = Facts(
        sha256=sha256,
        message_id=message_id,
        size=len(message),
        sender=sender,
        recipients=tuple(rcpts),
        subject=subject,
        vkey=trusted.vkey(),
        events=tuple(
            EventFact(
                number=e.number,
                event=e.statement["event"],
                time=e.statement["time"],
                index=e.receipt.index,
                recipient=e.statement.get("recipient")
                if isinstance(e.statement.get("recipient"), str) else None,
                details=_details(e.statement),
                checkpoint_size=e.checkpoint.size,
                leaf_hash=merkle.leaf_hash(e.receipt.entry).hex(),
                proof_hashes=tuple(h.hex() for h in e.receipt.proof.hashes),
                stem=e.stem,
                tsa=None if e.token is None else TsaFact(
                    file=f"evidence/{e.stem}.tsr",
                    gen_time=f"{e.token.gen_time:%Y-%m-%dT%H:%M:%S.%fZ}",
                    serial=format(e.token.serial, "x"),
                    policy=e.token.policy,
                    signer=_cert_facts(e.token.tsa_cert)[0],
                ),
            )
            for e in events
        ),
        checkpoints=tuple(CheckpointFact(cps[s].origin, s, cps[s].root_hash.hex())
                          for s in sizes),
        consistency=tuple(pairs),
        tsa_chain=tuple(fp),
        mime=layout,
    )
    return _Checked(facts, checks, warnings, events, vkey is not None, root_trusted)


def _issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(issuer)
    except Exception:
        return False
    return True


def _check_pgp(message: bytes, layout: MimeLayout | None, sender: str,
               keyring: Keyring | None) -> list[Check]:
    """The sender's OpenPGP signature, as far as a third party can check it."""
    if layout is None:
        return [Check("sender signature", "skipped", "message.eml is not OpenPGP/MIME")]
    if layout.kind == "encrypted":
        return [Check("sender signature", "skipped",
                      "encrypted: signature inside, checkable by a recipient")]
    if keyring is None:
        return [Check("sender signature", "skipped", "no keyring given")]
    from email.utils import parseaddr

    from keys.gpg import IMPORT_HINT

    assert layout.signature is not None
    (o1, n1), (o2, n2) = layout.first, layout.signature
    try:
        info = keyring.verify_detached(message[o1:o1 + n1], message[o2:o2 + n2])
    except VerificationError as e:
        if e.hint == IMPORT_HINT:
            return [Check("sender signature", "skipped", "the sender's key is not in the keyring")]
        raise _fail(f"the sender's signature in message.eml: {e.message}") from None
    addr = parseaddr(sender)[1].lower()
    if info.signer_email is None or info.signer_email.lower() != addr:
        raise _fail(f"message.eml is signed by {info.signer_email or info.fingerprint}, "
                    f"not by its From: address {addr or '(none)'}")
    return [Check("sender signature", "ok",
                  f"good OpenPGP signature by {info.signer_email} ({info.primary_fingerprint})")]


def _not_recipients_key(number: int, signer: str, recipient: str, theirs: str | None) -> \
        VerificationError:
    """The acknowledgement is genuine evidence, but not by the recipient: it proves nothing
    about receipt. Exit 3 like any failed item; the message says what was found."""
    held = (f"the keyring's key for {recipient} is {theirs}" if theirs
            else f"the keyring holds no key for {recipient}")
    return VerificationError(
        f"evidence {number:02d}: the acknowledgement is signed by {signer}, which is not a "
        f"recipient's key ({held}); it does not prove that {recipient} received the message",
        hint="if the recipient really changed keys, import the new key from a source you trust")


def _check_acks(events: Sequence[_Event], recipients: Sequence[str], sha256: str,
                keyring: Keyring | None) -> list[Check]:
    """ContentHandover acknowledgements against the recipients' keys.

    The key that signed must be the one the keyring uses for the acknowledging
    recipient's address (as the sender's ``certmail receipts`` checks it): a key
    that merely carries the same user id is *not a recipient's key*.
    """
    from keys.errors import NotFoundError

    out = []
    rcpts = {r.lower() for r in recipients}
    for e in events:
        if e.statement["event"] != "ContentHandover":
            continue
        label = f"{e.number:02d} acknowledgement"
        sig, signed, fpr, who = (e.statement.get(k)
                                 for k in ("signature", "signed", "fingerprint", "recipient"))
        if not (isinstance(sig, str) and isinstance(signed, str) and isinstance(fpr, str)
                and isinstance(who, str)):
            raise _fail(f"evidence {e.number:02d}: the acknowledgement lacks signature, "
                        "signed, fingerprint or recipient")
        if sha256 not in signed:
            raise _fail(f"evidence {e.number:02d}: the acknowledgement is about another message")
        who = who.lower()
        if who not in rcpts:
            raise VerificationError(f"evidence {e.number:02d}: the acknowledgement is by {who}, "
                                    "who is not a recipient of the message")
        if keyring is None:
            out.append(Check(label, "skipped", f"no keyring given (signer key {fpr})"))
            continue
        from keys.gpg import normalize_fingerprint  # only when a key is checked

        signer = normalize_fingerprint(fpr)
        held = [k for k in keyring.list_keys() if who in (m.lower() for m in k.emails)]
        certified = [k for k in held if k.validity in ("full", "ultimate")]
        if len(held) > 1 and not certified:
            out.append(Check(label, "skipped", f"several keys for {who} in the keyring and "
                                               f"none certified: cannot tell whether {fpr} "
                                               f"is {who}'s"))
            continue
        theirs_all = [k.fingerprint.upper() for k in (certified or held)]
        theirs = " or ".join(theirs_all) or None
        if theirs is not None and signer not in theirs_all:
            raise _not_recipients_key(e.number, signer, who, theirs)
        try:
            keyring.key_for(signer)
        except NotFoundError:
            out.append(Check(label, "skipped", f"neither the signer's key {fpr} nor a key for "
                                               f"{who} is in the keyring"))
            continue
        try:
            info = keyring.verify_detached(signed.encode("utf-8"), sig.encode("utf-8"))
        except VerificationError as ex:
            raise _fail(f"evidence {e.number:02d}: acknowledgement signature: {ex.message}") \
                from None
        if signer not in (info.primary_fingerprint, info.fingerprint):
            raise _fail(f"evidence {e.number:02d}: the acknowledgement was signed by "
                        f"{info.primary_fingerprint}, not the key it names ({fpr})")
        email = (info.signer_email or "").lower()
        if theirs is None or email != who:
            raise _not_recipients_key(e.number, f"{info.primary_fingerprint} ({email or '?'})",
                                      who, theirs)
        out.append(Check(label, "ok", f"signed by recipient {email} ({info.primary_fingerprint})"))
    return out


def _documents(facts: Facts, reveal_subject: bool) -> dict[str, bytes]:
    from dataclasses import replace

    from certmail.certificate import render_html, render_pdf, render_verify_txt

    shown = facts if reveal_subject else replace(facts, subject=None)
    return {HTML: render_html(shown), PDF: render_pdf(shown), VERIFY_TXT: render_verify_txt(facts)}


def _documents_match(files: Mapping[str, bytes], facts: Facts) -> bool:
    """True when the three documents are those rendered from ``facts``, the Subject: hidden
    or shown (as :func:`_documents` renders them), rendering only as far as needed."""
    from dataclasses import replace

    from certmail.certificate import render_html, render_pdf, render_verify_txt

    if files[VERIFY_TXT] != render_verify_txt(facts):
        return False
    hidden = facts if facts.subject is None else replace(facts, subject=None)
    shown = [hidden] if hidden is facts else [hidden, facts]
    return any(files[HTML] == render_html(f) and files[PDF] == render_pdf(f) for f in shown)


def verify_bundle(
    source: str | Path | bytes,
    *,
    vkey: str | None,
    tsa_roots: Sequence[x509.Certificate] | None = None,
    keyring: Keyring | None = None,
) -> BundleReport:
    """Verify a proof bundle offline; return what it proves or raise VerificationError.

    ``vkey`` is the notary's verifier key from a source the caller trusts;
    ``None`` falls back to the bundle's notary.vkey with a warning in the
    report. ``tsa_roots`` likewise for the TSA. With a ``keyring``, the
    sender's signature (signed-only messages) and recipients' acknowledgements
    are checked where the keyring holds the keys.
    """
    files = read_members(source)
    checked = _check(files, vkey, tsa_roots, keyring, documents=True)
    facts = checked.facts
    if not _documents_match(files, facts):
        bad = [n for n in (HTML, PDF, VERIFY_TXT)
               if files[n] not in (_documents(facts, False)[n], _documents(facts, True)[n])]
        raise _fail(f"{', '.join(bad) or HTML} does not match the evidence")
    checked.checks.append(Check("documents", "ok", f"{HTML}, {PDF} and {VERIFY_TXT} "
                                "regenerated from the evidence: identical"))
    from certmail.certificate import proves

    return BundleReport(
        sha256=facts.sha256,
        message_id=facts.message_id,
        sender=facts.sender,
        recipients=facts.recipients,
        vkey=facts.vkey,
        vkey_trusted=checked.vkey_trusted,
        tsa_root_trusted=checked.root_trusted,
        events=tuple(
            ReportEvent(
                number=ef.number, event=ef.event, time=ef.time, recipient=ef.recipient,
                index=ef.index, checkpoint_size=ef.checkpoint_size,
                timestamp=ef.tsa.gen_time if ef.tsa else None,
                proves=proves(ef.event, ef.tsa is not None),
            )
            for ef in facts.events
        ),
        checks=tuple(checked.checks),
        warnings=tuple(checked.warnings),
    )


# ------------------------------------------------------------------- export


def export_bundle(
    message: bytes,
    receipts: Sequence[Mapping[str, Any]],
    *,
    vkey: str,
    tsa_chain_pem: bytes,
    consistency: Callable[[int, int], Sequence[bytes]] | None = None,
    reveal_subject: bool = False,
) -> bytes:
    """The bytes of a proof bundle for ``message`` and its ``receipts`` (DESIGN §4.5).

    Receipts are JSON objects as the notary answers them (fresh ones, and older
    ones the sender kept); of several receipts for the same entry the one with
    the smallest checkpoint is kept (the receipt issued nearest the event, a
    token preferred on a tie), so the bundle holds the checkpoints of the
    events' times and the consistency proofs linking them. ``consistency(old, new)``
    returns the RFC 9162 consistency proof between two tree sizes (the
    notary's ``GET /v1/proof/consistency``); it is called for each pair of
    successive checkpoints the receipts use. The bundle is verified against
    ``vkey`` and the chain's own root before it is returned (VerificationError).
    """
    from notary.note import Verifier
    from notary.receipt import Receipt

    verifier = Verifier.from_vkey(vkey.strip())
    best: dict[bytes, Receipt] = {}
    for obj in receipts:
        r = Receipt.from_json(dict(obj))
        r.verify(verifier)
        have = best.get(r.entry)
        if have is None or (r.checkpoint().size, r.tst is None) < (
                have.checkpoint().size, have.tst is None):
            best[r.entry] = r
    if not best:
        raise ValueError("no receipts to export")
    if len(best) > MAX_EVENTS:
        raise ValueError(f"more than {MAX_EVENTS} events")
    from notary.evidence import parse_statement

    ordered = sorted(best.values(),
                     key=lambda r: (parse_statement(r.entry)["time"], r.index))
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding

    try:
        chain = x509.load_pem_x509_certificates(tsa_chain_pem)
    except ValueError:
        raise MalformedError("the TSA chain holds no PEM certificates") from None
    files: dict[str, bytes] = {
        MESSAGE: message,
        VKEY: (verifier.vkey() + "\n").encode("ascii"),
        CHAIN: b"".join(c.public_bytes(Encoding.PEM) for c in chain),
    }
    for n, r in enumerate(ordered, start=1):
        stem = f"evidence/{n:02d}-{parse_statement(r.entry)['event']}"
        files[f"{stem}.json"] = receipt_text(r.to_json())
        files[f"{stem}.tlog-proof"] = r.proof.to_bytes()
        if r.tst is not None:
            files[f"{stem}.tsr"] = r.tst
    sizes = sorted({r.checkpoint().size for r in ordered})
    for m, n in itertools.pairwise(sizes):
        if consistency is None:
            raise ValueError("receipts use several checkpoints: pass consistency=")
        files[f"evidence/consistency-{m}-{n}.json"] = _consistency_text(m, n, consistency(m, n))
    checked = _check(files, verifier.vkey(), None, None, documents=False)
    files.update(_documents(checked.facts, reveal_subject))
    data = write_members(files)
    verify_bundle(data, vkey=verifier.vkey())
    return data
