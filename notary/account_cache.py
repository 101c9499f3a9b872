"""Token → account, cached in memory and dropped at once when any account changes.

The cache holds an account together with the store's accounts version
(:meth:`notary.storage.AccountStore.accounts_version`) read *before* the
account was looked up; an entry answers only while the version is still that
number. A revocation moves the version on in every process (a shared mapped
file on SQLite, ``NOTIFY`` on PostgreSQL: notary.storage.versions), so the next
request after it, in any worker or on any node, goes to the database. Only
active accounts are cached (an unknown token always asks the store), at most
``max_entries`` of them.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable

from notary.storage import Account

__all__ = ["AccountCache"]


class AccountCache:
    """See the module docstring. ``version`` is the store's ``accounts_version``."""

    def __init__(self, version: Callable[[], int | None], *, max_entries: int = 10_000) -> None:
        self.version = version
        self.max_entries = max_entries
        self._entries: OrderedDict[bytes, tuple[Account, int]] = OrderedDict()

    def get(self, token_hash: bytes) -> Account | None:
        """The cached account for ``token_hash`` if the accounts did not change since."""
        hit = self._entries.get(token_hash)
        if hit is None:
            return None
        if hit[1] != self.version():
            self._entries.pop(token_hash, None)
            return None
        return hit[0]

    def lookup(self, token_hash: bytes, load: Callable[[bytes], Account | None]) -> Account | None:
        """The account for ``token_hash``: cached, or ``load``\\ ed (and cached if active)."""
        found = self.get(token_hash)
        if found is not None:
            return found
        seen = self.version()  # before the read: a change after it moves the version on
        found = load(token_hash)
        if found is not None and seen is not None and not found.revoked:
            self._entries[token_hash] = (found, seen)
            if len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)
        return found
