"""Cosigned receipts and bundles end to end (issue 14 item 1): a real notary with two
real witnesses, a real send, ``proof export`` (format 3, evidence/checkpoint-N.cosigned)
and ``proof verify --witness ... --quorum N``."""

from __future__ import annotations

import base64
import io
import json
import time
import zipfile
from pathlib import Path
from typing import Any, NamedTuple

import httpx
import pytest

from certmail.bundle.layout import COSIGNED
from notary.cosignature import Cosigner
from notary.note import Verifier, parse_note
from notary.receipt import Receipt
from tests.certmail.test_witness_cli import WitnessProcess, _grow
from tests.fixtures.cli import clean_env, cli, one_line_error, run
from tests.fixtures.notary import NotaryProcess
from tests.fixtures.proof import send_deal


def _witnesses(notary_dir: Path, tmp_path: Path, real: NotaryProcess) -> list[WitnessProcess]:
    out = []
    for i in (1, 2):
        d = tmp_path / f"w{i}"
        assert (
            cli("witness", "init", "--dir", str(d), "--name", f"witness.test/w{i}").returncode == 0
        )
        w = WitnessProcess(d)
        vkey = (d / "witness.vkey").read_text().strip()
        assert cli("witness", "logs", "add", real.vkey, "--dir", str(d)).returncode == 0
        p = cli("notary", "witnesses", "add", w.url, vkey, "--dir", str(notary_dir))
        assert p.returncode == 0, p.stderr
        out.append(w)
    return out


def _wait_receipts_cosigned(url: str, token: str, sha256: str) -> list[dict[str, Any]]:
    """The message's receipts, once their checkpoint carries both witnesses' lines."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        r = httpx.get(
            f"{url}/v1/messages/{sha256}/receipts",
            headers={"Authorization": f"Bearer {token}"},
            timeout=10,
        )
        assert r.status_code == 200, r.text
        receipts: list[dict[str, Any]] = r.json()["receipts"]
        notes = [r["proof"].split("\n\n", 1)[1] for r in receipts]
        if notes and all(len(parse_note(n.encode()).signatures) == 3 for n in notes):
            return receipts
        time.sleep(0.2)
    raise AssertionError("the receipts never carried the cosignatures")


def _verify(c: Any, bundle: Path, vkey: Path, root: Path, *extra: str) -> Any:
    args = ["proof", "verify", str(bundle), "--vkey", str(vkey), "--tsa-root", str(root)]
    return run(c.bob, *args, "--allow-partial", *extra)


def _rewrite(bundle: Path, out: Path, change: Any) -> Path:
    with zipfile.ZipFile(bundle) as z:
        members = {i.filename: z.read(i) for i in z.infolist()}
    members = change(members)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in members.items():
            z.writestr(name, data)
    out.write_bytes(buf.getvalue())
    return out


class Cosigned(NamedTuple):
    bundle: Path
    vkey: Path
    root: Path
    wkeys: list[str]


def export_cosigned(c: Any, notary_dir: Path, tmp_path: Path) -> Cosigned:
    """Alice sends through a notary with two real witnesses; once her receipts carry
    both cosignatures she exports the bundle (the processes stopped after)."""
    real = NotaryProcess(notary_dir)
    witnesses = _witnesses(notary_dir, tmp_path, real)
    wkeys = [(w.directory / "witness.vkey").read_text().strip() for w in witnesses]
    vkey = tmp_path / "trusted.vkey"
    vkey.write_text(real.vkey + "\n")
    try:
        for w in witnesses:
            w.start()
        real.start()
        token = real.token_for(c.alice.email)
        c.settings(c.alice, notary_url=real.url, notary_token=token)
        sent = send_deal(c, tmp_path, "--no-encrypt")
        receipts = _wait_receipts_cosigned(real.url, token, sent["sha256"])
        note = receipts[0]["proof"].split("\n\n", 1)[1].encode()
        first = parse_note(note).signatures[0]
        assert first.name == real.vkey.split("+")[0]  # the notary's own signature first
        # one witness down, the log grows: receipts stay proved against the cosigned
        # checkpoint (re-proved, older than the latest), and verify under the notary key
        cosigned_size = Receipt.from_json(receipts[0]).checkpoint().size
        witnesses[1].kill()
        _grow(real, token, "later", 3)
        again = _wait_receipts_cosigned(real.url, token, sent["sha256"])
        latest = parse_note(httpx.get(real.url + "/checkpoint", timeout=10).content)
        assert int(latest.text.split("\n")[1]) == cosigned_size + 3
        for obj in again:
            r = Receipt.from_json(obj)
            assert r.checkpoint().size == cosigned_size
            r.verify(Verifier.from_vkey(real.vkey))
        bundle = tmp_path / "cosigned.zip"
        p = run(c.alice, "proof", "export", sent["sha256"], "-o", str(bundle))
        assert p.returncode == 0, p.stderr
    finally:
        real.stop()
        for w in witnesses:
            w.stop()
    return Cosigned(bundle, vkey, notary_dir / "tsa" / "root-ca.pem", wkeys)


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
    p = _verify(c, bundle, vkey, root, "--json")
    assert p.returncode == 0, p.stderr
    report = json.loads(p.stdout)
    (row,) = [ch for ch in report["checks"] if ch["item"] == "cosignatures"]
    assert row["status"] == "skipped" and not row["applies"]
    assert "cosignatures" not in report.get("unchecked", [])
    assert report["verdict"] == "valid"

    # both witnesses -> valid; the JSON report carries the check
    wargs = ["--witness", wkeys[0], "--witness", wkeys[1]]
    p = _verify(c, bundle, vkey, root, *wargs, "--json")
    assert p.returncode == 0, p.stderr
    checks = [ch for ch in json.loads(p.stdout)["checks"] if ch["item"] == "cosignatures"]
    assert len(checks) == 1 and checks[0]["status"] == "ok"
    assert "witness.test/w1, witness.test/w2" in checks[0]["detail"]
    # --witnesses FILE and quorum 1 of a right and a wrong key: valid
    wrong = Cosigner("witness.test/w2", b"\x07" * 32).verifier.vkey()
    listed = tmp_path / "witnesses.txt"
    listed.write_text(f"# ours\n{wkeys[0]}\n{wrong}\n")
    p = _verify(c, bundle, vkey, root, "--witnesses", str(listed), "--quorum", "1")
    assert p.returncode == 0, p.stderr
    # quorum 2 with one witness's key wrong -> fails naming the file and the witness
    p = _verify(c, bundle, vkey, root, "--witnesses", str(listed), "--quorum", "2")
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

    bad = _rewrite(bundle, tmp_path / "bad.zip", flip)
    p = _verify(c, bad, vkey, root, *wargs)
    assert p.returncode == 3
    err = one_line_error(p)
    assert cos_name in err and "does not verify" in err

    # the notary's signature moved after the cosignatures -> refused even without --witness
    def reorder(members: dict[str, bytes]) -> dict[str, bytes]:
        text, sigs = members[cos_name].decode().split("\n\n", 1)
        lines = sigs.splitlines(True)
        members[cos_name] = (text + "\n\n" + "".join(lines[1:] + lines[:1])).encode()
        return members

    p = _verify(c, _rewrite(bundle, tmp_path / "order.zip", reorder), vkey, root)
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
