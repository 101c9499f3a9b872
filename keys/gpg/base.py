"""The base of :class:`keys.gpg.Keyring`: one GNUPGHOME, gpg run on it, keys listed and chosen.

:class:`KeyringBase` holds what every keyring operation needs: the home
(prepared by :mod:`keys.gpg.home`), the python-gnupg handle, running ``gpg``
for small commands, unlocking the own secret key (the passphrase or the
:data:`~keys.gpg.passphrase.Ask` callback, at most MAX_TRIES asks) and the
key listing with the choice of a key for an address. The operations live in
:mod:`keys.gpg.streaming` and :mod:`keys.gpg.keyring`; import
:class:`~keys.gpg.Keyring` from :mod:`keys.gpg`.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from keys.errors import Error, KeyMaterialError, NotFoundError
from keys.gpg.colons import FPR_RE, KeyInfo, Listed, normalize_fingerprint, parse_listing
from keys.gpg.home import prepare_home
from keys.gpg.passphrase import (
    MAX_TRIES,
    Ask,
    BadPassphraseError,
    PassphraseError,
    PassphraseRequest,
    named,
    usable_passphrase,
)
from keys.gpg.process import GPG_BINARY, run_gpg
from keys.gpg.selection import (
    encryption_key_of,
    find_keys,
    signing_key_of,
    trusted_by_fingerprint,
)
from keys.gpg.status import IMPORT_HINT, STDERR_ENCODING, gpg_message

if TYPE_CHECKING:
    import gnupg

__all__ = ["BUFFER_SIZE", "KeyringBase"]

#: python-gnupg's read buffer for streamed operations.
BUFFER_SIZE = 1 << 20
T = TypeVar("T")

#: The files whose change means the listing (keys, validity) may have changed.
_STATE_FILES = ("pubring.kbx", "pubring.gpg", "trustdb.gpg", "private-keys-v1.d")
#: A remembered listing is used at most this long (seconds): validity that changes
#: with time alone (a key expiring) is seen again within it.
LISTING_TTL = 5.0
#: Commands that change nothing in the home: every other gpg command run on the home
#: (:meth:`KeyringBase._run`) forgets the listings.
_LISTING_ARGS = ("--list-keys", "--list-secret-keys", "--export")
#: At most this many queries' own listings (:meth:`KeyringBase._named`) are remembered.
NAMED_MAX = 256


_State = tuple[tuple[int, int, int], ...]


def _home_state(home: Path) -> _State:
    """(inode, size, mtime_ns) of each keyring state file, (0, 0, 0) when absent."""
    out = []
    for name in _STATE_FILES:
        try:
            st = os.stat(home / name)
        except OSError:
            out.append((0, 0, 0))
            continue
        out.append((st.st_ino, st.st_size, st.st_mtime_ns))
    return tuple(out)


class KeyringBase:
    """One GnuPG home and the keys in it (see :class:`keys.gpg.Keyring`)."""

    def __init__(
        self, gnupghome: Path, *, passphrase: str | None = None, ask: Ask | None = None
    ) -> None:
        self.gnupghome = Path(gnupghome)
        self.passphrase = passphrase
        self.ask = ask
        prepare_home(self.gnupghome)
        self._gnupg: gnupg.GPG | None = None
        #: The last listing by ``secret``: (home state, monotonic time, keys).
        self._listed: dict[bool, tuple[_State, float, list[Listed]]] = {}
        #: The keys each query names (:meth:`_named`): (home state, monotonic time, keys),
        #: least recently used first.
        self._named_keys: OrderedDict[str, tuple[_State, float, list[Listed]]] = OrderedDict()

    @property
    def _gpg(self) -> gnupg.GPG:
        """The python-gnupg handle, made on first use: making one runs ``gpg
        --list-config`` (its version check), which a send (listings, export and the
        streamed runs, all without python-gnupg) never needs."""
        if self._gnupg is None:
            import gnupg

            try:
                handle = gnupg.GPG(
                    gpgbinary=GPG_BINARY, gnupghome=str(self.gnupghome), encoding=STDERR_ENCODING
                )
            except (OSError, ValueError) as e:
                raise KeyMaterialError(
                    f"cannot run gpg: {e}",
                    hint="install GnuPG 2.2 or later (scripts/bootstrap.sh)",
                ) from e
            handle.buffer_size = BUFFER_SIZE
            self._gnupg = handle
        return self._gnupg

    def forget_listing(self) -> None:
        """Drop the remembered key listings (after changing the keyring)."""
        self._listed.clear()
        self._named_keys.clear()

    def _run(
        self,
        args: Sequence[str],
        *,
        stdin: bytes | None = None,
        passphrase: str | None = None,
        secret: bool = False,
    ) -> subprocess.CompletedProcess[bytes]:
        """Run gpg directly (for listings and small key-management commands)."""
        if not args or args[0] not in _LISTING_ARGS:
            self.forget_listing()
        return run_gpg(
            self.gnupghome, args, stdin=stdin or b"", secret=secret, passphrase=passphrase
        )

    @staticmethod
    def _secret_args(passphrase: str | None) -> list[str]:
        """Extra python-gnupg arguments for an operation that uses the secret key:
        with no passphrase, gpg may not start a pinentry (python-gnupg adds the
        loopback arguments itself when it has one)."""
        return [] if passphrase is not None else ["--pinentry-mode", "error"]

    def _unlocked(self, op: Callable[[str | None], T], fpr: str | None = None) -> T:
        """Run ``op(passphrase)``, a secret-key operation that raises
        :class:`PassphraseError` when the key stayed locked; on that, get a
        passphrase from :attr:`ask` and run it again (at most MAX_TRIES asks).

        ``fpr`` names the key in prompts and errors. The passphrase that worked
        is kept in :attr:`passphrase`.
        """
        passphrase = self.passphrase
        asked = 0
        key: str | None = None
        while True:
            try:
                if passphrase is not None:
                    usable_passphrase(passphrase)
                result = op(passphrase)
            except PassphraseError as e:
                key = key or self.describe_key(fpr)
                if self.ask is None:
                    raise named(e, key) from None
                if asked >= MAX_TRIES:
                    raise named(e, key, tries=asked) from None
                asked += 1
                passphrase = self.ask(
                    PassphraseRequest(key, asked, isinstance(e, BadPassphraseError))
                )
                continue
            self.passphrase = passphrase
            return result

    def describe_key(self, fpr: str | None = None) -> str:
        """``Name <addr> (key id)`` of an own secret key, for a passphrase prompt; without
        ``fpr``, the only secret key (or "your OpenPGP key" when there are several)."""
        own = self._listing(secret=True)
        if fpr is not None:
            own = [k for k in own if k.info.fingerprint == fpr]
        if len(own) != 1:
            return "your OpenPGP key"
        info = own[0].info
        uid = info.uids[0] if info.uids else info.fingerprint
        return f"{uid} ({info.fingerprint[-16:]})"

    def _listing(self, *, secret: bool) -> list[Listed]:
        """The parsed listing; remembered while the home's key files are unchanged
        (inode, size, mtime) and for at most :data:`LISTING_TTL` seconds."""
        state = _home_state(self.gnupghome)
        hit = self._listed.get(secret)
        if hit is not None and hit[0] == state and time.monotonic() - hit[1] < LISTING_TTL:
            return list(hit[2])
        listed = self._list_now(secret=secret)
        self._listed[secret] = (state, time.monotonic(), listed)
        return list(listed)

    def _list_now(self, *, secret: bool) -> list[Listed]:
        proc = self._run(["--list-secret-keys" if secret else "--list-keys"])
        if proc.returncode not in (0, 2):
            raise KeyMaterialError(f"cannot list keys: {gpg_message(proc.stderr)}")
        secret_fprs: set[str] = set()
        if not secret:
            secret_fprs = {k.info.fingerprint for k in self._listing(secret=True)}
        text = proc.stdout.decode("utf-8", "replace")
        return parse_listing(text, secret=secret, secret_fprs=secret_fprs)

    def _named(self, queries: Sequence[str]) -> dict[str, list[Listed]]:
        """The public keys each query (fingerprint, long key id or address) names, as
        :func:`~keys.gpg.selection.find_keys` picks them from the whole listing.

        Only those keys are listed (one ``gpg --list-keys PATTERN...`` for the queries
        not remembered), not the whole keyring: a process that encrypts to a few keys
        at a time holds and parses a few keys, however many the keyring has (a whole
        listing already remembered and fresh, :meth:`_listing`, serves instead). Each
        query's keys are remembered like :meth:`_listing` (the home's key files
        unchanged, at most :data:`LISTING_TTL` seconds), at most :data:`NAMED_MAX`
        queries.
        """
        state = _home_state(self.gnupghome)
        now = time.monotonic()
        out: dict[str, list[Listed]] = {}
        missing: list[str] = []
        for q in dict.fromkeys(queries):
            hit = self._named_keys.get(q)
            if hit is not None and hit[0] == state and now - hit[1] < LISTING_TTL:
                self._named_keys.move_to_end(q)
                out[q] = list(hit[2])
            else:
                missing.append(q)
        if not missing:
            return out
        patterns = [_pattern(q) for q in missing]
        whole = self._listed.get(False)
        if whole is not None and whole[0] == state and now - whole[1] < LISTING_TTL:
            listed = whole[2]  # the whole listing, remembered and fresh: no gpg run for part of it
        elif None in patterns:  # a query gpg cannot be asked for exactly: the whole listing
            listed = self._listing(secret=False)
        else:
            listed = self._list_patterns([p for p in patterns if p is not None])
        for q in missing:
            found = find_keys(listed, q)
            self._named_keys[q] = (state, now, found)
            self._named_keys.move_to_end(q)
            out[q] = list(found)
        while len(self._named_keys) > NAMED_MAX:
            self._named_keys.popitem(last=False)
        return out

    def _list_patterns(self, patterns: Sequence[str]) -> list[Listed]:
        proc = self._run(["--list-keys", "--", *patterns])
        if proc.returncode not in (0, 2):  # 2: some pattern named no key
            raise KeyMaterialError(f"cannot list keys: {gpg_message(proc.stderr)}")
        secret_fprs = {k.info.fingerprint for k in self._listing(secret=True)}  # own: few
        text = proc.stdout.decode("utf-8", "replace")
        return parse_listing(text, secret=False, secret_fprs=secret_fprs)

    def list_keys(self, *, secret: bool = False) -> list[KeyInfo]:
        """Every key in the keyring (``secret=True``: only those with a secret key)."""
        return [k.info for k in self._listing(secret=secret)]

    def _find(self, addr_or_fpr: str, *, secret: bool = False) -> list[Listed]:
        """Keys matching a fingerprint (or key id suffix) or an address, newest first."""
        return find_keys(self._listing(secret=secret), addr_or_fpr)

    def key_for(self, addr_or_fpr: str, *, only: bool = False) -> KeyInfo:
        """The key for an address or fingerprint (newest usable one if several);
        ``only``: list only its keys (see :meth:`encryption_key`)."""
        found = self._named([addr_or_fpr])[addr_or_fpr] if only else self._find(addr_or_fpr)
        if not found:
            raise NotFoundError(f"no OpenPGP key for {addr_or_fpr}", hint=IMPORT_HINT)
        return found[0].info

    def encryption_key(self, addr: str, *, only: bool = False) -> str:
        """Fingerprint of a valid, trusted key for ``addr`` that can encrypt.

        ``only``: list only the keys for ``addr`` (:meth:`_named`), for a process that
        looks up a few keys; otherwise the whole keyring's listing, remembered, for
        many lookups.
        """
        found = self._named([addr])[addr] if only else self._find(addr)
        return encryption_key_of(found, addr)

    def signing_key(self, addr: str) -> str:
        """Fingerprint of the own secret key for ``addr`` that can sign."""
        return signing_key_of(self._find(addr, secret=True), addr)

    def _resolve_signer(self, signer: str) -> str:
        query = normalize_fingerprint(signer)
        if FPR_RE.match(query):
            return query
        return self.signing_key(signer)

    def _check_recipients(self, recipients: Sequence[str]) -> list[str]:
        if not recipients:
            raise Error("no recipients to encrypt to")
        named = self._named(recipients)  # only these keys: not the whole keyring
        fprs: list[str] = []
        for r in recipients:
            if FPR_RE.match(normalize_fingerprint(r)):
                fprs.append(trusted_by_fingerprint(named[r], r))
            else:
                fprs.append(encryption_key_of(named[r], r))
        return fprs


def _pattern(query: str) -> str | None:
    """The gpg user-id pattern that lists at least the keys
    :func:`~keys.gpg.selection.find_keys` finds for ``query`` (GnuPG manual, "How to
    specify a user id"), or None when gpg cannot be asked for them exactly.

    A fingerprint or long key id: gpg matches the primary key's or a subkey's
    (``find_keys`` then keeps those whose primary fingerprint ends with it); other
    hex lengths are suffixes gpg does not match. An address: a substring of a user
    id (``*``), case-insensitive for ASCII only.
    """
    q = normalize_fingerprint(query)
    if FPR_RE.match(q):
        return q if len(q) in (16, 40) else None
    addr = q.strip("<>")
    if not addr or not addr.isascii() or not addr.isprintable():
        return None
    return "*" + addr
