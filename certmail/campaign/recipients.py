"""The recipients CSV of a campaign, read strictly and checked row by row.

RFC 4180 CSV, UTF-8 (a BOM is allowed), a header line naming the columns, one of
which is ``email``. Every problem is collected with its line number (the header
is line 1) before anything else happens, so one run lists all of them.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass
from pathlib import Path

from keys.errors import Error

from ..compose import check_address

__all__ = ["MAX_CSV_BYTES", "Problem", "Row", "read_rows"]

MAX_CSV_BYTES = 64 << 20
MAX_FIELD = 8192
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


@dataclass(frozen=True)
class Row:
    """One recipient: its CSV line, address (lower-cased domain kept as given) and columns."""

    line: int
    email: str
    fields: dict[str, str]


@dataclass(frozen=True)
class Problem:
    """What is wrong with one line of the CSV (or with the file, ``line`` 0)."""

    line: int
    message: str
    hint: str

    def to_json(self) -> dict[str, object]:
        return {"row": self.line, "error": self.message, "hint": self.hint}

    def __str__(self) -> str:
        where = f"row {self.line}: " if self.line else ""
        return f"{where}{self.message} ({self.hint})"


def _text(path: Path) -> str:
    if not path.is_file():
        raise Error(f"no such file: {path}", hint="give --recipients FILE.csv")
    if path.stat().st_size > MAX_CSV_BYTES:
        raise Error(
            f"{path} is larger than {MAX_CSV_BYTES >> 20} MiB", hint="split the campaign in several"
        )
    try:
        return path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise Error(f"{path} is not UTF-8 (byte {e.start})", hint="save the CSV as UTF-8") from None


def read_rows(path: Path) -> tuple[list[str], list[Row], list[Problem]]:
    """The columns, the good rows and every problem found (nothing raised for a bad row)."""
    reader = csv.reader(io.StringIO(_text(path), newline=""), strict=True)
    try:
        header = next(reader)
    except StopIteration:
        raise Error(
            f"{path} is empty", hint="the first line names the columns: email,..."
        ) from None
    except csv.Error as e:
        raise Error(f"{path} line 1 is not CSV: {e}", hint="check quoting") from None
    columns = [c.strip() for c in header]
    if "email" not in columns:
        raise Error(
            f"{path} has no 'email' column (columns: {', '.join(columns)})",
            hint="name the column of addresses 'email' in the first line",
        )
    if len(set(columns)) != len(columns) or "" in columns:
        raise Error(
            f"{path}: column names must be unique and not empty",
            hint="fix the first line of the CSV",
        )
    rows: list[Row] = []
    problems: list[Problem] = []
    seen: dict[str, int] = {}
    while True:
        try:
            values = next(reader)
        except StopIteration:
            break
        except csv.Error as e:
            problems.append(Problem(reader.line_num, f"not CSV: {e}", "check the quoting"))
            continue
        line = reader.line_num
        if not values or values == [""]:
            continue  # a blank line
        row = _check_row(line, columns, values, seen, problems)
        if row is not None:
            rows.append(row)
    if not rows and not problems:
        raise Error(f"{path} has no recipients", hint="one line per recipient after the header")
    return columns, rows, problems


def _check_row(
    line: int, columns: list[str], values: list[str], seen: dict[str, int], problems: list[Problem]
) -> Row | None:
    if len(values) != len(columns):
        problems.append(
            Problem(
                line,
                f"{len(values)} fields where the header has {len(columns)}",
                "quote fields that contain a comma",
            )
        )
        return None
    fields = dict(zip(columns, (v.strip() for v in values), strict=True))
    if any(len(v) > MAX_FIELD for v in fields.values()):
        problems.append(
            Problem(line, f"a field is longer than {MAX_FIELD} characters", "shorten it")
        )
        return None
    if any(_CONTROL.search(v) for v in fields.values()):
        problems.append(
            Problem(line, "a field has a control character (NUL, ESC, ...)", "remove it")
        )
        return None
    email = fields["email"]
    try:
        check_address(email)
    except Error:
        problems.append(
            Problem(
                line,
                f"not an email address: {email!r}",
                "give a plain address like bob@example.net",
            )
        )
        return None
    key = email.lower()
    if key in seen:
        problems.append(
            Problem(
                line,
                f"duplicate address {email} (first on row {seen[key]})",
                "each recipient once: remove the duplicate line",
            )
        )
        return None
    seen[key] = line
    return Row(line, email, fields)
