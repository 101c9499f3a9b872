"""The in-browser verifier on a bundle of format 5 (read receipts, mdns/NN.eml, issue 11):
valid as `certmail proof verify` finds it, check for check, the read receipts "not
checked here"; an mdns/ member in a bundle that says format 2 refused, as the CLI does."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from certmail.bundle.zipio import read_members, write_members
from tests.fixtures.mdn import export_with_mdns
from tests.fixtures.notary import NotaryProcess
from tests.fixtures.proof import verify_pinned
from tests.web.browser import same_checks, verify_in_page


def test_read_receipts_bundle_in_the_page(
    sent_and_mdn: tuple[Any, dict[str, Any], bytes],
    notary_server: NotaryProcess,
    tmp_path: Path,
    browser: Any,
    page: Path,
) -> None:
    c, sent, signed_mdn = sent_and_mdn
    bundle = export_with_mdns(c, sent, signed_mdn, tmp_path)
    p = verify_pinned(c.alice, notary_server, bundle, tmp_path, "--allow-partial", "--json")
    assert p.returncode == 0, p.stderr
    cli = json.loads(p.stdout)
    files = read_members(bundle.read_bytes())
    older = write_members({**files, "bundle.json": b'{\n  "format": 2\n}\n'})
    browser.get(page.as_uri())
    js, js_older = verify_in_page(
        browser,
        [(bundle.read_bytes(), True), (older, True)],
        notary_server.vkey,
        (notary_server.directory / "tsa" / "root-ca.pem").read_text(),
    )
    assert js["valid"], js
    rows = {ch["item"]: ch for ch in js["checks"]}
    assert rows["read receipts"]["status"] == "skipped" and not rows["read receipts"]["applies"]
    assert rows["read receipts"]["detail"].startswith("not checked here")
    py = dict(cli, checks=[ch for ch in cli["checks"] if not ch["item"].startswith("read receipt")])
    same_checks(py, dict(js, checks=[ch for ch in js["checks"] if ch["item"] != "read receipts"]))
    assert not js_older["valid"] and "(read receipts: 5)" in js_older["error"], js_older
