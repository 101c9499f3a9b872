"""The SQL of both storage backends, written once: every store of notary.storage.

A backend (notary.storage.sqlite, notary.storage.postgres) subclasses
:class:`SQLStorage`, sets its :class:`~notary.storage.sql.dialect.Dialect` and
provides its connections and its write transaction
(:class:`~notary.storage.sql.dialect.SQLBase`); the statements and the logic
are here, one module per store: :mod:`.log`, :mod:`.accounts` (accounts and
tracking links), :mod:`.queue`.
"""

from __future__ import annotations

from notary.storage.sql.accounts import AccountSQL, TrackingSQL
from notary.storage.sql.dialect import Cursor, Dialect, SQLBase
from notary.storage.sql.log import LogSQL, SQLTransaction
from notary.storage.sql.queue import QueueSQL

__all__ = ["Cursor", "Dialect", "SQLBase", "SQLStorage", "SQLTransaction"]


class SQLStorage(LogSQL, AccountSQL, TrackingSQL, QueueSQL):
    """Every store of notary.storage over one SQL database (see each store's guarantee)."""
