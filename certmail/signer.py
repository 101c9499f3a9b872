"""Signing as one identity: its OpenPGP keys and its DKIM key (RFC 3156, RFC 6376).

:mod:`certmail.seal` builds a sealed message from a keyring and parts; this
module is the identity around it. :class:`Sealer` runs :func:`certmail.seal.seal`
with the identity's keys and
its DKIM key (when ``HOME/dkim`` has one for the From: domain), then
DKIM-verifies the finished bytes against that key's own public record before
they may leave. It remembers key lookups (:class:`KeyCache`) for bulk sends.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from keys.errors import Error, VerificationError

from .pipeline import DEFAULT_GPG, SMALL_MESSAGE, GpgOptions
from .seal import seal

if TYPE_CHECKING:
    from keys.gpg import Keyring

    from .compose import Headers, Progress, ScanRecord
    from .seal import Sealed

__all__ = ["NOTARY_HEADER", "KeyCache", "Sealer"]

NOTARY_HEADER = "Certmail-Notary"


def _domain(addr: str) -> str:
    return addr.rpartition("@")[2].lower()


class Sealer:
    """Seals messages from one identity (its keyring and DKIM directory)."""

    def __init__(
        self, keyring: Callable[[], Keyring], dkim_dir: Path, *, gpg: GpgOptions = DEFAULT_GPG
    ) -> None:
        """``gpg``: how :func:`certmail.seal.seal` seals with gpg (a campaign's:
        combined, and without GNU ``base64`` processes for small messages)."""
        self.gpg = gpg
        self._keyring = keyring
        self._cached: KeyCache | None = None
        self.dkim_dir = dkim_dir

    def keyring(self) -> Keyring:
        """The keyring with key lookups remembered for this instance (bulk sends)."""
        if self._cached is None:
            self._cached = KeyCache(self._keyring())
        return cast("Keyring", self._cached)

    def seal(
        self,
        work: Path,
        headers: Headers,
        data: bytes,
        scanned: list[tuple[Path, ScanRecord]],
        *,
        notary_url: str | None,
        sign: bool,
        encrypt: bool,
        request_mdn: bool,
        progress: Progress | None,
        compress: bool = False,
        html: bytes | None = None,
    ) -> Sealed:
        """Compose, sign, encrypt (and DKIM-sign, then DKIM-check) the outgoing message,
        with this sealer's :attr:`gpg` options.

        The DKIM check reads the finished file once, and the message's SHA-256 is
        taken in that same pass (:func:`certmail.seal.seal`'s ``dkim_check``).
        """
        extra = [f"{NOTARY_HEADER}: {notary_url}"] if notary_url else []
        if request_mdn:
            extra.append(f"Disposition-Notification-To: {headers.from_addr}")
        dkim = self.dkim_signer(_domain(headers.from_addr))

        def dkim_check(path: Path, sha256: Any) -> None:
            self.dkim_check(path, headers.from_addr, tap=sha256)

        return seal(
            self.keyring(),
            work,
            headers,
            data,
            scanned,
            sign=sign,
            encrypt=encrypt,
            extra_outer=extra,
            dkim=dkim,
            progress=progress,
            compress=compress,
            dkim_check=dkim_check if dkim is not None else None,
            dkim_hashed=self.dkim_hashed(_domain(headers.from_addr)),
            html=html,
            gpg=self._options_for(data, scanned),
        )

    def _options_for(self, data: bytes, scanned: list[tuple[Path, ScanRecord]]) -> GpgOptions:
        """:attr:`gpg`, without GNU ``base64`` processes for a message under
        :data:`~certmail.pipeline.SMALL_MESSAGE` (they cost more than they save there)."""
        if not self.gpg.external_base64:
            return self.gpg
        size = len(data) + sum(p.stat().st_size for p, _ in scanned)
        return replace(self.gpg, external_base64=False) if size < SMALL_MESSAGE else self.gpg

    def dkim_signer(self, domain: str) -> Callable[[Path], bytes] | None:
        """A DKIM signer with the domain's key, or None when there is no key for it."""
        if not Path(self.dkim_dir).is_dir():  # no DKIM keys: keys.dkim (cryptography) not imported
            return None
        from keys.dkim import dkim_sign_file, find_dkim_key

        key = find_dkim_key(self.dkim_dir, domain)
        if key is None:
            return None

        def sign(path: Path) -> bytes:  # streams the body: memory does not grow with it
            return dkim_sign_file(path, key)

        return sign

    def dkim_hashed(self, domain: str) -> Callable[[bytes, bytes], bytes] | None:
        """A DKIM signer from a header block and a body hash taken as the body was
        written (:func:`keys.dkim.dkim_sign_hashed`), or None without a key."""
        if not Path(self.dkim_dir).is_dir():
            return None
        from keys.dkim import dkim_sign_hashed, find_dkim_key

        key = find_dkim_key(self.dkim_dir, domain)
        if key is None:
            return None

        def sign(head: bytes, bh: bytes) -> bytes:
            return dkim_sign_hashed(head, bh, key)

        return sign

    def dkim_check(self, path: Path, from_addr: str, *, tap: Any = None) -> None:
        """DKIM-verify the finished bytes against our own key's public record.

        ``tap`` (a :mod:`hashlib` object) is fed the file's bytes as they are
        checked (:func:`keys.dkim.dkim_verify_file`)."""
        if tap is None and not Path(self.dkim_dir).is_dir():  # unsigned, and no key to check with
            return
        from keys.dkim import dkim_verify_file, dns_record, find_dkim_key

        key = find_dkim_key(self.dkim_dir, _domain(from_addr))
        if key is None:
            if tap is not None:  # the message was signed with a key that is gone now
                raise Error(
                    "refusing to send: the DKIM key went away while the message was sealed",
                    hint="certmail keys dkim record (check the DKIM key)",
                )
            return
        name, record = dns_record(key)

        def dnsfunc(qname: bytes) -> bytes:
            return record.encode() if qname.decode().rstrip(".") == name else b""

        try:
            dkim_verify_file(path, dnsfunc=dnsfunc, tap=tap)
        except VerificationError as e:
            raise Error(
                f"refusing to send: the DKIM signature does not verify ({e.message})",
                hint="certmail keys dkim record (check the DKIM key)",
            ) from e


class KeyCache:
    """Delegates to a Keyring, remembering which key serves which address.

    Each lookup runs gpg; a bulk send would otherwise repeat the same four
    lookups per message. The cache lives as long as one :class:`Sealer`.
    """

    def __init__(self, keyring: Keyring) -> None:
        self._keyring = keyring
        self._memo: dict[tuple[str, str], str] = {}

    def _memoized(self, kind: str, addr: str) -> str:
        key = (kind, addr.lower())
        if key not in self._memo:
            self._memo[key] = str(getattr(self._keyring, kind)(addr))
        return self._memo[key]

    def encryption_key(self, addr: str) -> str:
        return self._memoized("encryption_key", addr)

    def signing_key(self, addr: str) -> str:
        return self._memoized("signing_key", addr)

    def export_public(self, addr: str) -> str:
        return self._memoized("export_public", addr)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._keyring, name)
