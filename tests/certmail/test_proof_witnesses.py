"""Cosigned receipts and bundles end to end (issue 14 item 1): a real notary with two
real witnesses, a real send, ``proof export`` (format 3, evidence/checkpoint-N.cosigned)
and ``proof verify --witness ... --quorum N``."""

from __future__ import annotations

import base64
import json
import zipfile
from pathlib import Path
from typing import Any

import pytest

from certmail.bundle.layout import COSIGNED
from notary.cosignature import Cosigner
from tests.fixtures.cli import clean_env, cli, one_line_error
from tests.fixtures.cosigned import export_cosigned, rewrite_bundle, verify_bundle


def test_cosigned_receipts_bundle_and_verify(
    correspondents: Any, notary_dir: Path, tmp_path: Path
) -> None:
    c = correspondents
    bundle, vkey, root, wkeys = export_cosigned(c, notary_dir, tmp_path)
    with zipfile.ZipFile(bundle) as z:
        names = z.namelist()
        assert json.loads(z.read("bundle.json")) == {"format": 3}
    (cos_name,) = [n for n in names if COSIGNED.fullmatch(n)]
    # no --witness: valid (old verifiers' checks), the cosignatures not checked
    p = verify_bundle(c, bundle, vkey, root, "--json")
    assert p.returncode == 0, p.stderr
    report = json.loads(p.stdout)
    (row,) = [ch for ch in report["checks"] if ch["item"] == "cosignatures"]
    assert row["status"] == "skipped" and not row["applies"]
    assert "cosignatures" not in report.get("unchecked", [])
    assert report["verdict"] == "valid"

    # both witnesses -> valid; the JSON report carries the check
    wargs = ["--witness", wkeys[0], "--witness", wkeys[1]]
    p = verify_bundle(c, bundle, vkey, root, *wargs, "--json")
    assert p.returncode == 0, p.stderr
    checks = [ch for ch in json.loads(p.stdout)["checks"] if ch["item"] == "cosignatures"]
    assert len(checks) == 1 and checks[0]["status"] == "ok"
    assert "witness.test/w1, witness.test/w2" in checks[0]["detail"]
    # --witnesses FILE and quorum 1 of a right and a wrong key: valid
    wrong = Cosigner("witness.test/w2", b"\x07" * 32).verifier.vkey()
    listed = tmp_path / "witnesses.txt"
    listed.write_text(f"# ours\n{wkeys[0]}\n{wrong}\n")
    p = verify_bundle(c, bundle, vkey, root, "--witnesses", str(listed), "--quorum", "1")
    assert p.returncode == 0, p.stderr
    # quorum 2 with one witness's key wrong -> fails naming the file and the witness
    p = verify_bundle(c, bundle, vkey, root, "--witnesses", str(listed), "--quorum", "2")
    assert p.returncode == 3
    err = one_line_error(p)
    assert cos_name in err and "witness.test/w2" in err

    # a tampered cosignature -> fails naming the file
    def flip(members: dict[str, bytes]) -> dict[str, bytes]:
        lines = members[cos_name].decode().split("\n")
        sig = lines[-2].rsplit(" ", 1)
        raw = bytearray(base64.b64decode(sig[1]))
        raw[-1] ^= 1
        lines[-2] = sig[0] + " " + base64.b64encode(bytes(raw)).decode()
        members[cos_name] = "\n".join(lines).encode()
        return members

    bad = rewrite_bundle(bundle, tmp_path / "bad.zip", flip)
    p = verify_bundle(c, bad, vkey, root, *wargs)
    assert p.returncode == 3
    err = one_line_error(p)
    assert cos_name in err and "does not verify" in err

    # the notary's signature moved after the cosignatures -> refused even without --witness
    def reorder(members: dict[str, bytes]) -> dict[str, bytes]:
        text, sigs = members[cos_name].decode().split("\n\n", 1)
        lines = sigs.splitlines(True)
        members[cos_name] = (text + "\n\n" + "".join(lines[1:] + lines[:1])).encode()
        return members

    p = verify_bundle(c, rewrite_bundle(bundle, tmp_path / "order.zip", reorder), vkey, root)
    assert p.returncode == 3
    err = one_line_error(p)
    assert cos_name in err and "the notary's signature is not the first line" in err


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_old_bundle_with_and_without_witness(version: str, tmp_path: Path) -> None:
    """The checked-in golden bundles (formats 1 and 2, no cosignatures): valid without
    --witness (the report has no cosignature check), a clear refusal with one."""
    vdir = Path(__file__).parents[1] / "vectors" / "proof-bundle" / version
    bundle = vdir / "signed-ack.certmail-proof.zip"
    pinned = ["--vkey", str(vdir / "notary.vkey"), "--tsa-root", str(vdir / "tsa-root.pem")]
    args = ["proof", "verify", str(bundle), *pinned, "--allow-partial"]
    p = cli(*args, "--json", env=clean_env(tmp_path))
    assert p.returncode == 0, p.stderr
    assert not [ch for ch in json.loads(p.stdout)["checks"] if ch["item"] == "cosignatures"]
    w = Cosigner("witness.test/w1", b"\x01" * 32).verifier.vkey()
    p = cli(*args, "--witness", w, env=clean_env(tmp_path))
    assert p.returncode == 3
    err = one_line_error(p)
    assert "checkpoint of size" in err and "is not cosigned" in err
    assert f"holds no cosigned checkpoint (bundle format {version[1]})" in err
    # usage errors: a malformed key, a quorum that can never be met
    p = cli(*args, "--witness", "nope", env=clean_env(tmp_path))
    assert p.returncode == 3 and "--witness nope" in one_line_error(p)
    p = cli(*args, "--witness", w, "--quorum", "2", env=clean_env(tmp_path))
    assert p.returncode == 1 and "--quorum 2 with 1 witness key(s)" in one_line_error(p)
