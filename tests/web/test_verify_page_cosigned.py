"""The in-browser verifier on a cosigned bundle (format 3, evidence/checkpoint-N.cosigned,
issue 14): valid as `certmail proof verify` without --witness finds it, check for check,
the cosignatures "not checked here"; a cosigned checkpoint by another key refused."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.fixtures.cosigned import export_cosigned, rewrite_bundle, verify_bundle
from tests.web.browser import same_checks, verify_in_page


def test_cosigned_bundle_in_the_page(
    correspondents: Any,
    notary_dir: Path,
    tmp_path: Path,
    browser: Any,
    page: Path,
) -> None:
    c = correspondents
    made = export_cosigned(c, notary_dir, tmp_path)
    p = verify_bundle(c, made.bundle, made.vkey, made.root, "--json")
    assert p.returncode == 0, p.stderr
    cli = json.loads(p.stdout)

    def drop_notary_sig(members: dict[str, bytes]) -> dict[str, bytes]:
        for name in [n for n in members if n.endswith(".cosigned")]:
            text, sigs = members[name].decode().split("\n\n", 1)
            members[name] = (text + "\n\n" + "".join(sigs.splitlines(True)[1:])).encode()
        return members

    bad = rewrite_bundle(made.bundle, tmp_path / "bad.zip", drop_notary_sig)
    browser.get(page.as_uri())
    js, js_bad = verify_in_page(
        browser,
        [(made.bundle.read_bytes(), True), (bad.read_bytes(), True)],
        made.vkey.read_text().strip(),
        made.root.read_text(),
    )
    assert js["valid"], js
    rows = {ch["item"]: ch for ch in js["checks"]}
    assert rows["cosignatures"]["status"] == "skipped"
    assert rows["cosignatures"]["detail"].startswith("not checked here")
    assert not rows["cosignatures"]["applies"]
    py = dict(cli, checks=[ch for ch in cli["checks"] if ch["item"] != "cosignatures"])
    same_checks(py, dict(js, checks=[ch for ch in js["checks"] if ch["item"] != "cosignatures"]))
    assert not js_bad["valid"] and ".cosigned" in js_bad["error"], js_bad
