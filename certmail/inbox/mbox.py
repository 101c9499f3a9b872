"""mbox files, read in place and never written (the mboxrd form: RFC 4155).

A message starts at a ``From `` line at the start of the file or after a
blank line; its id is its position (1 for the first). Copies drop the
``From `` line and the blank line that ends each message, and undo the
quoting of body lines that start with ``From `` (``>From `` becomes
``From ``: :func:`certmail.inbox.notarized.from_mbox` is the same rule).
"""

from __future__ import annotations

import re
from pathlib import Path

from keys.errors import Error, NotFoundError

from .source import Item
from .spool import Spool

__all__ = ["MboxSource"]

_QUOTED = re.compile(rb"^>(>*From )")
_STATUS = re.compile(rb"^(?:X-)?Status:[ \t]*([A-Za-z]*)", re.IGNORECASE)


class MboxSource:
    """An mbox file: messages by position, unread unless a ``Status: R`` field says read."""

    kind = "mbox"

    def __init__(self, path: Path) -> None:
        if not path.is_file():
            raise NotFoundError(f"no such mbox file: {path}")
        self.path = path

    def _scan(self) -> list[tuple[int, int, bool]]:
        """(start, end, unread) of each message; offsets of its ``From `` line and its end."""
        out: list[tuple[int, int, bool]] = []
        pos = 0
        prev_blank = True
        in_header = False
        unread = True
        with open(self.path, "rb") as f:
            for line in f:
                if prev_blank and line.startswith(b"From "):
                    if out:
                        out[-1] = (out[-1][0], pos, unread)
                    out.append((pos, -1, True))
                    in_header, unread = True, True
                elif in_header:
                    if line in (b"\n", b"\r\n"):
                        in_header = False
                    elif (m := _STATUS.match(line)) and b"R" in m.group(1):
                        unread = False
                prev_blank = line in (b"\n", b"\r\n")
                pos += len(line)
        if out:
            out[-1] = (out[-1][0], pos, unread)
        return out

    def items(self, *, unread: bool = False) -> list[Item]:
        return [
            Item(str(i), u, end - start)
            for i, (start, end, u) in enumerate(self._scan(), 1)
            if u or not unread
        ]

    def copy(self, msg_id: str, dest: Path) -> Path:
        spans = self._scan()
        if not msg_id.isdigit() or not 1 <= int(msg_id) <= len(spans):
            raise NotFoundError(
                f"no message {msg_id!r} in {self.path} (it holds {len(spans)})",
                hint=f"certmail inbox list --mbox {self.path}",
            )
        start, end, _ = spans[int(msg_id) - 1]
        out = Spool(dest)
        try:
            with open(self.path, "rb") as f:
                f.seek(start)
                f.readline()  # the From line
                _copy_lines(f, end - f.tell(), out)
        finally:
            out.close()
        return dest

    def mark_read(self, msg_id: str) -> None:
        raise Error(
            "certmail never rewrites an mbox file: --mark-read works on IMAP and Maildir",
            hint="mark it read in your mail program",
        )

    def close(self) -> None:
        pass


def _copy_lines(f: object, left: int, out: Spool) -> None:
    """Copy ``left`` bytes of lines from ``f``, unquoted, without the final blank line."""
    import io

    assert isinstance(f, io.BufferedReader)
    held = b""  # the last line, written once we know it is not the separator
    at_start = True  # a long line comes in pieces: only a line's start is unquoted
    while left > 0:
        line = f.readline(min(left, 1 << 20))
        if not line:
            break
        left -= len(line)
        out.write(held)
        held = _QUOTED.sub(rb"\1", line) if at_start and line.startswith(b">") else line
        at_start = line.endswith(b"\n")
    if held not in (b"\n", b"\r\n"):
        out.write(held)
