"""DKIM keys, signatures and verification (RFC 6376; Ed25519 per RFC 8463).

Keys live in one directory as PKCS#8 PEM files named
``<domain>.<selector>.<algorithm>.key`` (mode 0600), algorithm ``ed25519``
(``ed25519-sha256``) or ``rsa`` (2048-bit, ``rsa-sha256``). Signing returns only
the ``DKIM-Signature`` header to prepend: the message itself is never
re-serialised (DESIGN §5). dkimpy does the canonicalisation and hashing of
messages in memory (:func:`dkim_sign`, :func:`dkim_verify`);
:func:`dkim_sign_file` and :func:`dkim_verify_file` stream the body of a
message file through :class:`~keys.dkim_body.BodyHash` (RFC 6376 §3.4.3/§3.4.4 body
canonicalization and §3.7 hashing, incremental) and let dkimpy sign or verify
only the header hash, so memory does not grow with the message.
"""

from __future__ import annotations

import base64
import logging
import os
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from keys.dkim_body import (
    MAX_HEADER_BLOCK,
    SIGNING_CANONICALIZATION,
    BodyHash,
    body_hash_file,
    read_head,
)
from keys.errors import ConflictError, KeyMaterialError, MalformedError, VerificationError

__all__ = [
    "ALGORITHMS",
    "DEFAULT_HEADERS",
    "MAX_HEADER_BLOCK",
    "RSA_BITS",
    "SIGNATURE_ALGORITHM",
    "BodyHash",
    "DkimKey",
    "body_hash_file",
    "dkim_sign",
    "dkim_sign_file",
    "dkim_verify",
    "dkim_verify_file",
    "dns_record",
    "find_dkim_key",
    "generate_dkim_key",
    "key_path",
    "signing_domain",
]

ALGORITHMS = ("ed25519", "rsa")
SIGNATURE_ALGORITHM = {"ed25519": b"ed25519-sha256", "rsa": b"rsa-sha256"}
RSA_BITS = 2048

# Signed, and listed once more than they occur ("oversigned") so that no one
# can add such a header after signing without breaking the signature.
DEFAULT_HEADERS: tuple[bytes, ...] = (
    b"from",
    b"to",
    b"cc",
    b"subject",
    b"date",
    b"message-id",
    b"reply-to",
    b"in-reply-to",
    b"references",
    b"mime-version",
    b"content-type",
    b"content-transfer-encoding",
    b"autocrypt",
)


@dataclass(frozen=True)
class DkimKey:
    """A DKIM private key on disk for ``domain`` under ``selector``."""

    domain: str
    selector: str
    algorithm: str
    private_key_path: Path


def _check_label(value: str, what: str) -> str:
    value = value.strip().lower().rstrip(".")
    labels = value.split(".")
    if not value or any(
        not label or len(label) > 63 or not all(c.isalnum() or c in "-_" for c in label)
        for label in labels
    ):
        raise KeyMaterialError(f"not a valid DKIM {what}: {value!r}")
    return value


def key_path(directory: Path, domain: str, selector: str, algorithm: str) -> Path:
    """Where the key for ``domain``/``selector``/``algorithm`` is kept."""
    return Path(directory) / f"{domain}.{selector}.{algorithm}.key"


def generate_dkim_key(
    directory: Path, domain: str, selector: str, algorithm: str = "ed25519"
) -> Path:
    """Create a new DKIM key file (0600); ConflictError if it already exists."""
    domain = _check_label(domain, "domain")
    selector = _check_label(selector, "selector")
    if "." in selector:
        raise KeyMaterialError(f"use a selector without dots: {selector!r}")
    if algorithm not in ALGORITHMS:
        raise KeyMaterialError(f"unknown DKIM algorithm {algorithm!r}: use ed25519 or rsa")
    directory = Path(directory)
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = key_path(directory, domain, selector, algorithm)
    private: ed25519.Ed25519PrivateKey | rsa.RSAPrivateKey
    if algorithm == "ed25519":
        private = ed25519.Ed25519PrivateKey.generate()
    else:
        private = rsa.generate_private_key(public_exponent=65537, key_size=RSA_BITS)
    pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError as e:
        raise ConflictError(
            f"a DKIM key for {domain} with selector {selector} exists: {path}",
            hint=f"certmail keys dkim record --domain {domain}",
        ) from e
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
        f.flush()
        os.fsync(f.fileno())
    return path


