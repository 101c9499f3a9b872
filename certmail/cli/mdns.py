"""Read receipts (RFC 8098 MDNs) coming back, for ``open``, ``inbox`` and ``receipts``.

The library is :mod:`certmail.mdn_in`; these helpers print.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from certmail.cli.app import App, emit_json, say

if TYPE_CHECKING:
    from certmail.inbox.summary import Summary
    from certmail.mdn_in import StoredMdn


def _head(path: Path) -> bytes:
    from certmail.mdn_in import MAX_MDN_BYTES

    try:
        with path.open("rb") as f:
            return f.read(MAX_MDN_BYTES + 1)
    except OSError:
        return b""  # open itself says what is wrong with the file


def describe(s: StoredMdn) -> str:
    """One line: what the MDN says, about which message, and what it is worth."""
    key = ""
    if s.signer_fingerprint and s.signer_subject is not None:  # S/MIME: chain verified
        key = f", certificate {s.signer_fingerprint}"
    elif s.signer_fingerprint:
        key = f", key {s.signer_fingerprint}{'' if s.signer_trusted else ' (not certified)'}"
    return (
        f"read receipt from {s.final_recipient} for {s.message_id}: {s.disposition}"
        f" [{s.description}{key}]"
    )


def open_mdn(app: App, file: Path) -> bool:
    """`open`'s step: when FILE is an MDN, keep it for the sent message and say so."""
    from certmail.mdn_in import is_mdn, read_mdn, store

    raw = _head(file)
    if not is_mdn(raw):
        return False
    with app.client() as cm:
        kept = store(cm.ledger, read_mdn(cm.keyring, raw, cm.smime), raw, _now())
    if app.as_json:
        emit_json({"mdn": kept.to_json()})
    else:
        say(describe(kept))
        say(f"kept in your ledger; see it with: certmail receipts {kept.sha256[:16]}")
    return True


def collect(cm: Any, path: Path, summary: Summary) -> None:
    """`inbox list`'s step: an MDN for a message you sent is kept; the line says so."""
    from certmail.mdn_in import is_mdn, read_mdn, store
    from keys.errors import Error

    raw = _head(path)
    if not is_mdn(raw):
        return
    try:
        summary.mdn = describe(store(cm.ledger, read_mdn(cm.keyring, raw, cm.smime), raw, _now()))
    except Error as e:
        summary.mdn = f"read receipt not kept: {e.message}"


def show(ledger_path: Path, sha256: str, doc: dict[str, Any] | None) -> None:
    """`receipts`' step: the MDNs kept for the message (into ``doc`` for --json)."""
    from certmail.mdn_in import stored

    found = stored(ledger_path, sha256)
    if doc is not None:
        doc["mdns"] = [m.to_json() for m in found]
        return
    for m in found:
        click.echo(f"  {m.received}  {describe(m)}")


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
