"""The accounts' and tracking links' SQL (notary.storage.AccountStore, TrackingStore)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from keys.errors import ConflictError, NotFoundError
from notary.errors import StorageError
from notary.storage import Account, TrackingToken
from notary.storage.sql.dialect import Cursor, Dialect, SQLBase

_ACTIVE_OWNER = (
    "SELECT a.id FROM addresses d JOIN accounts a ON a.id = d.account_id"
    " WHERE d.address = ? AND NOT a.revoked"
)


def account(d: Dialect, cur: Cursor, account_id: int) -> Account:
    row = d.run(
        cur,
        "SELECT id, created, revoked, receipt_emails FROM accounts WHERE id = ?",
        (account_id,),
    ).fetchone()
    if row is None:
        raise NotFoundError(f"no account {account_id}")
    addrs = d.run(
        cur,
        f"SELECT address FROM addresses WHERE account_id = ? ORDER BY {d.address_order}",  # noqa: S608
        (account_id,),
    ).fetchall()
    return Account(
        int(row[0]),
        tuple(str(a[0]) for a in addrs),
        d.time_value(row[1]),
        bool(row[2]),
        bool(row[3]),
    )


def find_account(d: Dialect, cur: Cursor, address_or_id: str) -> int:
    """The id of the account named by an id or one of its addresses; NotFoundError."""
    if address_or_id.isdigit():
        row = d.run(cur, "SELECT id FROM accounts WHERE id = ?", (int(address_or_id),)).fetchone()
    else:
        row = d.run(
            cur,
            "SELECT a.id FROM addresses d JOIN accounts a ON a.id = d.account_id"
            " WHERE d.address = ? ORDER BY a.revoked, a.id DESC LIMIT 1",
            (address_or_id,),
        ).fetchone()
    if row is None:
        raise NotFoundError(
            f"no account for {address_or_id}",
            hint="list them: certmail notary accounts list --dir DIR",
        )
    return int(row[0])


class AccountSQL(SQLBase):
    """The AccountStore methods of a backend."""

    def add_account(
        self,
        addresses: Sequence[str],
        token_hash: bytes,
        created: datetime,
        *,
        receipt_emails: bool = False,
    ) -> Account:
        d = self.dialect
        with self._write() as cur:
            self.dialect.lock_addresses(cur)
            for a in addresses:
                owner = d.run(cur, _ACTIVE_OWNER, (a,)).fetchone()
                if owner is not None:
                    raise ConflictError(
                        f"{a} already belongs to account {owner[0]}",
                        hint=f"revoke it first: certmail notary accounts revoke {a}",
                    )
            row = d.run(
                cur,
                "INSERT INTO accounts (token_hash, created, receipt_emails) VALUES (?, ?, ?)"
                " RETURNING id",
                (token_hash, self.dialect.time_param(created), receipt_emails),
            ).fetchone()
            account_id = int(row[0])
            cur.executemany(
                self.dialect.sql("INSERT INTO addresses (address, account_id) VALUES (?, ?)"),
                [(a, account_id) for a in addresses],
            )
            return account(d, cur, account_id)

    def accounts(self) -> list[Account]:
        cur = self._read()
        ids = [
            int(r[0])
            for r in self.dialect.run(cur, "SELECT id FROM accounts ORDER BY id").fetchall()
        ]
        return [account(self.dialect, cur, i) for i in ids]

    def account_by_token_hash(self, token_hash: bytes) -> Account | None:
        cur = self._read()
        row = self.dialect.run(
            cur, "SELECT id FROM accounts WHERE token_hash = ? AND NOT revoked", (token_hash,)
        ).fetchone()
        return None if row is None else account(self.dialect, cur, int(row[0]))

    def account_by_address(self, address: str) -> Account | None:
        cur = self._read()
        row = self.dialect.run(cur, _ACTIVE_OWNER, (address,)).fetchone()
        return None if row is None else account(self.dialect, cur, int(row[0]))

    def account(self, account_id: int) -> Account | None:
        try:
            return account(self.dialect, self._read(), account_id)
        except NotFoundError:
            return None

    def set_receipt_emails(self, address_or_id: str, on: bool) -> Account:
        return self._update_account(address_or_id, "receipt_emails", on)

    def revoke_account(self, address_or_id: str) -> Account:
        return self._update_account(address_or_id, "revoked", True)

    def _update_account(self, address_or_id: str, column: str, value: bool) -> Account:
        d = self.dialect
        with self._write() as cur:
            account_id = find_account(d, cur, address_or_id)
            d.run(cur, f"UPDATE accounts SET {column} = ? WHERE id = ?", (value, account_id))  # noqa: S608
            self._accounts_changing(cur)
            changed = account(d, cur, account_id)
        self._accounts_changed()  # committed: every process's cache drops what it holds
        return changed


class TrackingSQL(SQLBase):
    """The TrackingStore methods of a backend."""

    def add_tracking_tokens(self, tokens: Sequence[TrackingToken]) -> None:
        try:
            with self._write() as cur:
                cur.executemany(
                    self.dialect.sql(
                        "INSERT INTO tracking_tokens (token_hash, account_id, sha256,"
                        " message_id, recipient, created) VALUES (?, ?, ?, ?, ?, ?)"
                    ),
                    [
                        (
                            t.token_hash,
                            t.account_id,
                            t.sha256,
                            t.message_id,
                            t.recipient,
                            self.dialect.time_param(t.created),
                        )
                        for t in tokens
                    ],
                )
        except StorageError as e:
            if isinstance(e.__cause__, self.dialect.unique_violation):
                raise ConflictError("a tracking token is already registered") from None
            raise

    def tracking_token(self, token_hash: bytes) -> TrackingToken | None:
        row = self.dialect.run(
            self._read(),
            "SELECT token_hash, account_id, sha256, message_id, recipient, created"
            " FROM tracking_tokens WHERE token_hash = ?",
            (token_hash,),
        ).fetchone()
        if row is None:
            return None
        return TrackingToken(
            bytes(row[0]),
            int(row[1]),
            str(row[2]),
            str(row[3]),
            str(row[4]),
            self.dialect.time_value(row[5]),
        )
