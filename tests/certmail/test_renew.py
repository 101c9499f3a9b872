"""``certmail proof renew`` (issue 14 item 7): archive time-stamps over the whole bundle,
RFC 4998-style, from independent openssl TSAs (tests/fixtures/openssl_tsa.py); the chain
of renewals checked by ``proof verify``; a member changed after a renewal is named."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from certmail.bundle import read_members, write_members
from certmail.bundle.renew import chain_not_after, check_renewals, covered, tree_root
from keys.errors import VerificationError
from tests.fixtures.bundle_world import flip
from tests.fixtures.cli import clean_env, cli, one_line_error
from tests.fixtures.openssl_tsa import OpensslTsa

V2 = Path(__file__).resolve().parent.parent / "vectors" / "proof-bundle" / "v2"


@pytest.fixture(scope="module")
def tsas(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[OpensslTsa]]:
    base = tmp_path_factory.mktemp("tsas")
    out = [OpensslTsa(base / "a", name="Archive TSA A").start()]
    out.append(OpensslTsa(base / "b", name="Archive TSA B").start())
    yield out
    for t in out:
        t.stop()


def _verify(bundle: Path, tmp_path: Path, *extra: str) -> object:
    pinned = ["--vkey", str(V2 / "notary.vkey"), "--tsa-root", str(V2 / "tsa-root.pem")]
    args = ["proof", "verify", str(bundle), *pinned, "--allow-partial", *extra]
    return cli(*args, env=clean_env(tmp_path))


def _renew(bundle: Path, tsa: OpensslTsa, tmp_path: Path) -> object:
    args = ["proof", "renew", str(bundle), "--tsa", tsa.url, "--root", str(tsa.root)]
    return cli("--json", *args, env=clean_env(tmp_path))


@pytest.fixture(scope="module")
def renewed(tsas: list[OpensslTsa], tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("renewed")
    bundle = tmp / "b.zip"
    shutil.copy(V2 / "signed-ack.certmail-proof.zip", bundle)
    for n, tsa in enumerate(tsas, start=1):
        p = _renew(bundle, tsa, tmp)
        assert p.returncode == 0, p.stderr  # type: ignore[attr-defined]
        added = json.loads(p.stdout)["added"]  # type: ignore[attr-defined]
        assert added == [f"renewals/{n:02d}.{k}" for k in ("json", "pem", "tsr")]
    return bundle


def test_renew_twice_and_verify(renewed: Path, tmp_path: Path) -> None:
    p = _verify(renewed, tmp_path, "--json")
    assert p.returncode == 0, p.stderr  # type: ignore[attr-defined]
    report = json.loads(p.stdout)  # type: ignore[attr-defined]
    checks = {c["item"]: c for c in report["checks"]}
    assert checks["renewal 01"]["status"] == "ok" and checks["renewal 02"]["status"] == "ok"
    assert report["verdict"] == "valid" and report["format"] == 2  # the format is unchanged
    files = read_members(renewed)
    # renewal 02 covers the bundle and all of renewal 01; 01 covers the bundle only
    names2 = [n for n, _ in covered(files, 2)]
    assert names2[-3:] == ["renewals/01.json", "renewals/01.pem", "renewals/01.tsr"]
    assert not [n for n, _ in covered(files, 1) if n.startswith("renewals/")]
    manifest = json.loads(files["renewals/02.json"])
    assert manifest["root"] == tree_root(covered(files, 2)).hex()
    # stock openssl checks a renewal token over the tree root it states
    work = tmp_path / "unzipped"
    work.mkdir()
    for n in ("renewals/02.tsr", "renewals/02.pem"):
        (work / Path(n).name).write_bytes(files[n])
    r = subprocess.run(
        [
            *("openssl", "ts", "-verify", "-digest", manifest["root"]),
            *("-in", "02.tsr", "-token_in", "-CAfile", "02.pem"),
        ],
        cwd=work,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0 and "Verification: OK" in r.stdout, r.stdout + r.stderr


@pytest.mark.parametrize(
    ("name", "says"),
    [
        ("VERIFY.txt", "VERIFY.txt changed after renewal 01"),
        ("message.eml", "message.eml changed after renewal 01"),
        ("renewals/01.tsr", "renewals/01.tsr changed after renewal 02"),
        ("renewals/02.tsr", "renewals/02.tsr"),
    ],
)
def test_a_member_changed_after_renewal_fails_naming_it(
    renewed: Path, tmp_path: Path, name: str, says: str
) -> None:
    files = read_members(renewed)
    bad = tmp_path / "bad.zip"
    bad.write_bytes(flip(files, name, len(files[name]) // 2, 0x01))
    p = _verify(bad, tmp_path)
    assert p.returncode == 3  # type: ignore[attr-defined]
    assert says in one_line_error(p)


def test_a_member_added_or_removed_after_renewal_fails(renewed: Path, tmp_path: Path) -> None:
    files = read_members(renewed)
    less = {n: d for n, d in files.items() if n != "renewals/01.pem"}
    bad = tmp_path / "less.zip"
    bad.write_bytes(write_members(less))
    p = _verify(bad, tmp_path)
    assert p.returncode == 3 and "renewal 01 lacks renewals/01.pem" in one_line_error(p)  # type: ignore[attr-defined]


def test_expiry_is_judged_at_the_next_renewal(renewed: Path) -> None:
    files = read_members(renewed)
    evidence_end = chain_not_after(files["tsa-chain.pem"])
    checks, warnings = check_renewals(files, evidence_end)
    assert [c.item for c in checks] == ["renewal 01", "renewal 02"] and not warnings
    # the evidence's TSA certificates expired before renewal 01 was made: broken chain
    with pytest.raises(VerificationError, match="after the evidence's TSA certificates expired"):
        check_renewals(files, datetime.now(UTC) - timedelta(days=1))
    # the last renewal's certificates expired by now: valid, with a warning to renew again
    _, warnings = check_renewals(files, evidence_end, now=datetime.now(UTC) + timedelta(days=900))
    assert warnings and "renew the bundle" in warnings[0]


def test_renew_errors(tsas: list[OpensslTsa], tmp_path: Path) -> None:
    bundle = tmp_path / "b.zip"
    shutil.copy(V2 / "signed-ack.certmail-proof.zip", bundle)
    p = cli("proof", "renew", str(bundle), "--tsa", tsas[0].url, env=clean_env(tmp_path))
    assert p.returncode != 0 and "--tsa needs --root" in one_line_error(p)
    # a token from a TSA that is not the root given: refused, the bundle unchanged
    before = bundle.read_bytes()
    args = ["proof", "renew", str(bundle), "--tsa", tsas[0].url, "--root", str(tsas[1].root)]
    p = cli(*args, env=clean_env(tmp_path))
    assert p.returncode == 3 and "does not verify" in one_line_error(p)
    assert bundle.read_bytes() == before
    # a tampered bundle is not renewed
    files = read_members(bundle)
    bad = tmp_path / "bad.zip"
    bad.write_bytes(write_members({**files, "VERIFY.txt": files["VERIFY.txt"] + b"x"}))
    p = _renew(bad, tsas[0], tmp_path)
    assert p.returncode == 3 and "VERIFY.txt" in one_line_error(p)  # type: ignore[attr-defined]
