"""`certmail notarize` and `certmail receipt verify` against a real notary process."""

from __future__ import annotations

import json
import os
from pathlib import Path

from tests.fixtures.cli import cli, notary_env
from tests.fixtures.notary import NotaryProcess


def test_notarize_then_verify_offline(notary_server: NotaryProcess, tmp_path: Path) -> None:
    env = notary_env(notary_server, tmp_path / "home")
    msg = tmp_path / "m.eml"
    msg.write_bytes(b"Message-ID: <m1@example.test>\r\n\r\nbody\r\n")
    r = cli("notarize", str(msg), "--json", env=env)
    assert r.returncode == 0, r.stderr
    receipt = json.loads(r.stdout)
    assert set(receipt) == {"entry", "proof", "tst"}
    rpath = tmp_path / "m.eml.receipt.json"
    assert json.loads(rpath.read_text()) == receipt
    vkey = tmp_path / "notary.vkey"
    vkey.write_text(notary_server.vkey + "\n")
    root = notary_server.directory / "tsa" / "root-ca.pem"
    chain = notary_server.directory / "tsa" / "tsa-chain.pem"
    r = cli(
        "receipt",
        "verify",
        str(rpath),
        "--vkey",
        str(vkey),
        "--data",
        str(msg),
        "--tsa-root",
        str(root),
        "--tsa-chain",
        str(chain),
        "--json",
        env=env,
    )
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["valid"] and out["message"]["id"] == "<m1@example.test>"
    assert out["timestamp"] is not None

    # another message's bytes: exit 3 and one line naming what failed
    other = tmp_path / "other.eml"
    other.write_bytes(b"not the same\r\n")
    r = cli("receipt", "verify", str(rpath), "--vkey", str(vkey), "--data", str(other), env=env)
    assert r.returncode == 3
    assert r.stderr.startswith("certmail: error: the receipt is for message")
    assert "Traceback" not in r.stderr

    # a wrong verifier key: exit 3
    from notary.note import Signer

    wrong = tmp_path / "wrong.vkey"
    wrong.write_text(Signer.generate("notary.test/log").verifier().vkey())
    r = cli("receipt", "verify", str(rpath), "--vkey", str(wrong), env=env)
    assert r.returncode == 3 and "certmail: error:" in r.stderr

    # a tampered receipt file: exit 3, no traceback
    bad = json.loads(rpath.read_text())
    bad["entry"] = bad["entry"][:-8] + "AAAAAAA="
    tampered = tmp_path / "tampered.json"
    tampered.write_text(json.dumps(bad))
    r = cli("receipt", "verify", str(tampered), "--vkey", str(vkey), env=env)
    assert r.returncode == 3 and "Traceback" not in r.stderr
    garbage = tmp_path / "garbage.json"
    garbage.write_bytes(b"\xff\xfe not json")
    r = cli("receipt", "verify", str(garbage), "--vkey", str(vkey), env=env)
    assert r.returncode == 3 and r.stderr.startswith("certmail: error:")


def test_notarize_without_notary_names_the_fix(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CERTMAIL_")}
    env["CERTMAIL_HOME"] = str(tmp_path / "home")
    f = tmp_path / "f"
    f.write_bytes(b"x")
    r = cli("notarize", str(f), env=env)
    assert r.returncode == 1
    assert "certmail: error: no notary configured" in r.stderr
    assert "certmail: hint: set CERTMAIL_NOTARY_URL" in r.stderr


def test_notarize_never_overwrites_without_force(
    notary_server: NotaryProcess, tmp_path: Path
) -> None:
    env = notary_env(notary_server, tmp_path / "home")
    msg = tmp_path / "m.eml"
    msg.write_bytes(b"Message-ID: <m2@example.test>\r\n\r\nbody\r\n")
    letter = tmp_path / "letter.txt"
    letter.write_bytes(b"Dear Bob, ...\n")
    r = cli("notarize", str(msg), "-o", str(letter), env=env)
    assert r.returncode == 7, r.stderr
    assert "letter.txt exists" in r.stderr and "--force" in r.stderr
    assert letter.read_bytes() == b"Dear Bob, ...\n"
    assert cli("notarize", str(msg), env=env).returncode == 0
    rpath = tmp_path / "m.eml.receipt.json"
    first = rpath.read_bytes()
    again = cli("notarize", str(msg), env=env)  # a second run keeps the first receipt
    assert again.returncode == 7, again.stderr
    assert rpath.read_bytes() == first
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []
    forced = cli("notarize", str(msg), "--force", "--json", env=env)
    assert forced.returncode == 0, forced.stderr
    assert json.loads(rpath.read_text()) == json.loads(forced.stdout)
