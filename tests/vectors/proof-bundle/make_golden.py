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
TSA's root is written as anchor-root.pem. With ``GOLDEN_MDNS=1`` (format 5,
tests/vectors/proof-bundle/v5) each message is sent with ``--request-mdn`` and its bundle
carries Bob's signed MDN and an unsigned Thunderbird-style one. With ``GOLDEN_SMIME=1``
(format 6, tests/vectors/proof-bundle/v6) the messages are S/MIME (``send --smime``).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.fixtures.cli import run
from tests.fixtures.notary import NotaryProcess
from tests.fixtures.proof import send_deal


def _send_acked(
    c: Any,
    notary: NotaryProcess,
    tmp: Path,
    name: str,
    *extra: str,
    settle: Callable[[str], object] = lambda sha256: None,
) -> Path:
    text = "I agree to the terms of the contract.\n"
    sent = send_deal(c, tmp, *extra, subject="The contract", text=text, body=f"{name}.txt")
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
    from tests.fixtures.cli import use_notary
    from tests.fixtures.cosigned import serve_witnesses, serving, wait_receipts_cosigned

    if os.environ.get("GOLDEN_MDNS") == "1":  # format 5: a flow of its own
        with serving(server := NotaryProcess(notary_dir), []):
            _golden_v5(correspondents, server, tmp_path)
        return
    if os.environ.get("GOLDEN_SMIME") == "1":  # format 6: the notary trusts the S/MIME CA
        import dataclasses

        from notary.config import load_config, write_config
        from tests.fixtures.smime import smime_homes

        smime = smime_homes(correspondents, tmp_path)
        cfg = dataclasses.replace(load_config(notary_dir), ack_smime_ca=str(smime.pki.ca))
        write_config(cfg)
        with serving(server := NotaryProcess(notary_dir), []):
            _golden_v6(correspondents, server, tmp_path, smime)
        return

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
        with serving(notary_server, witnesses):
            token = use_notary(c, c.alice, notary_server)

            def settle(sha256: str) -> object:
                if tsa is not None:
                    _wait_anchored(notary_server.url)
                return witnesses and wait_receipts_cosigned(notary_server.url, token, sha256)

            signed = _send_acked(
                c, notary_server, tmp_path, "signed-ack", "--no-encrypt", settle=settle
            )
            encrypted = _send_acked(c, notary_server, tmp_path, "encrypted-ack", settle=settle)
    finally:
        if tsa is not None:
            tsa.stop()
    shutil.copy(signed, out / signed.name)
    shutil.copy(encrypted, out / encrypted.name)
    (out / "notary.vkey").write_text(notary_server.vkey.strip() + "\n")
    shutil.copy(notary_server.directory / "tsa" / "root-ca.pem", out / "tsa-root.pem")
    (out / "alice.asc").write_text(c.alice.keyring.export_public(c.alice.email))
    (out / "bob.asc").write_text(c.bob.keyring.export_public(c.bob.email))


def _send_acked_with_mdns(c: Any, tmp: Path, kind: str, *extra: str) -> Path:
    """Alice sends with ``--request-mdn``, Bob opens with ``--ack --mdn`` (his signed MDN
    comes back), Alice keeps it and a Thunderbird-style unsigned one, then exports."""
    from tests.fixtures.cli import json_of, send_args
    from tests.fixtures.mdn import thunderbird_mdn

    args = send_args(c.bob.email, "The contract", "--via", "smtp", "--request-mdn", *extra)
    sent = json_of(run(c.alice, *args, stdin=b"I agree to the terms of the contract.\n"))
    eml = tmp / f"{kind}.eml"
    eml.write_bytes(c.sink.messages[-1].data)
    before = len(c.sink.messages)
    json_of(run(c.bob, "open", str(eml), "--ack", "--mdn", "--json"))
    (mdn,) = c.sink.messages[before:]
    for name, raw in (
        (f"{kind}-signed-mdn.eml", mdn.data),
        (f"{kind}-tb-mdn.eml", thunderbird_mdn(c.bob.email, c.alice.email, sent["message_id"])),
    ):
        (tmp / name).write_bytes(raw)
        json_of(run(c.alice, "open", str(tmp / name), "--json"))
    bundle = tmp / f"{kind}.certmail-proof.zip"
    p = run(c.alice, "proof", "export", sent["sha256"], "-o", str(bundle))
    assert p.returncode == 0, p.stderr
    return bundle