def find_dkim_key(directory: Path, domain: str) -> DkimKey | None:
    """The newest DKIM key for ``domain`` in ``directory``, or ``None``."""
    directory = Path(directory)
    domain = domain.strip().lower().rstrip(".")
    if not directory.is_dir() or not domain:
        return None
    found: list[tuple[float, DkimKey]] = []
    for path in directory.iterdir():
        name = path.name
        for algorithm in ALGORITHMS:
            suffix = f".{algorithm}.key"
            if name.startswith(domain + ".") and name.endswith(suffix):
                selector = name[len(domain) + 1 : -len(suffix)]
                if selector and "." not in selector:
                    key = DkimKey(domain, selector, algorithm, path)
                    found.append((path.stat().st_mtime, key))
    if not found:
        return None
    found.sort(key=lambda item: (item[0], item[1].selector))
    return found[-1][1]


def _load_private(key: DkimKey) -> ed25519.Ed25519PrivateKey | rsa.RSAPrivateKey:
    try:
        private = serialization.load_pem_private_key(
            key.private_key_path.read_bytes(), password=None
        )
    except (OSError, ValueError, TypeError) as e:
        raise KeyMaterialError(f"cannot read DKIM key {key.private_key_path}: {e}") from e
    if not isinstance(private, ed25519.Ed25519PrivateKey | rsa.RSAPrivateKey):
        raise KeyMaterialError(f"{key.private_key_path} is not an Ed25519 or RSA key")
    return private


def dns_record(key: DkimKey) -> tuple[str, str]:
    """The TXT record to publish: (``<selector>._domainkey.<domain>``, ``v=DKIM1; ...``)."""
    private = _load_private(key)
    if isinstance(private, ed25519.Ed25519PrivateKey):
        raw = private.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        k = "ed25519"
    else:
        raw = private.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        k = "rsa"
    p = base64.b64encode(raw).decode("ascii")
    return f"{key.selector}._domainkey.{key.domain}", f"v=DKIM1; k={k}; p={p}"


def _dkimpy_private(private: ed25519.Ed25519PrivateKey | rsa.RSAPrivateKey) -> bytes:
    """dkimpy's key format: PEM for RSA, base64 of the 32-byte seed for Ed25519."""
    if isinstance(private, ed25519.Ed25519PrivateKey):
        seed = private.private_bytes(
            serialization.Encoding.Raw,
            serialization.PrivateFormat.Raw,
            serialization.NoEncryption(),
        )
        return base64.b64encode(seed)
    return private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def _logger() -> tuple[logging.Logger, _Collect]:
    logger = logging.Logger("certmail.dkim")
    handler = _Collect()
    logger.addHandler(handler)
    return logger, handler


def _header_names(message: bytes) -> list[bytes]:
    head = message.split(b"\r\n\r\n", 1)[0].split(b"\n\n", 1)[0]
    names = []
    for line in head.splitlines():
        if line and line[:1] not in (b" ", b"\t") and b":" in line:
            names.append(line.split(b":", 1)[0].strip().lower())
    return names


def _headers_to_sign(present: list[bytes], headers: Sequence[bytes] | None) -> list[bytes]:
    """The h= list: the given names, or each default header once more than it occurs
    (so a header of that name added later breaks the signature)."""
    if b"from" not in present:
        raise MalformedError("cannot DKIM-sign a message without a From: header")
    if headers is not None:
        return [h.lower() for h in headers]
    chosen: list[bytes] = []
    for name in DEFAULT_HEADERS:
        chosen += [name] * (present.count(name) + 1)
    return chosen


def dkim_sign(message: bytes, key: DkimKey, *, headers: Sequence[bytes] | None = None) -> bytes:
    """The ``DKIM-Signature:`` header (CRLF-terminated, folded) to prepend to ``message``.

    Canonicalisation is relaxed/relaxed. By default the headers of
    :data:`DEFAULT_HEADERS` that the message has are signed and oversigned.
    """
    import dkim

    private = _load_private(key)
    present = _header_names(message)
    chosen = _headers_to_sign(present, headers)
    logger, collected = _logger()
    try:
        sig = dkim.sign(
            message,
            key.selector.encode(),
            key.domain.encode(),
            _dkimpy_private(private),
            canonicalize=(b"relaxed", b"relaxed"),
            signature_algorithm=SIGNATURE_ALGORITHM[key.algorithm],
            include_headers=chosen,
            logger=logger,
            linesep=b"\r\n",
        )
    except dkim.DKIMException as e:
        raise KeyMaterialError(f"DKIM signing failed: {e}") from e
    if not sig:
        raise KeyMaterialError("DKIM signing failed: " + "; ".join(collected.messages))
    out = bytes(sig)
    return out if out.endswith(b"\r\n") else out.rstrip(b"\r\n") + b"\r\n"


