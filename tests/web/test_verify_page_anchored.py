"""The in-browser verifier on format 4 bundles (outside time-stamps over checkpoints,
issue 14) and on renewed ones: the v4 golden bundles valid as ``certmail proof verify``
finds them, check for check, the tokens checked against the bundle's own
anchor-roots.pem and the trusted-root check "not checked here"; a flipped token byte
refused naming the file; a renewed bundle valid with its renewals "not checked here"."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from certmail.bundle import read_members, write_members
from certmail.bundle.layout import ANCHOR_TOKEN
from tests.fixtures.cli import clean_env, cli
from tests.fixtures.openssl_tsa import OpensslTsa
from tests.web.browser import same_checks, verify_in_page

V4 = Path(__file__).resolve().parents[1] / "vectors" / "proof-bundle" / "v4"
NOT_HERE = ("outside time-stamps", "renewals")


def _cli_report(bundle: Path, tmp_path: Path) -> dict[str, Any]:
    pinned = ["--vkey", str(V4 / "notary.vkey"), "--tsa-root", str(V4 / "tsa-root.pem")]
    p = cli(
        "proof",
        "verify",
        str(bundle),
        *pinned,
        "--allow-partial",
        "--json",
        env=clean_env(tmp_path),
    )
    assert p.returncode == 0, p.stderr
    report: dict[str, Any] = json.loads(p.stdout)
    return report


def _without(report: dict[str, Any]) -> dict[str, Any]:
    return dict(
        report,
        checks=[
            c
            for c in report["checks"]
            if c["item"] not in NOT_HERE and not c["item"].startswith("renewal ")
        ],
    )


def test_anchored_and_renewed_bundles_in_the_page(
    tmp_path: Path,
    browser: Any,
    page: Path,
) -> None:
    bundle = V4 / "signed-ack.certmail-proof.zip"
    files = read_members(bundle)
    name = sorted(n for n in files if ANCHOR_TOKEN.fullmatch(n))[0]
    data = bytearray(files[name])
    data[len(data) // 2] ^= 0x01
    bad = write_members({**files, name: bytes(data)})
    renewed = tmp_path / "renewed.zip"
    shutil.copy(bundle, renewed)
    tsa = OpensslTsa(tmp_path / "tsa").start()
    try:
        args = ["proof", "renew", str(renewed), "--tsa", tsa.url, "--root", str(tsa.root)]
        p = cli(*args, env=clean_env(tmp_path))
        assert p.returncode == 0, p.stderr
    finally:
        tsa.stop()
    browser.get(page.as_uri())
    js, js_bad, js_renewed = verify_in_page(
        browser,
        [(bundle.read_bytes(), True), (bad, True), (renewed.read_bytes(), True)],
        (V4 / "notary.vkey").read_text().strip(),
        (V4 / "tsa-root.pem").read_text(),
    )
    assert js["valid"], js["error"]
    rows = {ch["item"]: ch for ch in js["checks"]}
    assert rows["outside time-stamps"]["status"] == "skipped"
    assert rows["outside time-stamps"]["detail"].startswith("not checked here")
    assert not rows["outside time-stamps"]["applies"]
    same_checks(_without(_cli_report(bundle, tmp_path)), _without(js))
    assert not js_bad["valid"] and name in js_bad["error"], js_bad
    assert js_renewed["valid"], js_renewed
    rows = {ch["item"]: ch for ch in js_renewed["checks"]}
    assert rows["renewals"]["status"] == "skipped" and not rows["renewals"]["applies"]
    same_checks(_without(_cli_report(renewed, tmp_path)), _without(js_renewed))
