"""certmail open against messages built to cost work: many same-named parts, deep nesting.

Issue 10 item 5: 5,000 same-named parts took over 115 s (the name
de-duplication was roughly cubic). Now the walk refuses more than
``MAX_PARTS`` MIME entities and de-duplication is linear. No timing is
asserted: the outcome is, under pytest's timeout.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from certmail.api import Certmail
from certmail.attachments import save_all
from certmail.results import AttachmentInfo
from certmail.unseal import MAX_DEPTH, MAX_PARTS, Part, Unsealed
from keys.errors import MalformedError
from tests.fixtures.gpg_messages import hand_made, inner_entity, open_refused, same_named_parts

pytestmark = pytest.mark.timeout(120)


def test_five_thousand_same_named_parts_refused(correspondents: Any, tmp_path: Path) -> None:
    c = correspondents
    eml = same_named_parts(c.alice.keyring.gnupghome, tmp_path / "m.eml", 5000)
    open_refused(c.bob.settings, eml, tmp_path / "save", MalformedError, "too many parts")


def test_many_same_named_parts_under_the_cap_open(correspondents: Any, tmp_path: Path) -> None:
    c = correspondents
    n = MAX_PARTS - 10
    atts = [(b'filename="same.txt"', str(i).encode()) for i in range(n)]
    eml = tmp_path / "m.eml"
    eml.write_bytes(hand_made(c.alice.keyring.gnupghome, inner_entity(atts)))
    save = tmp_path / "save"
    with Certmail(c.bob.settings) as cm:
        o = cm.open(eml, save_dir=save)
    names = {Path(a.saved_as).name for a in o.attachments if a.saved_as}
    assert len(names) == n
    assert {"same.txt", "same-1.txt", f"same-{n - 1}.txt"} <= names
    assert (save / "same-7.txt").read_bytes() == b"7"


def test_deep_nesting_refused(correspondents: Any, tmp_path: Path) -> None:
    c = correspondents
    inner = b"Content-Type: text/plain\r\n\r\nbottom\r\n"
    for i in range(MAX_DEPTH + 5):
        b = f"b{i}".encode()
        inner = (
            b'Content-Type: multipart/mixed; boundary="'
            + b
            + b'"\r\n\r\n--'
            + b
            + b"\r\n"
            + inner
            + b"\r\n--"
            + b
            + b"--\r\n"
        )
    eml = tmp_path / "m.eml"
    eml.write_bytes(hand_made(c.alice.keyring.gnupghome, inner, sign=False))
    with Certmail(c.bob.settings) as cm, pytest.raises(MalformedError, match="too deep"):
        cm.open(eml, save_dir=tmp_path / "save", allow_unsigned=True)


def test_dedup_of_twenty_thousand_names_is_linear(tmp_path: Path) -> None:
    """save_all itself (past the walk's cap, as a library caller could): 20,000 repeats."""
    n = 20_000
    parts = [Part("text/plain", "a.txt", b"", True) for _ in range(n)]
    u = Unsealed(False, None, None, {}, {}, None, parts, None)
    infos = [AttachmentInfo("a.txt", "text/plain", 0, "", "not scanned") for _ in range(n)]
    warnings: list[str] = []
    save_all(u, infos, tmp_path / "save", False, warnings)
    saved = {Path(i.saved_as).name for i in infos if i.saved_as}
    assert len(saved) == n
    assert "a-19999.txt" in saved and "a.txt" in saved
