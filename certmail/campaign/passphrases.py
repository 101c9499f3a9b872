"""A pickup passphrase per recipient: the CSV's optional ``pickup_passphrase`` column
(docs/campaigns.md "A passphrase per recipient").

A row's cell, when not empty, is used instead of the campaign's one
``--pickup-passphrase-file`` for that recipient's pickup message; an empty cell
means the campaign's (or none). The cell is never kept: ``campaign create`` checks
it (8 characters or more, one line; spaces around it are dropped, as around every
cell), takes the column out of the row's fields
before they are stored (so no template can render it: naming it in one is refused),
and keeps, for a recipient who goes by pickup link, only what the worker needs to
encrypt under it: a random salt, P (scrypt's first half, as the notary's page derives
it) and the SHA-256 of the verifier (the second half; the verifier itself, which
proves the passphrase to the notary, is not kept), in ``campaign_recipients.pickup_key``.
That value is erased as soon as the recipient's message is stored in the ledger (by
the worker, and again when the run records the recipient), or the recipient is
cancelled or failed. A row that has a key is sent encrypted: its cell is not used
and nothing of it is kept (a warning says how many).
"""

from __future__ import annotations

from collections.abc import Sequence, Set
from concurrent.futures import ThreadPoolExecutor

from keys.errors import Error

from .recipients import Problem, Row

__all__ = ["COLUMN", "check_column", "derive", "split"]

#: The CSV column of a recipient's own pickup passphrase.
COLUMN = "pickup_passphrase"
#: The shortest passphrase accepted (as ``--pickup-passphrase-file``'s).
MIN_LENGTH = 8
_HINT = (
    f"a {COLUMN} cell is empty (the campaign's --pickup-passphrase-file, if any) or one "
    f"line of {MIN_LENGTH} characters or more"
)


def check_column(columns: Sequence[str], fields: Set[str], pickup_if_no_key: bool) -> None:
    """The column may not be a template field (it would be sent in the mail) and is
    only for pickup links (``--pickup-if-no-key``)."""
    if COLUMN not in columns:
        return
    if COLUMN in fields:
        raise Error(
            f"the templates name {COLUMN}: a recipient's pickup passphrase would be sent "
            "in the email it protects; nothing was created or sent",
            hint=f"remove {{{{ {COLUMN} }}}} from the subject and the body",
        )
    if not pickup_if_no_key:
        raise Error(
            f"the CSV has a {COLUMN} column, which is for recipients by pickup link; "
            "nothing was created or sent",
            hint=f"add --pickup-if-no-key, or remove the {COLUMN} column",
        )


def split(rows: list[Row]) -> tuple[list[Row], dict[str, bytes], list[Problem]]:
    """The rows without the column, each recipient's passphrase (by lowercase address;
    empty cells left out) and the bad cells (row, address, hint; never the cell)."""
    out, passphrases, problems = [], {}, []
    for r in rows:
        if COLUMN not in r.fields:
            out.append(r)
            continue
        fields = dict(r.fields)
        cell = fields.pop(COLUMN)
        out.append(Row(r.line, r.email, fields))
        if not cell:
            continue
        if "\n" in cell or "\r" in cell:
            why = "has a line break"
        elif len(cell) < MIN_LENGTH:
            why = f"is shorter than {MIN_LENGTH} characters"
        else:
            passphrases[r.email.lower()] = cell.encode("utf-8")
            continue
        problems.append(Problem(r.line, f"the {COLUMN} of {r.email} {why}", _HINT))
    return out, passphrases, problems


def derive(
    passphrases: dict[str, bytes], pickup: Sequence[str], warnings: list[str]
) -> dict[str, str]:
    """For each recipient by pickup link with their own passphrase, what the worker
    encrypts under (:class:`certmail.sealed.pickup.DerivedPassphrase` as JSON), by
    lowercase address; the scrypt runs (32 MiB, about 0.1 s each) on every core."""
    import os

    from ..sealed.pickup import DerivedPassphrase

    mine = [a for a in pickup if a in passphrases]
    unused = len(passphrases) - len(mine)
    if unused:
        warnings.append(
            f"{unused} recipient(s) with a {COLUMN} have a key: their message is encrypted "
            "to it, the passphrase is not used (nor kept)"
        )
    with ThreadPoolExecutor(max(1, os.cpu_count() or 1)) as pool:
        derived = pool.map(lambda a: DerivedPassphrase.of(passphrases[a]).to_json(), mine)
        return dict(zip(mine, derived, strict=True))
