"""The protected Subject of the sender's copy, for ``certmail proof export --reveal-subject``
(RFC 9788: inside the encryption; the outer one is ``[...]``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from keys.errors import Error

__all__ = ["protected_subject", "revealed_subject"]


def revealed_subject(message: Path, settings: Any) -> str | None:
    """The protected Subject to show (--reveal-subject), warning when it cannot be read."""
    protected, note = protected_subject(message, settings)
    if note:
        click.echo(f"certmail: warning: {note}", err=True)
    return protected


def protected_subject(message: bytes | Path, settings: Any) -> tuple[str | None, str | None]:
    """The Subject inside the encryption of the sender's copy (RFC 9788: the outer one is
    ``[...]``), and a note when it cannot be read. ``send`` encrypts to the sender's own
    key too, so the sender's keyring decrypts its copy; (None, None) for a message that
    is not encrypted (its outer Subject is the real one). ``message``: its bytes, or its
    file (read as a stream, :func:`certmail.unseal.unseal_file`)."""
    import tempfile

    from certmail.bundle.headers import header_facts
    from certmail.mime import FileBuffer
    from certmail.unseal import unseal, unseal_file
    from keys.gpg import Keyring

    if isinstance(message, Path):
        with message.open("rb") as f:
            layout = header_facts(FileBuffer(f.fileno())).layout
    else:
        layout = header_facts(message).layout
    if layout is None or layout.kind != "encrypted":
        return None, None
    outer = " (the certificate shows the outer Subject, [...])"
    keyring = Keyring(settings.gnupghome)
    try:
        with tempfile.TemporaryDirectory(prefix="certmail-subject-") as work:
            if isinstance(message, Path):
                opened = unseal_file(keyring, message, Path(work), allow_unsigned=True)
            else:
                opened = unseal(keyring, message, Path(work), allow_unsigned=True)
    except Error as e:
        first = e.message.splitlines()[0] if e.message else type(e).__name__
        return None, f"cannot decrypt your copy to read its Subject: {first}{outer}"
    subject = opened.fields.get("Subject") if opened.header_protection else None
    if subject is None:
        return None, f"your copy has no protected Subject inside its encryption{outer}"
    return subject, None