def _golden_v5(correspondents: Any, notary_server: NotaryProcess, tmp_path: Path) -> None:
    """Format 5 (``GOLDEN_MDNS=1``, tests/vectors/proof-bundle/v5): read receipts (a signed
    MDN from Bob's certmail, an unsigned Thunderbird-style one) in each bundle."""
    from tests.fixtures.cli import use_notary

    out = Path(os.environ["GOLDEN_OUT"])
    out.mkdir(parents=True, exist_ok=True)
    c = correspondents
    use_notary(c, c.alice, notary_server)
    c.settings(c.bob, smtp_url=c.sink.url)
    for kind, extra in (("signed-ack", ("--no-encrypt",)), ("encrypted-ack", ())):
        shutil.copy(_send_acked_with_mdns(c, tmp_path, kind, *extra), out)
    (out / "notary.vkey").write_text(notary_server.vkey.strip() + "\n")
    shutil.copy(notary_server.directory / "tsa" / "root-ca.pem", out / "tsa-root.pem")
    (out / "alice.asc").write_text(c.alice.keyring.export_public(c.alice.email))
    (out / "bob.asc").write_text(c.bob.keyring.export_public(c.bob.email))


def _golden_v6(correspondents: Any, notary_server: NotaryProcess, tmp_path: Path, s: Any) -> None:
    """Format 6 (``GOLDEN_SMIME=1``, tests/vectors/proof-bundle/v6): S/MIME messages
    (signed-only and signed+encrypted, ``send --smime``) with Bob's acknowledgement and his
    signed MDN (``s``: their S/MIME homes); the S/MIME CA's root is written as smime-ca.pem."""
    from tests.fixtures.cli import json_of, send_args, use_notary

    out = Path(os.environ["GOLDEN_OUT"])
    out.mkdir(parents=True, exist_ok=True)
    c = correspondents
    use_notary(c, c.alice, notary_server)
    c.settings(c.bob, smtp_url=c.sink.url)
    for kind, extra in (("signed-ack", ("--no-encrypt",)), ("encrypted-ack", ())):
        args = send_args(c.bob.email, "The contract", "--smime", "--via", "smtp", *extra)
        body = b"I agree to the terms of the contract.\n"
        sent = json_of(run(c.alice, *args, "--request-mdn", stdin=body, **s.env))
        eml = tmp_path / f"{kind}.eml"
        eml.write_bytes(c.sink.messages[-1].data)
        before = len(c.sink.messages)
        json_of(run(c.bob, "open", str(eml), "--ack", "--mdn", "--json", **s.env))
        (mdn,) = c.sink.messages[before:]
        (tmp_path / f"{kind}-mdn.eml").write_bytes(mdn.data)
        json_of(run(c.alice, "open", str(tmp_path / f"{kind}-mdn.eml"), "--json", **s.env))
        bundle = out / f"{kind}.certmail-proof.zip"
        p = run(c.alice, "proof", "export", sent["sha256"], "-o", str(bundle), **s.env)
        assert p.returncode == 0, p.stderr
    shutil.copy(s.pki.ca, out / "smime-ca.pem")
    (out / "notary.vkey").write_text(notary_server.vkey.strip() + "\n")
    shutil.copy(notary_server.directory / "tsa" / "root-ca.pem", out / "tsa-root.pem")
    (out / "alice.asc").write_text(c.alice.keyring.export_public(c.alice.email))
    (out / "bob.asc").write_text(c.bob.keyring.export_public(c.bob.email))
