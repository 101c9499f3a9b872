"""The keys a format 2 proof bundle carries (keys/<FPR>.asc) and its format version
(bundle.json): every byte of a key is checked, an uncertified key does not count as the
recipient's, unknown formats are refused (issue 10 item 15, issue 14 item 6)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from certmail.bundle import read_members, verify_bundle, write_members
from certmail.bundle.pgpkeys import export_keys
from keys.errors import VerificationError
from tests.fixtures.notary import NotaryProcess
from tests.fixtures.proof import acked_bundle


def _checks(data: bytes, vkey: str) -> dict[str, Any]:
    return {c.item: c for c in verify_bundle(data, vkey=vkey).checks}


def test_bundle_keys_every_byte_certification_and_format(
    correspondents: Any, notary_server: NotaryProcess, tmp_path: Path
) -> None:
    c = correspondents
    _, bundle, vkey_file = acked_bundle(c, notary_server, tmp_path, export_args=())
    vkey = vkey_file.read_text().strip()
    files = read_members(bundle)
    bob_fpr = c.bob.keyring.key_for(c.bob.email).fingerprint
    alice_fpr = c.alice.keyring.key_for(c.alice.email).fingerprint
    bob_key, alice_key = f"keys/{bob_fpr}.asc", f"keys/{alice_fpr}.asc"
    assert {n for n in files if n.startswith("keys/")} == {bob_key, alice_key}
    assert _checks(bundle.read_bytes(), vkey)["02 acknowledgement"].status == "ok"

    # one flipped bit anywhere in a key file: refused, naming the file
    for name in (bob_key, alice_key):
        data = files[name]
        positions = sorted({0, len(data) - 1, *range(0, len(data), len(data) // 12)})
        for i, pos in enumerate(positions):
            changed = bytearray(data)
            changed[pos] ^= 1 << (i % 8)
            with pytest.raises(VerificationError) as ei:
                verify_bundle(write_members({**files, name: bytes(changed)}), vkey=vkey)
            assert name in ei.value.message, (pos, ei.value.message)
    # a key under another key's name
    with pytest.raises(VerificationError, match="not the one OpenPGP key its name says"):
        verify_bundle(write_members({**files, bob_key: files[alice_key]}), vkey=vkey)

    # Bob's key as Bob himself exports it (no certification by Alice): the bundle's keys
    # cannot tell it is his, so the acknowledgement is a check that could not run
    own = export_keys(Path(c.bob.settings.gnupghome), None, [(bob_fpr, c.bob.email)])
    assert list(own) == [bob_key] and own[bob_key] != files[bob_key]
    ack = _checks(write_members({**files, **own}), vkey)["02 acknowledgement"]
    assert ack.status == "skipped" and "not certified by the sender's key" in ack.detail
    # with Alice's keyring (she trusted Bob's key) it is checked again
    from keys.gpg import Keyring

    report = verify_bundle(
        write_members({**files, **own}), vkey=vkey, keyring=Keyring(c.alice.settings.gnupghome)
    )
    assert {x.item: x for x in report.checks}["02 acknowledgement"].status == "ok"

    # the format version: one form, known versions only; keys only from format 2
    for text, why in (
        (b'{\n  "format": 7\n}\n', "newer than this certmail knows"),
        (b'{\n  "format": 6\n}\n', "says format 6, but the bundle holds nothing of format 6"),
        (b'{\n  "format": 5\n}\n', "says format 5, but the bundle holds nothing of format 5"),
        (b'{\n  "format": 1\n}\n', "bundle.json is not a format version"),
        (b'{\n  "format": "2"\n}\n', "bundle.json is not a format version"),
        (b'{"format": 2}\n', "bundle.json is not in its canonical form"),
    ):
        with pytest.raises(VerificationError, match=why):
            verify_bundle(write_members({**files, "bundle.json": text}), vkey=vkey)
    without = {n: d for n, d in files.items() if n != "bundle.json"}
    with pytest.raises(VerificationError, match=r"keys/.* in a bundle without bundle\.json"):
        verify_bundle(write_members(without), vkey=vkey)
