"""Storage for the notary: four small stores, two backends (SQLite, PostgreSQL).

Each caller sees the store it uses, each with its durability guarantee in its
docstring (as Sunlight's storage interfaces do):

- :class:`LogStore` — entries, tree hashes, checkpoints and the sequencer's
  :class:`LogTransaction` (the sequencer, receipts, proofs);
- :class:`AccountStore` — API and relay accounts;
- :class:`TrackingStore` — open-tracking links (docs/ack.md);
- :class:`QueueStore` — the relay's spool, deliveries and held messages
  (docs/relay.md).

:class:`Storage` is all four over one database, as :func:`open_storage` opens
it. Both backends run the same statements (:mod:`notary.storage.sql`); only
connections, transactions, locks and a small dialect differ.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from notary.errors import StorageError
from notary.states import DELIVERY_STATES as _DELIVERY_STATES


class StaleTree(StorageError):
    """A batch of the log started from a tree another writer has since changed: it wrote
    nothing, and is to be made again from the tree as read under the lock."""


@dataclass(frozen=True)
class Account:
    """An API / relay account: the addresses it may send as, and its state."""

    id: int
    addresses: tuple[str, ...]
    created: datetime
    revoked: bool
    #: The sender gets each relay evidence event's receipt by email (opt-in).
    receipt_emails: bool = False


@dataclass(frozen=True)
class NewEntry:
    """An entry the sequencer appends: its exact bytes and what indexes it."""

    account_id: int | None
    sha256: str
    message_id: str
    event: str
    entry: bytes
    tst: bytes | None = None


@dataclass(frozen=True)
class StoredEntry:
    """A committed log entry."""

    index: int
    account_id: int | None
    sha256: str
    message_id: str
    event: str
    entry: bytes
    tst: bytes | None


@dataclass(frozen=True)
class TrackingToken:
    """An open-tracking link (docs/ack.md): only the SHA-256 of its token is stored."""

    token_hash: bytes
    account_id: int
    sha256: str
    message_id: str
    recipient: str
    created: datetime


@dataclass(frozen=True)
class StoredCheckpoint:
    """A signed checkpoint as committed: size, root, when it was signed, the note."""

    size: int
    root_hash: bytes
    time: datetime
    note: bytes


#: Delivery states: ``held`` (spooled, its SubmissionAcceptance not yet known
#: to be logged), ``queued`` (to deliver), ``delivered`` and ``failed`` (final); named
#: with the evidence's state words in notary/states.py.
DELIVERY_STATES = _DELIVERY_STATES


@dataclass(frozen=True)
class SpoolItem:
    """A message to spool: its exact bytes, envelope and who submitted it.

    ``held`` items wait for :attr:`QueueWrite.release`; others are queued at
    once. ``log_size`` is the tree size when it was spooled (its acceptance, if
    any, is at an index at or after it). ``kind`` is ``message`` (evidence is
    logged for it) or ``notice`` (mail the notary writes itself).
    """

    sha256: str
    message_id: str
    account_id: int | None
    mail_from: str
    recipients: tuple[str, ...]
    data: bytes
    received: datetime
    node: str
    log_size: int
    kind: str = "message"
    held: bool = True


@dataclass(frozen=True)
class Delivery:
    """One recipient of one spooled message, as claimed for delivery."""

    id: int
    spool_id: int
    recipient: str
    attempts: int
    warned: bool
    sha256: str
    message_id: str
    account_id: int | None
    mail_from: str
    received: datetime
    kind: str
    #: The last reply of a server to an earlier attempt ({code, text}), if any.
    last_reply: dict[str, Any] | None = None
    #: A final outcome an earlier attempt recorded (:meth:`QueueStore.record_final`)
    #: whose delivery was not settled (the process died): (event, evidence JSON).
    settled: tuple[str, str] | None = None


@dataclass(frozen=True)
class AttemptRecord:
    """One attempt of a delivery as the relay recorded it (``delivery_attempts``)."""

    started: datetime
    finished: datetime | None
    #: ``delivered``, ``failed``, ``deferred`` (tried again later), ``uncertain`` (its
    #: process died mid-way) or None (in progress).
    outcome: str | None
    reply: dict[str, Any] | None
    host: str | None  # the server a final attempt reached (its evidence's host)
    error: str | None  # why a deferred attempt did not deliver


@dataclass(frozen=True)
class DeliveryStatus:
    """What the sender may see of one delivery (``GET /v1/messages/{sha256}/deliveries``)."""

    recipient: str
    state: str
    attempts: int
    received: datetime
    next_attempt: datetime | None
    last_attempt: datetime | None
    last_error: str | None
    last_reply: dict[str, Any] | None
    #: Every attempt, oldest first.
    history: tuple[AttemptRecord, ...] = ()


@dataclass(frozen=True)
class HeldMessage:
    """A spooled message still waiting to be released or discarded."""

    spool_id: int
    sha256: str
    message_id: str
    account_id: int | None
    received: datetime
    log_size: int
    node: str


@dataclass(frozen=True)
class DeliveryUpdate:
    """The outcome of one delivery attempt.

    ``state`` is ``delivered`` or ``failed`` (final) or ``queued`` (retry at
    ``next_attempt``). The lease is dropped either way. ``node`` (the serve
    process that made the attempt) is kept in the row's ``last_node``.
    """

    delivery_id: int
    state: str
    next_attempt: datetime | None = None
    error: str | None = None
    warned: bool = False
    node: str | None = None
    #: The server's reply to this attempt ({code, text}); None keeps the last one.
    reply: dict[str, Any] | None = None
    #: When the attempt was made (kept as ``last_attempt``).
    attempted: datetime | None = None


@dataclass
class QueueWrite:
    """Changes to the spool and queue, applied in one transaction."""

    spool: list[SpoolItem] = field(default_factory=list)
    release: list[int] = field(default_factory=list)
    discard: list[int] = field(default_factory=list)
    updates: list[DeliveryUpdate] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.spool or self.release or self.discard or self.updates)


class LogTransaction(Protocol):
    """What the sequencer may do while it holds the sequencing lock.

    Nothing it writes is visible to readers, or durable, before the
    :meth:`LogStore.sequence` block that handed it out exits cleanly. The tree it
    reports may be the one the backend's last batch left, unread (PostgreSQL): the
    block then raises :class:`StaleTree`, having written nothing, if another writer
    changed the tree since.
    """

    def tree_size(self) -> int:
        """Number of entries committed so far."""

    def latest_checkpoint(self) -> StoredCheckpoint | None:
        """The last checkpoint committed, or None for an empty log."""

    def read_hashes(self, indexes: Sequence[int]) -> list[bytes]:
        """Stored tree hashes by stored-hash index (RFC 9162 tree, tlog layout)."""

    def append(
        self,
        start: int,
        entries: Sequence[NewEntry],
        hashes: Sequence[bytes],
        hash_start: int,
        checkpoint: StoredCheckpoint,
    ) -> None:
        """Add entries at ``start..``, stored hashes at ``hash_start..`` and the checkpoint."""


class LogStore(Protocol):
    """The log (DESIGN §4.1): entries, stored tree hashes and signed checkpoints.

    Durability: :meth:`sequence` is all-or-nothing. The entries, tree hashes and
    the checkpoint of one batch become durable together when the ``with`` block
    exits without an exception, or not at all; after a crash the log ends at
    the last batch whose block had exited. Readers only ever see committed
    batches, so a checkpoint they read always matches the stored hashes it
    covers. Exactly one :meth:`sequence` block runs at a time across every
    process sharing the log (SQLite: ``BEGIN IMMEDIATE``; PostgreSQL: a
    transaction advisory lock keyed by the schema), so several ``serve``
    processes can share one log, and logs in other schemas never wait for it.
    """

    def sequence(self) -> AbstractContextManager[LogTransaction]:
        """Hold the (cross-process) sequencing lock; commit durably on clean exit."""

    def read_hashes(self, indexes: Sequence[int]) -> list[bytes]:
        """Committed stored hashes; raises StorageError if one is missing."""

    def latest_checkpoint(self) -> StoredCheckpoint | None:
        """The newest committed checkpoint."""

    def checkpoint_at(self, size: int) -> StoredCheckpoint | None:
        """The checkpoint committed at exactly this tree size, if any."""

    def checkpoint_from(self, size: int) -> StoredCheckpoint | None:
        """The first checkpoint committed at this tree size or above, if any."""

    def entry(self, index: int) -> StoredEntry | None:
        """One committed entry by index."""

    def entries_for_message(self, sha256: str) -> list[StoredEntry]:
        """Every committed entry about a message, whoever caused it, in log order."""

    def entries_for_account(self, sha256: str, account_id: int) -> list[StoredEntry]:
        """The committed entries about a message that belong to one account, in log order.

        Entries are private to the account that caused them (DESIGN §4.1). An
        acknowledgement (``ContentHandover``) belongs to the account of the
        acknowledged message: the first ``SubmissionAcceptance`` of its SHA-256
        and Message-ID. Another account that notarized the same hash later
        never sees it, even where older versions logged a copy for it.
        """

    def iter_entries(
        self, start: int = 0, stop: int | None = None, *, tokens: bool = True
    ) -> Iterator[StoredEntry]:
        """Committed entries from ``start`` on (before ``stop``, if given), in log order.

        With ``tokens`` off every entry's ``tst`` is None: the token is neither read
        nor rebuilt, for a reader that needs only the statement.
        """


class AccountStore(Protocol):
    """API and relay accounts: their addresses, token hashes and settings.

    Durability: a method that writes returns only after the change is durable;
    each write is one transaction, serialised with every other writer, so two
    :meth:`add_account` calls never both get one address.
    """

    def add_account(
        self,
        addresses: Sequence[str],
        token_hash: bytes,
        created: datetime,
        *,
        receipt_emails: bool = False,
    ) -> Account:
        """Create an account; ConflictError if an address already belongs to an active one."""

    def account(self, account_id: int) -> Account | None:
        """One account by id (revoked ones too), or None."""

    def set_receipt_emails(self, address_or_id: str, on: bool) -> Account:
        """Turn receipt emails on or off for an account (by address or id); NotFoundError."""

    def accounts(self) -> list[Account]:
        """Every account, revoked ones included."""

    def account_by_token_hash(self, token_hash: bytes) -> Account | None:
        """The active account whose token hashes to this, if any."""

    def account_by_address(self, address: str) -> Account | None:
        """The active account that owns this address, if any."""

    def revoke_account(self, address_or_id: str) -> Account:
        """Revoke an account by one of its addresses or its id; NotFoundError if none."""

    def accounts_version(self) -> int | None:
        """A number that changes whenever an account is revoked or changed, in any process.

        Read without a database round trip (notary.storage.versions); None when
        it cannot be known right now, and then a cache must not be trusted.
        """


class TrackingStore(Protocol):
    """Open-tracking links (docs/ack.md), stored by the SHA-256 of their token.

    Durability: :meth:`add_tracking_tokens` returns only after every token it
    was given is durable, or raises having stored none of them.
    """

    def add_tracking_tokens(self, tokens: Sequence[TrackingToken]) -> None:
        """Store tracking tokens (by hash) durably, all or none; ConflictError on a repeat."""

    def tracking_token(self, token_hash: bytes) -> TrackingToken | None:
        """The tracking token whose SHA-256 is ``token_hash``, if any."""


class QueueStore(Protocol):
    """The relay's spool, delivery queue and held messages (docs/relay.md).

    Durability: :meth:`queue_write` applies one :class:`QueueWrite` (new spooled
    messages, releases, discards, delivery outcomes) in one transaction that is
    durable when it returns; after a crash either all of it or none of it is
    there, so a message the relay answered 250 for is never lost. Leases are
    not durable promises: a lease whose node crashed expires (or is dropped by
    :meth:`release_leases` when the node restarts) and the delivery is claimed
    again. :meth:`claim_deliveries` hands each due delivery to one node at a
    time; on PostgreSQL concurrent claimers skip each other's rows
    (``FOR UPDATE SKIP LOCKED``).
    """

    def queue_write(self, write: QueueWrite) -> list[int]:
        """Apply ``write`` durably in one transaction; return the new spool ids in order.

        Spooling stores the bytes and one ``held`` (or ``queued``) delivery per
        recipient; release turns a message's held deliveries into queued ones
        due now; discard deletes a message that is still held; updates record
        outcomes. A message whose deliveries are all final loses its bytes.
        """

    def claim_deliveries(
        self, node: str, now: datetime, lease_until: datetime, limit: int
    ) -> list[Delivery]:
        """Lease up to ``limit`` queued deliveries due at ``now`` to ``node``.

        A delivery leased by another node is skipped until its lease expires.
        """

    def spooled_data(self, spool_id: int) -> bytes | None:
        """The exact bytes of a spooled message (None once purged or unknown)."""

    def spooled_size(self, spool_id: int) -> int | None:
        """The size of a spooled message's bytes, without reading them (None as above)."""

    def held_messages(
        self, received_before: datetime, node: str | None = None
    ) -> list[HeldMessage]:
        """Held messages spooled before ``received_before`` (by ``node``, if given)."""

    def renew_leases(self, node: str, ids: Sequence[int], lease_until: datetime) -> int:
        """Extend to ``lease_until`` the leases ``node`` still holds on deliveries ``ids``
        (its attempts in flight); return how many it still held."""

    def release_leases(self, node: str) -> int:
        """Drop every lease ``node`` holds (it restarted); return how many."""

    def queue_counts(self) -> dict[str, int]:
        """Number of deliveries in each state."""

    def postpone_deliveries(self, node: str, ids: Sequence[int], until: datetime) -> int:
        """Give back deliveries ``node`` leased but did not attempt, due again at ``until``
        (no attempt is counted); return how many it still held."""

    def start_attempt(self, delivery_id: int, recipient: str, node: str, started: datetime) -> int:
        """Durably record that an attempt is about to be made; return its id.

        Earlier attempts of the delivery that never recorded an outcome (their
        process died) are marked ``uncertain``.
        """

    def record_final(
        self,
        attempt_id: int,
        event: str,
        evidence: str,
        reply: dict[str, Any] | None,
        queue_id: str | None,
        finished: datetime,
    ) -> bool:
        """Durably record an attempt's final outcome (its evidence JSON) before it is logged.

        At most one attempt per delivery has a final outcome (a unique key): returns
        False, recording nothing, when another attempt already has one.
        """

    def deliveries_for_message(self, sha256: str, account_id: int) -> list[DeliveryStatus]:
        """The deliveries of the account's relayed messages with this SHA-256."""

    def deliveries_for_messages(
        self, hashes: Sequence[str], account_id: int
    ) -> dict[str, list[DeliveryStatus]]:
        """:meth:`deliveries_for_message` of each of ``hashes`` (a hash with none: absent)."""

    def notice_spooled(self, sha256: str) -> bool:
        """Whether a notice (``kind="notice"``) was ever spooled under this SHA-256 (the key
        of a notice that must be sent once, notary/seal_notices.py)."""


class Storage(LogStore, AccountStore, TrackingStore, QueueStore, Protocol):
    """A whole backend: every store over one database, as the notary service opens it.

    A write returns only after what it wrote is durable (committed and fsynced:
    SQLite in WAL mode with ``synchronous=FULL``, PostgreSQL with its default
    ``synchronous_commit=on``); each store's docstring says what that means
    for it.
    """

    def close(self) -> None:
        """Release connections."""


def open_storage(url: str) -> Storage:
    """Open a backend from a URL: ``sqlite:///path`` or ``postgresql://...``."""
    if url.startswith(("postgresql://", "postgres://")):
        from notary.storage.postgres import PostgresStorage

        return PostgresStorage(url)
    if url.startswith("sqlite:///"):
        from notary.storage.sqlite import SQLiteStorage

        return SQLiteStorage(url.removeprefix("sqlite:///"))
    from keys.errors import Error

    raise Error(
        f"unsupported database URL {url!r}",
        hint="use sqlite:///PATH or postgresql://USER@HOST:PORT/DB",
    )
