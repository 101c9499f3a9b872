"""Make the golden proof bundles of tests/vectors/proof-bundle/ with the code checked out.

Not collected as a test (the name does not start with ``test_``). Run it on purpose:

    GOLDEN_OUT=tests/vectors/proof-bundle/vN .venv/bin/pytest -q -p no:cacheprovider \
        tests/vectors/proof-bundle/make_golden.py

It runs the real flow (a notary initialised in a temporary directory, Alice and Bob with
temporary GnuPG homes, ``certmail send --via smtp`` to a loopback SMTP sink, Bob's
``certmail open --ack``, Alice's ``certmail proof export``) twice: a signed-only message
(``--no-encrypt``) and an encrypted one, each acknowledged by Bob. It writes the two
bundles, the notary's verifier key, its TSA root and Alice's and Bob's public keys
(public material only; the private keys go with the temporary directories).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from tests.fixtures.cli import run, use_notary
from tests.fixtures.notary import NotaryProcess


def _send_acked(c: Any, notary: NotaryProcess, tmp: Path, name: str, *extra: str) -> Path:
    body = tmp / f"{name}.txt"
    body.write_text("I agree to the terms of the contract.\n")
    p = run(
        c.alice,
        "send",
        "--to",
        c.bob.email,
        "--subject",
        "The contract",
        "--body-file",
        str(body),
        "--via",
        "smtp",
        "--json",
        *extra,
    )
    assert p.returncode == 0, p.stderr
    sent = json.loads(p.stdout)
    eml = tmp / f"{name}.eml"
    eml.write_bytes(c.sink.messages[-1].data)
    p = run(c.bob, "open", str(eml), "--ack", "--json")
    assert p.returncode == 0, p.stderr
    bundle = tmp / f"{name}.certmail-proof.zip"
    p = run(c.alice, "proof", "export", sent["sha256"], "-o", str(bundle))
    assert p.returncode == 0, p.stderr
    return bundle


def test_make_golden(correspondents: Any, notary_server: NotaryProcess, tmp_path: Path) -> None:
    out = Path(os.environ["GOLDEN_OUT"])
    out.mkdir(parents=True, exist_ok=True)
    c = correspondents
    use_notary(c, c.alice, notary_server)
    signed = _send_acked(c, notary_server, tmp_path, "signed-ack", "--no-encrypt")
    encrypted = _send_acked(c, notary_server, tmp_path, "encrypted-ack")
    shutil.copy(signed, out / signed.name)
    shutil.copy(encrypted, out / encrypted.name)
    (out / "notary.vkey").write_text(notary_server.vkey.strip() + "\n")
    shutil.copy(notary_server.directory / "tsa" / "root-ca.pem", out / "tsa-root.pem")
    (out / "alice.asc").write_text(c.alice.keyring.export_public(c.alice.email))
    (out / "bob.asc").write_text(c.bob.keyring.export_public(c.bob.email))