def _verifier(
    message: bytes, dnsfunc: Callable[[bytes], bytes] | None
) -> tuple[Any, int, Any, dict[str, object]]:
    """dkimpy's verifier over ``message`` (its header block at least), the number of
    DKIM-Signature fields (VerificationError when none), the collected log, and the
    keyword arguments that route key lookups to ``dnsfunc``."""
    import dkim

    count = _header_names(message).count(b"dkim-signature")
    if count == 0:
        raise VerificationError("the message has no DKIM signature")
    logger, collected = _logger()
    d = dkim.DKIM(message, logger=logger, minkey=1024)
    kwargs: dict[str, object] = {}
    if dnsfunc is not None:
        lookup = dnsfunc

        def txt(name: bytes, timeout: int = 5) -> bytes:
            return lookup(name.rstrip(b"."))

        kwargs["dnsfunc"] = txt
    return d, count, collected, kwargs


def dkim_verify(message: bytes, *, dnsfunc: Callable[[bytes], bytes] | None = None) -> None:
    """Return if at least one DKIM signature of ``message`` verifies, else raise.

    ``dnsfunc(name) -> TXT record`` answers the key lookups (offline checks,
    tests): ``name`` is ``b"<selector>._domainkey.<domain>"`` without a final
    dot; return ``b""`` for no record. Without it dkimpy asks DNS.
    """

    d, count, collected, kwargs = _verifier(message, dnsfunc)

    def attempt(idx: int) -> str | None:
        return None if d.verify(idx=idx, **kwargs) else _mismatch(collected)

    _first_that_verifies(count, attempt)


def _mismatch(collected: Any) -> str:
    """Why dkimpy said no: its last log message."""
    return str(collected.messages[-1]) if collected.messages else "signature mismatch"


def _first_that_verifies(count: int, attempt: Callable[[int], str | None]) -> None:
    """Return at the first signature index ``attempt`` verifies (it answers None), else
    raise VerificationError with every distinct reason: the one ``attempt`` answers, or
    the exception it raised."""
    import dkim

    reasons: list[str] = []
    for idx in range(count):
        try:
            reason = attempt(idx)
        except dkim.DKIMException as e:
            reason = str(e)
        except Exception as e:  # dkimpy lets DNS and parsing errors through
            reason = f"{type(e).__name__}: {e}"
        if reason is None:
            return
        reasons.append(reason)
    detail = "; ".join(dict.fromkeys(reasons))
    raise VerificationError(f"DKIM signature did not verify: {detail}")


def signing_domain(field_value: str | bytes) -> str | None:
    """The ``d=`` domain of a DKIM-Signature field value, or None if it has none.

    The tag=value list is read by dkimpy's own parser (RFC 6376 §3.2,
    :func:`dkim.util.parse_tag_value`) after unfolding; folding whitespace
    inside the value is removed (§3.5 allows FWS in ``d=``). A list dkimpy
    cannot parse (duplicate tags, a tag without ``=``) has no domain.
    """
    from dkim.util import InvalidTagValueList, parse_tag_value

    raw = field_value.encode("utf-8", "replace") if isinstance(field_value, str) else field_value
    try:
        tags = parse_tag_value(re.sub(rb"\r?\n", b"", raw))
    except InvalidTagValueList:
        return None
    domain = b"".join(tags.get(b"d", b"").split())
    return domain.decode("utf-8", "replace") or None


def dkim_sign_file(
    path: Path,
    key: DkimKey,
    *,
    headers: Sequence[bytes] | None = None,
    timestamp: int | None = None,
) -> bytes:
    """Like :func:`dkim_sign` for the message in ``path``, streaming its body.

    The body hash is computed incrementally (:class:`BodyHash`); dkimpy then
    builds and signs the header exactly as :func:`dkim.sign` does (same tags,
    order and folding), so for the same ``timestamp`` (``t=``, default now)
    the header equals :func:`dkim_sign`'s byte for byte.
    """
    head, bh = body_hash_file(Path(path), SIGNING_CANONICALIZATION)
    return dkim_sign_hashed(head, bh, key, headers=headers, timestamp=timestamp)


