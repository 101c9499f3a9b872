"""Maildir mailboxes, read in place (the Maildir layout as qmail, Postfix and Dovecot write it).

A message is a file in ``new/`` (not yet seen by a mail reader) or ``cur/``;
its id is the file's unique name, before the ``:2,`` info; the info's ``S``
flag means seen. Ids given by the user are only matched against the names
listed, never joined to a path.
"""

from __future__ import annotations

import os
from pathlib import Path

from keys.errors import Error, NotFoundError

from .source import Item
from .spool import spool_stream

__all__ = ["MaildirSource"]


class MaildirSource:
    """A Maildir directory (with ``cur/`` and ``new/``)."""

    kind = "Maildir"

    def __init__(self, directory: Path) -> None:
        if not (directory / "cur").is_dir() or not (directory / "new").is_dir():
            raise NotFoundError(
                f"{directory} is not a Maildir (no cur/ and new/ in it)",
                hint="give the Maildir directory itself, e.g. --maildir ~/Maildir",
            )
        self.directory = directory

    def _files(self) -> list[tuple[str, Path, bool]]:
        """(id, path, unread) of every message, oldest first."""
        out: list[tuple[float, str, Path, bool]] = []
        for sub in ("new", "cur"):
            with os.scandir(self.directory / sub) as it:
                for e in it:
                    if e.name.startswith(".") or not e.is_file(follow_symlinks=False):
                        continue
                    uid, _, info = e.name.partition(":")
                    flags = info[2:] if info.startswith("2,") else ""
                    unread = sub == "new" or "S" not in flags
                    out.append((e.stat().st_mtime, uid, Path(e.path), unread))
        out.sort(key=lambda t: (t[0], t[1]))
        return [(uid, p, unread) for _, uid, p, unread in out]

    def items(self, *, unread: bool = False) -> list[Item]:
        return [Item(uid, u, p.stat().st_size) for uid, p, u in self._files() if u or not unread]

    def _find(self, msg_id: str) -> tuple[Path, bool]:
        for uid, p, unread in self._files():
            if uid == msg_id:
                return p, unread
        raise NotFoundError(
            f"no message {msg_id!r} in {self.directory}",
            hint=f"certmail inbox list --maildir {self.directory}",
        )

    def copy(self, msg_id: str, dest: Path) -> Path:
        p, _ = self._find(msg_id)
        with open(p, "rb") as f:
            return spool_stream(f, dest)

    def mark_read(self, msg_id: str) -> None:
        """Add the ``S`` flag (moving a message out of ``new/`` into ``cur/``, as readers do)."""
        p, _ = self._find(msg_id)
        uid, _, info = p.name.partition(":")
        flags = info[2:] if info.startswith("2,") else ""
        if "S" in flags and p.parent.name == "cur":
            return
        name = f"{uid}:2,{''.join(sorted(set(flags + 'S')))}"
        try:
            os.rename(p, self.directory / "cur" / name)
        except OSError as e:
            raise Error(f"cannot mark {msg_id} read: {e.strerror}") from None

    def close(self) -> None:
        pass
