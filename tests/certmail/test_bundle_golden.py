"""The golden proof bundles of tests/vectors/proof-bundle/ (one directory per format
version, each with its PROVENANCE.md) verify forever through ``certmail proof verify``,
and a tampered copy does not."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from certmail.bundle import read_members, write_members

VECTORS = Path(__file__).resolve().parent.parent / "vectors" / "proof-bundle"
CLI = [sys.executable, "-m", "certmail.cli.main", "proof", "verify"]


def _env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CERTMAIL_", "GNUPG"))}
    env["CERTMAIL_HOME"] = str(tmp_path / "home")  # no keyring of its own
    return env


def _gnupghome(tmp_path: Path, version: Path) -> Path:
    """A GnuPG home holding the golden's Alice and Bob public keys (stock gpg)."""
    home = tmp_path / "g"
    home.mkdir(mode=0o700)
    keys = [str(version / "alice.asc"), str(version / "bob.asc")]
    subprocess.run(
        ["gpg", "--homedir", str(home), "--batch", "--no-autostart", "--import", *keys],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return home


def _verify(
    bundle: Path, version: Path, tmp_path: Path, *extra: str
) -> subprocess.CompletedProcess[str]:
    pinned = ["--vkey", str(version / "notary.vkey"), "--tsa-root", str(version / "tsa-root.pem")]
    return subprocess.run(
        [*CLI, str(bundle), *pinned, "--json", *extra],
        capture_output=True,
        text=True,
        env=_env(tmp_path),
        timeout=120,
        check=False,
    )


def _versions() -> list[str]:
    return sorted(p.name for p in VECTORS.iterdir() if p.is_dir())


@pytest.mark.parametrize("version", _versions())
@pytest.mark.parametrize("kind", ["signed-ack", "encrypted-ack"])
def test_golden_bundle_verifies_forever(version: str, kind: str, tmp_path: Path) -> None:
    vdir = VECTORS / version
    assert (vdir / "PROVENANCE.md").is_file()
    bundle = vdir / f"{kind}.certmail-proof.zip"
    gh = _gnupghome(tmp_path, vdir)
    ca = vdir / "smime-ca.pem"  # v6: the S/MIME CA the sender signature chains to
    smime = ["--smime-ca", str(ca)] if ca.is_file() else []
    p = _verify(bundle, vdir, tmp_path, "--gnupghome", str(gh), *smime, "--allow-partial")
    assert p.returncode == 0, p.stderr
    assert "warning" not in p.stderr
    report = json.loads(p.stdout)
    checks = {c["item"]: c for c in report["checks"]}
    assert [e["event"] for e in report["events"]] == ["SubmissionAcceptance", "ContentHandover"]
    assert checks["02 acknowledgement"]["status"] == "ok"
    assert checks["documents"]["status"] == "ok"
    if kind == "signed-ack":
        assert checks["sender signature"]["status"] == "ok"
        assert report["verdict"] == "valid"
    else:
        assert report["unchecked"] == ["sender signature"]
    # one flipped byte in the acknowledgement's receipt: refused, naming the file
    files = read_members(bundle)
    name = "evidence/02-ContentHandover.json"
    data = bytearray(files[name])
    data[len(data) // 2] ^= 0x04
    bad = tmp_path / "bad.zip"
    bad.write_bytes(write_members({**files, name: bytes(data)}))
    p = _verify(bad, vdir, tmp_path, "--gnupghome", str(gh), "--allow-partial")
    assert p.returncode == 3 and p.stdout == ""
    assert name in p.stderr


@pytest.mark.parametrize("kind", ["signed-ack", "encrypted-ack"])
def test_golden_v2_verifies_with_its_own_keys_and_stock_gpg(kind: str, tmp_path: Path) -> None:
    """Format 2: with no keyring at all the acknowledgement (and the sender's signature of
    the signed message) is checked with the keys the bundle carries; the OpenPGP commands
    its VERIFY.txt prints succeed with plain gpg (the decryption, a recipient's step,
    aside)."""
    import zipfile

    from tests.fixtures.proof import openpgp_commands, run_commands

    vdir = VECTORS / "v2"
    bundle = vdir / f"{kind}.certmail-proof.zip"
    p = _verify(bundle, vdir, tmp_path, "--allow-partial")
    assert p.returncode == 0, p.stderr
    report = json.loads(p.stdout)
    assert report["format"] == 2
    checks = {c["item"]: c for c in report["checks"]}
    assert checks["02 acknowledgement"]["status"] == "ok"
    assert checks["02 acknowledgement"]["detail"].endswith(
        "the key the bundle carries, certified by the sender"
    )
    if kind == "signed-ack":
        assert report["verdict"] == "valid" and checks["sender signature"]["status"] == "ok"
    work = tmp_path / "unzipped"
    with zipfile.ZipFile(bundle) as zf:
        zf.extractall(work)
    cmds = [
        c for c in openpgp_commands((work / "VERIFY.txt").read_text()) if "message.asc" not in c
    ]
    results = run_commands(cmds, work)
    assert len(results) == len(cmds) and all(r.returncode == 0 for r in results), [
        (r.args, r.stderr) for r in results
    ]
    assert 'Good signature from "Bob <bob@example.net>" [full]' in results[-1].stderr
