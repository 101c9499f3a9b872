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

With ``GOLDEN_WITNESSES=1`` (format 3, tests/vectors/proof-bundle/v3) the notary has two
real witnesses (``certmail witness serve``) and each bundle is exported once both have
cosigned its receipts' checkpoint; their cosigner keys are written as witness-N.vkey.
With ``GOLDEN_ANCHORS=1`` (format 4, tests/vectors/proof-bundle/v4) the notary anchors
its checkpoints with an independent ``openssl ts -reply`` TSA (tests/fixtures/openssl_tsa.py,
``--every 1``) and each bundle is exported once its latest checkpoint is anchored; that
TSA's root is written as anchor-root.pem.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.fixtures.cli import run
from tests.fixtures.notary import NotaryProcess


def _send_acked(
    c: Any,
    notary: NotaryProcess,
    tmp: Path,
    name: str,
    *extra: str,
    settle: Callable[[str], object] = lambda sha256: None,
) -> Path:
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
    settle(sent["sha256"])
    bundle = tmp / f"{name}.certmail-proof.zip"
    p = run(c.alice, "proof", "export", sent["sha256"], "-o", str(bundle))
    assert p.returncode == 0, p.stderr
    return bundle


def _outside_tsa(notary_dir: Path, tmp: Path, out: Path) -> Any:
    """An openssl TSA the notary anchors with every second; its root as anchor-root.pem."""
    from tests.fixtures.cli import cli
    from tests.fixtures.openssl_tsa import OpensslTsa

    tsa = OpensslTsa(tmp / "outside-tsa").start()
    args = ["notary", "anchors", "add", tsa.url, "--root", str(tsa.root), "--every", "1"]
    assert cli(*args, "--dir", str(notary_dir)).returncode == 0
    shutil.copy(tsa.root, out / "anchor-root.pem")
    return tsa


def _wait_anchored(url: str) -> None:
    """Until the notary's latest checkpoint is anchored."""
    import time

    import httpx

    size = int(httpx.get(url + "/checkpoint", timeout=10).text.split("\n")[1])
    deadline = time.monotonic() + 60
    while httpx.get(url + "/v1/anchors", params={"size": size}, timeout=10).status_code != 200:
        assert time.monotonic() < deadline, "the checkpoint was never anchored"
        time.sleep(0.2)


def test_make_golden(correspondents: Any, notary_dir: Path, tmp_path: Path) -> None:
    from tests.fixtures.cosigned import serve_witnesses, wait_receipts_cosigned

    out = Path(os.environ["GOLDEN_OUT"])
    out.mkdir(parents=True, exist_ok=True)
    c = correspondents
    notary_server = NotaryProcess(notary_dir)
    with_witnesses = os.environ.get("GOLDEN_WITNESSES") == "1"
    witnesses = serve_witnesses(notary_dir, tmp_path, notary_server) if with_witnesses else []
    for i, w in enumerate(witnesses, start=1):
        shutil.copy(w.directory / "witness.vkey", out / f"witness-{i}.vkey")
    tsa = _outside_tsa(notary_dir, tmp_path, out) if os.environ.get("GOLDEN_ANCHORS") else None
    try:
        for w in witnesses:
            w.start()
        notary_server.start()
        token = notary_server.token_for(c.alice.email)
        c.settings(c.alice, notary_url=notary_server.url, notary_token=token)

        def settle(sha256: str) -> object:
            if tsa is not None:
                _wait_anchored(notary_server.url)
            return witnesses and wait_receipts_cosigned(notary_server.url, token, sha256)

        signed = _send_acked(
            c, notary_server, tmp_path, "signed-ack", "--no-encrypt", settle=settle
        )
        encrypted = _send_acked(c, notary_server, tmp_path, "encrypted-ack", settle=settle)
    finally:
        notary_server.stop()
        for w in witnesses:
            w.stop()
        if tsa is not None:
            tsa.stop()
    shutil.copy(signed, out / signed.name)
    shutil.copy(encrypted, out / encrypted.name)
    (out / "notary.vkey").write_text(notary_server.vkey.strip() + "\n")
    shutil.copy(notary_server.directory / "tsa" / "root-ca.pem", out / "tsa-root.pem")
    (out / "alice.asc").write_text(c.alice.keyring.export_public(c.alice.email))
    (out / "bob.asc").write_text(c.bob.keyring.export_public(c.bob.email))