def dkim_sign_hashed(
    head: bytes,
    bh: bytes,
    key: DkimKey,
    *,
    headers: Sequence[bytes] | None = None,
    timestamp: int | None = None,
) -> bytes:
    """The DKIM-Signature field for a message with header block ``head`` (its field
    lines, each CRLF-ended, without the empty line) and body hash ``bh``: the
    :class:`BodyHash` (:data:`SIGNING_CANONICALIZATION`) of its body, taken as the
    body was written. Equal to :func:`dkim_sign_file` for the same bytes."""
    import dkim
    import nacl.encoding
    import nacl.signing
    from dkim.canonicalization import CanonicalizationPolicy
    from dkim.crypto import parse_pem_private_key

    private = _load_private(key)
    present = _header_names(head + b"\r\n")
    chosen = _headers_to_sign(present, headers)
    if b"from" not in chosen:
        raise KeyMaterialError("DKIM signing failed: the From header field must be signed")
    algorithm = SIGNATURE_ALGORITHM[key.algorithm]
    logger, collected = _logger()
    try:
        d = dkim.DKIM(head + b"\r\n", logger=logger, signature_algorithm=algorithm, linesep=b"\r\n")
        pk: Any
        if algorithm == b"ed25519-sha256":
            pk = nacl.signing.SigningKey(
                _dkimpy_private(private), encoder=nacl.encoding.Base64Encoder
            )
        else:
            pk = parse_pem_private_key(_dkimpy_private(private))
        policy = CanonicalizationPolicy.from_c_value(
            SIGNING_CANONICALIZATION + b"/" + SIGNING_CANONICALIZATION
        )
        domain, selector = key.domain.encode(), key.selector.encode()
        include = tuple(chosen)
        d.include_headers = include
        d.hasher = dkim.HASH_ALGORITHMS[algorithm]
        t = int(time.time()) if timestamp is None else int(timestamp)
        fields = [
            (b"v", b"1"),
            (b"a", algorithm),
            (b"c", policy.to_c_value()),
            (b"d", domain),
            (b"i", b"@" + domain),
            (b"q", b"dns/txt"),
            (b"s", selector),
            (b"t", str(t).encode("ascii")),
            (b"h", b" : ".join(include)),
            (b"bh", base64.b64encode(bh)),
            (b"b", b"0" * 60),
        ]
        value = d.gen_header(fields, include, policy, b"DKIM-Signature", pk)
    except dkim.DKIMException as e:
        raise KeyMaterialError(f"DKIM signing failed: {e}") from e
    except (ValueError, TypeError) as e:
        detail = "; ".join(collected.messages) or str(e)
        raise KeyMaterialError(f"DKIM signing failed: {detail}") from e
    out = b"DKIM-Signature: " + bytes(value)
    return out if out.endswith(b"\r\n") else out.rstrip(b"\r\n") + b"\r\n"


def dkim_verify_file(
    path: Path, *, dnsfunc: Callable[[bytes], bytes] | None = None, tap: Any = None
) -> None:
    """Like :func:`dkim_verify` for the message in ``path``, streaming its body.

    Each body hash (``bh=``, for the signature's own ``c=``) is computed
    incrementally and compared here; dkimpy checks the header signature
    against the key record. Signatures with ``l=`` are not accepted.
    ``tap`` (e.g. ``hashlib.sha256()``) is fed every byte of the file in the
    pass that computes the first body hash, so that a sender can take the
    SHA-256 of the very bytes it DKIM-checked without reading them again; it
    has seen the whole file whenever this function returns.
    """

    path = Path(path)
    with open(path, "rb") as f:
        head, _ = read_head(f)
    d, count, collected, kwargs = _verifier(head + b"\r\n", dnsfunc)
    hashes: dict[bytes, bytes] = {}

    def attempt(idx: int) -> str | None:
        nonlocal tap
        prep = d.verify_headerprep(idx)
        if not prep:
            return "no signature"
        sig, include, sigheaders = prep
        if b"l" in sig:
            return "l= (partial body) signatures are not accepted"
        if sig.get(b"a") not in (b"rsa-sha256", b"ed25519-sha256"):
            return f"unsupported algorithm {sig.get(b'a')!r}"
        body_c = sig.get(b"c", b"simple/simple").split(b"/")
        canon = body_c[1] if len(body_c) > 1 else b"simple"
        if canon not in hashes:
            hashes[canon] = body_hash_file(path, canon, tap=tap)[1]
            tap = None
        want = base64.b64decode(re.sub(rb"\s+", b"", sig[b"bh"]))
        if want != hashes[canon]:
            return "body hash mismatch"
        header_only = {k: v for k, v in sig.items() if k != b"bh"}
        if d.verify_sig(header_only, include, sigheaders[idx], **kwargs):
            return None
        return _mismatch(collected)

    _first_that_verifies(count, attempt)
