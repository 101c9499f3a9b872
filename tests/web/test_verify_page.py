"""The in-browser proof verifier (notary/web, docs/web.md) against `certmail proof verify`,
check for check, in Debian's headless Chromium: the good bundle, every tampered bundle of
tests/certmail/test_bundle.py (tests/web/bundle_cases.py), the served page, the
self-contained page, screenshots at 360 px and 1280 px, the keyboard."""

from __future__ import annotations

import contextlib
import io
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from certmail.cli.proof_verify import VerifyArgs, run_verify
from keys.errors import Error
from tests.certmail.test_bundle import World, world  # noqa: F401  (the shared fixture)
from tests.web.browser import browser, verify_in_page  # noqa: F401
from tests.web.bundle_cases import DOCUMENTS, Case, all_tampered

CERTMAIL = [sys.executable, "-m", "certmail.cli.main"]
#: The check the page reports "not checked here" where the CLI regenerates and compares.
NOT_IN_BROWSER = {"documents"}


def _cli_verify(path: Path, world: World, trusted: bool) -> dict[str, Any]:
    """`certmail proof verify --json` (its body, run_verify, in this process): the JSON
    report, or {"error": the first line of certmail: error: ...}."""
    root = world.root_pem
    args = VerifyArgs(
        path,
        _vkey_file(world, path.parent) if trusted else None,
        root if trusted else None,
        None,
        True,
        path.parent / "no-home",
        trust_bundle_key=not trusted,
        trust_bundle_root=not trusted,
        allow_partial=True,
    )
    out = io.StringIO()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
            run_verify(args)
    except Error as e:
        return {"error": e.message.splitlines()[0]}
    return json.loads(out.getvalue())


def _vkey_file(world: World, where: Path) -> Path:
    p = where / "notary.vkey"
    if not p.exists():
        p.write_text(world.notary.vkey + "\n")
    return p


def _key(message: str) -> str:
    """What a failure names: the message up to its first ": " or " (" (the member and
    check; the words after it come from lower layers and may differ)."""
    return re.split(r": | \(", message, maxsplit=1)[0]


def _same_checks(py: dict[str, Any], js: dict[str, Any]) -> None:
    """Item for item, status for status, detail for detail, but for what the browser
    cannot check (named in NOT_IN_BROWSER, and OpenPGP checks that ran in neither)."""
    assert [c["item"] for c in js["checks"]] == [c["item"] for c in py["checks"]]
    for p, j in zip(py["checks"], js["checks"], strict=True):
        if p["item"] in NOT_IN_BROWSER:
            assert j["status"] == "skipped" and j["detail"].startswith("not checked here")
            continue
        assert j["status"] == p["status"], (p, j)
        if p["status"] != "skipped":
            assert j["detail"] == p["detail"], (p, j)
    assert js["warnings"] == py["warnings"]
    for p, j in zip(py["events"], js["events"], strict=True):
        for k in ("number", "event", "time", "recipient", "index", "checkpoint_size", "timestamp"):
            assert j[k] == p[k], (k, p, j)


@pytest.fixture(scope="module")
def page(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The self-contained page, as `certmail proof verifier-page` writes it."""
    path = tmp_path_factory.mktemp("page") / "verify.html"
    p = subprocess.run(
        [*CERTMAIL, "proof", "verifier-page", "-o", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert p.returncode == 0, p.stderr
    return path


def test_good_bundle_same_checks_as_the_cli(
    world: World, browser: Any, page: Path, tmp_path: Path
) -> None:
    bundle = tmp_path / "good.certmail-proof.zip"
    bundle.write_bytes(world.bundle)
    vkey = _vkey_file(world, tmp_path)
    cli = subprocess.run(
        [*CERTMAIL, "proof", "verify", str(bundle), "--json", "--vkey", str(vkey)]
        + ["--tsa-root", str(world.root_pem)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={"CERTMAIL_HOME": str(tmp_path / "home"), "PATH": "/usr/bin:/bin"},
    )
    assert cli.returncode == 0, cli.stderr
    py = json.loads(cli.stdout)
    browser.get(page.as_uri())
    root = world.root_pem.read_text()
    trusted, untrusted = verify_in_page(
        browser, [(world.bundle, True), (world.bundle, False)], world.notary.vkey, root
    )
    assert trusted["valid"] and py["valid"]
    _same_checks(py, trusted)
    assert trusted["verdict"] == "valid, but 1 check could not run"  # documents
    assert all(c["status"] == "ok" for c in trusted["checks"] if c["applies"] and c["item"] != "documents")
    _same_checks(_cli_verify(bundle, world, trusted=False), untrusted)
    assert len(untrusted["warnings"]) == 2


def test_every_tampered_bundle_fails_where_the_cli_fails(
    world: World, browser: Any, page: Path, tmp_path: Path
) -> None:
    cases: list[Case] = all_tampered(world)
    browser.get(page.as_uri())
    js_all = verify_in_page(
        browser,
        [(c.bundle, c.trusted) for c in cases],
        world.notary.vkey,
        world.root_pem.read_text(),
    )
    exact = 0
    mismatches = []
    path = tmp_path / "case.certmail-proof.zip"
    for case, js in zip(cases, js_all, strict=True):
        path.write_bytes(case.bundle)
        py = _cli_verify(path, world, case.trusted)
        if "error" not in py:  # valid for the CLI too (a flip the zip does not carry)
            if not js["valid"]:
                mismatches.append((case.name, "cli valid", js["error"]))
            else:
                _same_checks(py, js)
            continue
        if case.documents_only:
            # the one difference, by design: the page does not regenerate the documents
            assert js["valid"] and "could not run" in js["verdict"], (case.name, js)
            assert {c["item"]: c["status"] for c in js["checks"]}["documents"] == "skipped"
            assert any(d in py["error"] for d in DOCUMENTS), (case.name, py)
            continue
        if js["valid"] or _key(js["error"]) != _key(py["error"]):
            mismatches.append((case.name, py["error"], js["error"]))
        exact += js["error"] == py["error"]
    assert not mismatches, "\n".join(map(str, mismatches))
    print(f"{len(cases)} tampered bundles; {exact} failure messages word for word")
