"""The notary service: storage, keys, TSA and sequencer behind one object.

The HTTP API and the SMTP relay call this; it holds no protocol code of its
own. Accounts' API tokens are 256-bit random strings; only their SHA-256 is
stored, and lookups are by that hash.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from keys.checkpoint_key import load_checkpoint_key
from keys.errors import Error, NotFoundError
from notary.account_cache import AccountCache
from notary.config import NotaryConfig, load_config
from notary.errors import NotaryError
from notary.merkle import prove_consistency, prove_inclusion
from notary.metrics import ServiceMetrics
from notary.note import Signer
from notary.receipt import Receipt
from notary.sequencer import Clock, Sequencer, Submission, utc_now
from notary.storage import Account, Storage, StoredEntry, open_storage
from notary.tlogproof import TlogProof


class ForbiddenError(NotaryError):
    """The account may not see or do this."""


def new_token() -> str:
    """A fresh API token: 256 bits from the OS CSPRNG, as 64 hex digits.

    Hex, so a token never starts with "-" (SMTP clients such as swaks take the
    token as the AUTH password on their command line).
    """
    return secrets.token_hex(32)


def token_hash(token: str) -> bytes:
    """What is stored of a token: its SHA-256."""
    return hashlib.sha256(token.encode("utf-8")).digest()


@dataclass(frozen=True)
class Notarization:
    """One hash to notarize for an account."""

    sha256: str
    message_id: str


class NotaryService:
    """A running notary (see the module docstring)."""

    def __init__(
        self,
        config: NotaryConfig,
        storage: Storage,
        signer: Signer,
        *,
        tsa: Any = None,
        clock: Clock = utc_now,
    ) -> None:
        self.config = config
        self.storage = storage
        self.signer = signer
        self.tsa = tsa
        self.clock = clock
        self.metrics = ServiceMetrics(self.tree_size)
        self.sequencer = Sequencer(storage, signer, tsa=tsa, clock=clock, metrics=self.metrics)
        self.vkey = signer.verifier().vkey()
        self.accounts = AccountCache(storage.accounts_version)
        storage.accounts_version()  # start watching for account changes now, off any loop

    @classmethod
    def open(
        cls, directory: Path, *, database: str | None = None, clock: Clock = utc_now
    ) -> NotaryService:
        """Open the notary in ``directory`` (optionally on another database)."""
        from keys.tsa import load_tsa
        from notary.rfc3161 import TimeStampAuthority

        config = load_config(directory)
        signer = Signer.from_key(load_checkpoint_key(config.key_path))
        if signer.name != config.origin:
            raise Error(
                f"checkpoint key is named {signer.name!r} but the origin is {config.origin!r}",
                hint=f"restore the key or origin of {directory}",
            )
        tsa = TimeStampAuthority(
            load_tsa(config.tsa_dir),
            policy_oid=config.policy_oid,
            state_dir=config.tsa_dir,
            clock=None if clock is utc_now else clock,  # None: the same clock, read cheaper
        )
        storage = open_storage(database or config.database)
        return cls(config, storage, signer, tsa=tsa, clock=clock)

    def share_sequencer(self, directory: Path) -> None:
        """Sequence through the one sequencer of the workers serving ``directory``
        (:class:`notary.sequencer_share.SharedSequencer`); call before the app starts."""
        from notary.sequencer_share import SharedSequencer

        self.sequencer = SharedSequencer(
            self.storage,
            self.signer,
            tsa=self.tsa,
            clock=self.clock,
            metrics=self.metrics,
            directory=directory,
        )

    @property
    def origin(self) -> str:
        return self.config.origin

    # --- accounts ------------------------------------------------------------
    def add_account(
        self, addresses: Sequence[str], *, receipt_emails: bool = False
    ) -> tuple[Account, str]:
        """Create an account for ``addresses``; returns it and its (only) token."""
        token = new_token()
        account = self.storage.add_account(
            list(addresses), token_hash(token), datetime.now(UTC), receipt_emails=receipt_emails
        )
        return account, token

    def authenticate(self, token: str) -> Account | None:
        """The active account holding ``token``, or None (may ask the store: blocking)."""
        if not token or len(token) > 256:
            return None
        h = token_hash(token)
        account = self.accounts.lookup(h, self.storage.account_by_token_hash)
        # The lookup is by hash; compare again in constant time for good measure.
        if account is None or not hmac.compare_digest(h, token_hash(token)):
            return None
        return account

    def cached_account(self, token: str) -> Account | None:
        """The account holding ``token`` if the cache knows it (never blocks); else None.

        None does not mean the token is bad: ask :meth:`authenticate` (in a thread).
        """
        if not token or len(token) > 256:
            return None
        return self.accounts.get(token_hash(token))

    # --- log -----------------------------------------------------------------
    def tree_size(self) -> int:
        """Entries in the log at the latest checkpoint (0 before the first)."""
        cp = self.storage.latest_checkpoint()
        return cp.size if cp else 0

    def checkpoint(self) -> bytes:
        """The latest signed checkpoint (signing the empty tree on first use)."""
        cp = self.storage.latest_checkpoint()
        if cp is None:
            self.sequencer.commit_batch([], sign_empty=True)
            cp = self.storage.latest_checkpoint()
            assert cp is not None
        return cp.note

    async def notarize(
        self, account: Account, items: Sequence[Notarization], *, timestamp: bool = True
    ) -> list[Receipt]:
        """Log SubmissionAcceptance for each item; receipts once durable."""
        subs = [
            Submission(
                "SubmissionAcceptance",
                it.sha256,
                it.message_id,
                account.id,
                {"submitter": account.addresses[0], "channel": "api"},
                timestamp,
            )
            for it in items
        ]
        return await self.sequencer.submit(subs)

    def receipt_for(self, entry: StoredEntry, size: int, note: bytes) -> Receipt:
        """A receipt for a committed entry, proved against the checkpoint of ``size``."""
        proof = prove_inclusion(size, entry.index, self.storage)
        return Receipt(entry.entry, TlogProof(entry.index, tuple(proof), note), entry.tst)

    def receipts(self, account: Account, sha256: str) -> list[Receipt]:
        """Every receipt about a message the account caused, against the latest checkpoint.

        NotFoundError when there is none, whether or not other accounts have
        evidence about the message: the answer does not tell whether a hash
        is in the log (DESIGN §4.1, entries are private).
        """
        mine = self.receipts_of(account, [sha256])[sha256]
        if not mine:
            raise NotFoundError(f"no evidence for message {sha256} in this account")
        return mine

    def receipts_of(self, account: Account, hashes: list[str]) -> dict[str, list[Receipt]]:
        """Each message's receipts as :meth:`receipts` gives them (empty: none in this
        account), all against one checkpoint, the latest."""
        cp = self.storage.latest_checkpoint()
        found: dict[str, list[Receipt]] = {h: [] for h in hashes}
        if cp is not None:
            for h in hashes:
                mine = self.storage.entries_for_account(h, account.id)
                found[h] = [
                    self.receipt_for(e, cp.size, cp.note) for e in mine if e.index < cp.size
                ]
        return found

    def consistency(self, old: int, new: int) -> list[bytes]:
        """An RFC 9162 consistency proof between two tree sizes the log has reached."""
        cp = self.storage.latest_checkpoint()
        size = cp.size if cp else 0
        if not 0 <= old <= new:
            raise Error(f"need 0 <= old <= new, got old={old} new={new}")
        if new > size:
            raise NotFoundError(f"the log has {size} entries; new={new} is beyond it")
        if old == 0 or old == new:
            return []
        return prove_consistency(old, new, self.storage)

    def close(self) -> None:
        self.storage.close()
