"""Outside time-stamps over the notary's checkpoints (issue 14 item 2; docs/anchors.md).

The outside TSAs a notary anchors with are kept in the notary directory's
``anchors.toml`` (``certmail notary anchors add URL --root PEM [--every S]``), each
with its root certificate copied under ``anchors/roots/``. :class:`Anchoring` runs
beside the log, never in its way (like notary/cosigning.py): a background thread
that asks each TSA, at most every ``every`` seconds and only when the log grew, for
an RFC 3161 token over the latest checkpoint, verifies the token against that TSA's
root (and the nonce it sent) before keeping it, and keeps it durably. A TSA down or
refusing delays anchoring, never the log.

What is time-stamped: SHA-256 of the checkpoint's signed note exactly as the notary
signed it (C2SP signed-note: the checkpoint text, the blank line, the notary's one
signature line; no cosignatures), the bytes kept beside the tokens as
``anchors/tokens/<size>.checkpoint``; each token is ``anchors/tokens/<size>-<id>.tsr``
(DER TimeStampToken), ``<id>`` the first 8 hex digits of SHA-256 of the TSA's URL.
Files are written to a temporary name, fsynced and renamed (the checkpoint before
its tokens), so a token on disk always has its checkpoint beside it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import time
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from keys.errors import ConflictError, Error, NotFoundError, TemporaryError
from notary.durable import atomic_write
from notary.leader import LeaderJob

if TYPE_CHECKING:
    import httpx

__all__ = [
    "DEFAULT_EVERY",
    "AnchorEntry",
    "Anchored",
    "Anchoring",
    "add_anchor",
    "anchored_at_least",
    "load_anchors",
    "remove_anchor",
]

CONFIG = "anchors.toml"
ROOTS = Path("anchors") / "roots"
TOKENS = Path("anchors") / "tokens"
#: Default seconds between two time-stamps from one TSA.
DEFAULT_EVERY = 3600
#: Fewest seconds between two time-stamps from one TSA (a TSA is a shared service).
MIN_EVERY = 1
_TOKEN = re.compile(r"([1-9]\d{0,18})-([0-9a-f]{8})\.tsr")
log = logging.getLogger("certmail.notary.anchors")


@dataclass(frozen=True)
class AnchorEntry:
    """An outside TSA: where it listens, its root (a file in the notary directory), how often."""

    url: str
    root: str  # path relative to the notary directory
    every: int

    @property
    def id(self) -> str:
        return hashlib.sha256(self.url.encode()).hexdigest()[:8]

    def root_certificates(self, directory: Path) -> list[Any]:
        from cryptography import x509

        return x509.load_pem_x509_certificates((directory / self.root).read_bytes())


def load_anchors(directory: Path) -> list[AnchorEntry]:
    """The outside TSAs of a notary directory (none without anchors.toml)."""
    try:
        cfg = tomllib.loads((directory / CONFIG).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return []
    except tomllib.TOMLDecodeError as e:
        raise Error(f"{directory / CONFIG} is not valid TOML: {e}") from None
    try:
        return [
            AnchorEntry(str(a["url"]), str(a["root"]), int(a.get("every", DEFAULT_EVERY)))
            for a in cfg.get("anchor", [])
        ]
    except (KeyError, TypeError, ValueError) as e:
        raise Error(f"{directory / CONFIG}: an [[anchor]] lacks url or root ({e})") from None


def _save(directory: Path, entries: list[AnchorEntry]) -> None:
    lines = [
        "# outside RFC 3161 TSAs this notary time-stamps its checkpoints with (docs/anchors.md)"
    ]
    for e in entries:
        lines += ["", "[[anchor]]", f"url = {json.dumps(e.url)}", f"root = {json.dumps(e.root)}"]
        lines.append(f"every = {e.every}")
    atomic_write(directory / CONFIG, ("\n".join(lines) + "\n").encode())


def add_anchor(directory: Path, url: str, root_pem: bytes, every: int) -> AnchorEntry:
    """Add the TSA at ``url`` whose tokens must chain to ``root_pem`` (copied into the
    directory), asked at most every ``every`` seconds."""
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding

    if not url.startswith(("http://", "https://")):
        raise Error(f"the TSA URL must be http:// or https://, got {url!r}")
    if every < MIN_EVERY:
        raise Error(f"--every must be at least {MIN_EVERY} second(s)")
    try:
        certs = x509.load_pem_x509_certificates(root_pem)
    except ValueError:
        raise Error(
            "the --root file holds no PEM certificate",
            hint="give the TSA's root CA certificate in PEM (-----BEGIN CERTIFICATE-----)",
        ) from None
    entries = load_anchors(directory)
    if any(e.url == url for e in entries):
        raise ConflictError(f"the TSA {url} is configured already")
    entry = AnchorEntry(url, "", every)
    root = ROOTS / f"{entry.id}.pem"
    (directory / ROOTS).mkdir(parents=True, exist_ok=True, mode=0o700)
    atomic_write(directory / root, b"".join(c.public_bytes(Encoding.PEM) for c in certs))
    entry = AnchorEntry(url, str(root), every)
    _save(directory, [*entries, entry])
    return entry


def remove_anchor(directory: Path, url: str) -> None:
    """Stop anchoring with the TSA at ``url`` (the tokens it gave are kept)."""
    entries = load_anchors(directory)
    kept = [e for e in entries if url not in (e.url, e.id)]
    if len(kept) == len(entries):
        raise NotFoundError(f"no outside TSA {url!r}", hint="certmail notary anchors list")
    _save(directory, kept)


@dataclass(frozen=True)
class Anchored:
    """A checkpoint with the outside tokens over it."""

    size: int
    note: bytes  # the notary-signed note the tokens' imprint is over
    tokens: dict[str, bytes]  # TSA id -> DER TimeStampToken


def _stored(directory: Path) -> dict[int, set[str]]:
    """The kept tokens: tree size -> the ids of the TSAs that time-stamped it."""
    out: dict[int, set[str]] = {}
    try:
        names = os.listdir(directory / TOKENS)
    except FileNotFoundError:
        return out
    for name in names:
        m = _TOKEN.fullmatch(name)
        if m:
            out.setdefault(int(m[1]), set()).add(m[2])
    return out


def anchored_at_least(directory: Path, size: int) -> Anchored | None:
    """The smallest anchored checkpoint of at least ``size`` entries, with its tokens."""
    stored = _stored(directory)
    sizes = [s for s in stored if s >= size]
    if not sizes:
        return None
    best = min(sizes)
    d = directory / TOKENS
    note = (d / f"{best}.checkpoint").read_bytes()
    return Anchored(
        best, note, {i: (d / f"{best}-{i}.tsr").read_bytes() for i in sorted(stored[best])}
    )


#: POSTs a DER TimeStampReq to a TSA's URL: (HTTP status, body).
Post = Callable[[str, bytes], tuple[int, bytes]]


class Anchoring(LeaderJob):
    """Asks the outside TSAs for tokens over the log's checkpoints in a background thread.

    One process of a notary directory anchors at a time (an exclusive lock on
    ``anchors/.lock``: several ``serve`` workers start one thread each, one works).
    """

    def __init__(
        self,
        directory: Path,
        latest: Callable[[], Any],
        *,
        post: Post | None = None,
        interval: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.directory = directory
        self.anchors = load_anchors(directory)
        self._latest = latest
        super().__init__(directory / "anchors" / ".lock", interval, "anchoring")
        self._post = post or self._httpx_post
        self._clock = clock
        self._next: dict[str, float] = {}  # TSA id -> earliest clock time of its next request
        stored = _stored(directory)
        self._done = {
            a.id: max((s for s, ids in stored.items() if a.id in ids), default=0)
            for a in self.anchors
        }
        self._lock_fd: int | None = None

    def start(self) -> None:
        if not self.anchors or self._thread is not None:
            return
        (self.directory / "anchors").mkdir(exist_ok=True, mode=0o700)
        self.start_thread()

    def _httpx_post(self, url: str, body: bytes) -> tuple[int, bytes]:
        """POST an RFC 3161 query through the job's one HTTP client."""
        return post_query(self.http(), url, body)

    def step(self) -> None:
        cp = self._latest()
        if cp is not None and cp.size > 0:
            self.round(cp.note, cp.size)

    def round(self, note: bytes, size: int) -> None:
        """Ask each TSA that is due and has not time-stamped a checkpoint this large yet."""
        now = self._clock()
        kept = self.directory / TOKENS / f"{size}.checkpoint"
        if kept.exists():  # one note per size: later tokens cover the same bytes
            note = kept.read_bytes()
        for a in self.anchors:
            if self._done.get(a.id, 0) >= size or now < self._next.get(a.id, 0):
                continue
            try:
                token = self.timestamp(a, note)
            except Error as e:
                log.warning("outside TSA %s gave no time-stamp: %s", a.url, e.message)
                self._next[a.id] = now + min(a.every, 10)  # a TSA down: try again soon
                continue
            self._keep(size, note, a.id, token)
            self._done[a.id] = size
            self._next[a.id] = now + a.every

    def timestamp(self, a: AnchorEntry, note: bytes) -> bytes:
        """A token over SHA-256(``note``) from TSA ``a``, verified against its root."""
        from notary.rfc3161.client import request_token

        digest = hashlib.sha256(note).digest()
        return request_token(
            lambda query: self._post(a.url, query), digest, a.root_certificates(self.directory)
        )

    def _keep(self, size: int, note: bytes, tsa: str, token: bytes) -> None:
        d = self.directory / TOKENS
        d.mkdir(parents=True, exist_ok=True, mode=0o700)
        cp = d / f"{size}.checkpoint"
        if not cp.exists():
            atomic_write(cp, note)
        atomic_write(d / f"{size}-{tsa}.tsr", token)


def post_query(client: httpx.Client, url: str, body: bytes) -> tuple[int, bytes]:
    """POST ``body`` as ``application/timestamp-query`` to ``url`` through ``client``
    (its owner keeps it for every query: one SSL context, not one per call): (status,
    answer), at most MAX_RESPONSE_BYTES read; TemporaryError when the TSA cannot be reached."""
    import httpx

    from notary.rfc3161.client import MAX_RESPONSE_BYTES

    headers = {"content-type": "application/timestamp-query"}
    try:
        with client.stream("POST", url, content=body, headers=headers) as r:
            answer = b""
            for chunk in r.iter_bytes():
                answer += chunk
                if len(answer) > MAX_RESPONSE_BYTES:
                    raise TemporaryError(f"{url} answered more than {MAX_RESPONSE_BYTES} bytes")
            return r.status_code, answer
    except httpx.HTTPError as e:
        raise TemporaryError(f"cannot reach {url}: {e}") from None
