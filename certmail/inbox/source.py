"""What every mailbox kind offers ``certmail inbox``: list, copy out, mark read.

A :class:`Source` never deletes or moves a message; only :meth:`Source.mark_read`
changes anything (the ``\\Seen`` flag, Maildir's ``S``), and only when asked.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

__all__ = ["Item", "Source"]


@dataclass(frozen=True)
class Item:
    """One message of a mailbox: its id there, whether it is unread, its size."""

    id: str
    unread: bool
    size: int | None = None


class Source(Protocol):
    """A mailbox, read-only but for :meth:`mark_read`."""

    #: What the ids name, for messages (``Maildir``, ``mbox``, ``IMAP``).
    kind: str

    def items(self, *, unread: bool = False) -> list[Item]:
        """The messages, oldest first (only the unread ones with ``unread``)."""
        ...

    def copy(self, msg_id: str, dest: Path) -> Path:
        """Write message ``msg_id`` as delivered to ``dest`` (new, 0600), streamed.

        Raises :class:`keys.errors.NotFoundError` for an unknown id.
        """
        ...

    def mark_read(self, msg_id: str) -> None:
        """Flag the message as read (only on ``--mark-read``)."""
        ...

    def close(self) -> None: ...
