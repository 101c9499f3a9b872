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
from tests.fixtures.bundle_world import World
from tests.web.browser import same_checks, verify_in_page
from tests.web.bundle_cases import DOCUMENTS, Case, all_tampered

CERTMAIL = [sys.executable, "-m", "certmail.cli.main"]


#: The check the page reports "not checked here" where the CLI regenerates and compares.
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


def test_good_bundle_same_checks_as_the_cli(
    world: World, browser: Any, page: Path, tmp_path: Path
) -> None:
    bundle = tmp_path / "good.certmail-proof.zip"
    bundle.write_bytes(world.bundle)
    vkey = _vkey_file(world, tmp_path)
    cli = subprocess.run(
        [
            *CERTMAIL,
            "proof",
            "verify",
            str(bundle),
            "--json",
            "--vkey",
            str(vkey),
            "--tsa-root",
            str(world.root_pem),
        ],
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
    same_checks(py, trusted)
    assert trusted["verdict"] == "valid, but 1 check could not run"  # documents
    assert all(
        c["status"] == "ok" for c in trusted["checks"] if c["applies"] and c["item"] != "documents"
    )
    same_checks(_cli_verify(bundle, world, trusted=False), untrusted)
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
                same_checks(py, js)
            continue
        if case.documents_only:
            # the one difference, by design: the page does not regenerate the documents
            assert js["valid"] and "could not run" in js["verdict"], (case.name, js)
            assert {c["item"]: c["status"] for c in js["checks"]}["documents"] == "skipped"
            assert any(d in py["error"] for d in DOCUMENTS) or "keys/" in py["error"], py
            continue
        if js["valid"] or _key(js["error"]) != _key(py["error"]):
            mismatches.append((case.name, py["error"], js["error"]))
        exact += js["error"] == py["error"]
    assert not mismatches, "\n".join(map(str, mismatches))
    print(f"{len(cases)} tampered bundles; {exact} failure messages word for word")


# ------------------------------------------------------------------- the page itself


def _drop(driver: Any, path: Path, timeout: float = 60) -> Any:
    """Pick ``path`` in the page's file input (what a drop does) and wait for the verdict."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, timeout).until(
        lambda d: d.execute_script("return document.body.dataset.ready") == "true"
    )
    driver.execute_script("document.getElementById('result').replaceChildren()")
    driver.find_element(By.ID, "bundle").send_keys(str(path))
    return WebDriverWait(driver, timeout).until(ec.presence_of_element_located((By.ID, "verdict")))


def _rows(driver: Any) -> dict[str, str]:
    from selenium.webdriver.common.by import By

    return {
        r.get_attribute("data-item"): r.get_attribute("data-status")
        for r in driver.find_elements(By.CSS_SELECTOR, "#checks tbody tr")
    }


def _csp_errors(driver: Any) -> list[str]:
    return [
        e["message"]
        for e in driver.get_log("browser")
        if "Content Security Policy" in e["message"] or "Refused" in e["message"]
    ]


def _tampered(world: World, tmp_path: Path) -> Path:
    from certmail.bundle import read_members, write_members

    files = read_members(world.bundle)
    name = "evidence/02-SubmissionAcceptance.json"
    data = bytearray(files[name])
    data[len(data) // 2] ^= 0x04
    path = tmp_path / "tampered.certmail-proof.zip"
    path.write_bytes(write_members({**files, name: bytes(data)}))
    return path


def test_served_page_headers(world: World) -> None:
    r = httpx.get(world.notary.url + "/verify")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    csp = r.headers["content-security-policy"]
    for directive in (
        "default-src 'none'",
        "script-src 'self'",
        "connect-src 'none'",
        "frame-ancestors 'none'",
        "form-action 'none'",
    ):
        assert directive in csp
    assert r.headers["x-frame-options"] == "DENY"
    assert r.headers["x-content-type-options"] == "nosniff"
    assert world.notary.vkey in r.text  # configured with this notary's key
    assert "http://" not in r.text and "https://" not in r.text  # nothing from elsewhere
    js = httpx.get(world.notary.url + "/web/static/verify.js")
    assert js.status_code == 200 and js.headers["content-type"].startswith("text/javascript")
    assert "content-security-policy" in js.headers
    css = httpx.get(world.notary.url + "/web/static/verify.css")
    assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")
    missing = httpx.get(world.notary.url + "/web/static/../notary.toml")
    assert missing.status_code == 404
    nope = httpx.get(world.notary.url + "/web/static/nope.js")
    assert nope.status_code == 404 and nope.json()["error"] == "not_found"


def test_drop_good_then_tampered_bundle_on_the_served_page(
    world: World, browser: Any, tmp_path: Path
) -> None:
    from selenium.webdriver.common.by import By

    good = tmp_path / "good.certmail-proof.zip"
    good.write_bytes(world.bundle)
    browser.get(world.notary.url + "/verify")
    verdict = _drop(browser, good)
    assert verdict.get_attribute("data-valid") == "true", verdict.text
    assert "valid, but 1 check could not run" in verdict.text
    rows = _rows(browser)
    assert rows.pop("documents") == "skipped" and rows.pop("sender signature") == "skipped"
    assert set(rows.values()) == {"ok"} and "01 time-stamp" in rows and "consistency" in rows
    key_id = world.notary.vkey.split("+")[1]
    assert key_id in browser.find_element(By.ID, "vkey-fpr").text
    assert "SHA-256" in browser.find_element(By.ID, "root-fpr").text
    assert not browser.find_elements(By.CSS_SELECTOR, ".warning.loud")
    timeline = browser.find_element(By.CSS_SELECTOR, "ol.timeline").text
    assert timeline.count("SubmissionAcceptance") == 2 and "time-stamp" in timeline
    resources = browser.execute_script(
        "return performance.getEntriesByType('resource').map(e => e.name)"
    )
    assert resources and all(u.startswith(world.notary.url + "/") for u in resources)

    verdict = _drop(browser, _tampered(world, tmp_path))
    assert verdict.get_attribute("data-valid") == "false"
    error = browser.find_element(By.ID, "error").text
    assert "evidence/02-SubmissionAcceptance.json" in error
    assert list(_rows(browser).values())[-1] == "failed"
    not_run = browser.find_element(By.ID, "not-run").text  # and says what did not run
    assert "consistency" in not_run and "documents" in not_run
    assert "01 SubmissionAcceptance" not in not_run

    # without trust roots: valid, and said loudly
    browser.execute_script(
        "for (const id of ['vkey', 'tsa-root']) document.getElementById(id).value = ''"
    )
    _drop(browser, good)
    loud = [e.text for e in browser.find_elements(By.CSS_SELECTOR, ".warning.loud")]
    assert len(loud) == 2 and "no trusted verifier key" in loud[0]
    assert "bundle's own keys" in browser.find_element(By.ID, "verdict").text
    assert _csp_errors(browser) == []


def test_self_contained_page_with_trust_roots(world: World, browser: Any, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By

    out = tmp_path / "verify.html"
    vkey = _vkey_file(world, tmp_path)
    p = subprocess.run(
        [
            *CERTMAIL,
            *("proof", "verifier-page", "-o", str(out), "--json"),
            *("--vkey", str(vkey), "--tsa-root", str(world.root_pem)),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["vkey"] == world.notary.vkey
    text = out.read_text()
    assert '<meta http-equiv="Content-Security-Policy"' in text and "'sha256-" in text
    assert 'src="' not in text and 'href="' not in text  # everything inline
    again = subprocess.run(
        [*CERTMAIL, "proof", "verifier-page", "-o", str(out)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (
        again.returncode != 0 and "certmail: error:" in again.stderr and "--force" in again.stderr
    )
    good = tmp_path / "good.certmail-proof.zip"
    good.write_bytes(world.bundle)
    browser.get(out.as_uri())
    verdict = _drop(browser, good)
    assert verdict.get_attribute("data-valid") == "true"
    assert browser.find_element(By.ID, "vkey").get_attribute("value") == world.notary.vkey
    assert not browser.find_elements(By.CSS_SELECTOR, ".warning.loud")
    assert _csp_errors(browser) == []


def test_keyboard_and_labels(world: World, browser: Any, tmp_path: Path) -> None:
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.keys import Keys

    browser.get(world.notary.url + "/verify")
    _drop(browser, _tampered(world, tmp_path))
    # the verdict takes the focus, so a screen reader reads it out
    assert browser.execute_script("return document.activeElement.id") == "verdict"
    browser.execute_script("document.activeElement.blur(); window.scrollTo(0, 0)")
    seen = []
    for _ in range(4):
        ActionChains(browser).send_keys(Keys.TAB).perform()
        seen.append(browser.execute_script("return document.activeElement.id"))
    assert seen == ["vkey", "tsa-root", "pgp-keys", "bundle"]
    unlabelled = browser.execute_script(
        "return [...document.querySelectorAll('input, textarea')]"
        ".filter(e => !document.querySelector(`label[for='${e.id}']`)).map(e => e.id)"
    )
    assert unlabelled == []
    assert (
        browser.execute_script("return document.getElementById('result').getAttribute('aria-live')")
        == "polite"
    )


@pytest.mark.parametrize("width", [360, 1280])
def test_screenshots_fit_the_width(world: World, browser: Any, tmp_path: Path, width: int) -> None:
    from tests.fixtures.bundle_world import png_grey

    browser.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": width, "height": 1000, "deviceScaleFactor": 1, "mobile": width < 500},
    )
    try:
        good = tmp_path / "good.certmail-proof.zip"
        good.write_bytes(world.bundle)
        browser.get(world.notary.url + "/verify")
        _drop(browser, good)
        layout = browser.execute_script(
            """
            const w = document.documentElement.clientWidth;
            const wide = [...document.querySelectorAll('main *')]
              .filter(e => e.getBoundingClientRect().right > w + 1 && !e.closest('.scroll'))
              .map(e => e.tagName + '#' + e.id + '.' + e.className);
            return {w, scroll: document.documentElement.scrollWidth, wide,
                    font: parseFloat(getComputedStyle(document.body).fontSize),
                    verdict: document.getElementById('verdict').getBoundingClientRect().width,
                    table: document.getElementById('checks').getBoundingClientRect().right};
            """
        )
        assert layout["w"] == width
        assert layout["scroll"] <= width, layout  # no horizontal overflow
        assert layout["wide"] == [], layout
        assert layout["table"] <= width + 1, layout  # the checks fit too, not only scroll
        assert layout["font"] >= 16 and layout["verdict"] > width * 0.7
        png = tmp_path / f"verify-{width}.png"
        png.write_bytes(browser.get_screenshot_as_png())
        grey = png_grey(png.read_bytes())
        assert min(grey) < 64 and max(grey) > 200  # dark text on a light page
        assert sum(1 for p in grey if p < 128) > 2_000  # not blank
        Path(f"/tmp/certmail-web-verify-{width}.png").write_bytes(png.read_bytes())
    finally:
        browser.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})


def test_encrypted_acknowledged_bundle_from_the_real_flow(
    correspondents: Any, notary_server: Any, browser: Any, page: Path, tmp_path: Path
) -> None:
    """Alice sends encrypted to Bob, Bob acknowledges with `certmail open --ack`, Alice
    exports: the page's checks are the CLI's, the OpenPGP ones "not checked here"."""
    from tests.fixtures.cli import run
    from tests.fixtures.proof import acked_bundle

    c = correspondents
    _, bundle, vkey = acked_bundle(c, notary_server, tmp_path)
    empty = tmp_path / "empty-gnupghome"
    empty.mkdir(mode=0o700)
    reports = {}
    for label, home in (("no keyring", empty), ("alice", None)):
        extra = ("--gnupghome", str(home)) if home else ()
        p = run(
            c.alice,
            *("proof", "verify", str(bundle), "--vkey", str(vkey), "--trust-bundle-root"),
            *("--json", "--allow-partial", *extra),
        )
        assert p.returncode == 0, p.stderr
        reports[label] = json.loads(p.stdout)
    browser.get(page.as_uri())
    (js,) = verify_in_page(browser, [(bundle.read_bytes(), True)], notary_server.vkey, "")
    assert js["valid"], js
    assert [e["event"] for e in js["events"]] == ["SubmissionAcceptance", "ContentHandover"]
    for py in reports.values():
        same_checks(py, js)
    by_item = {ch["item"]: ch for ch in js["checks"]}
    assert by_item["sender signature"]["detail"].startswith("encrypted: signature inside")
    ack = by_item["02 acknowledgement"]
    assert ack["status"] == "skipped" and "not checked here" in ack["detail"]
    bob_fpr = c.bob.keyring.key_for(c.bob.email).fingerprint
    assert bob_fpr in ack["detail"]
    assert {ch["item"]: ch for ch in reports["alice"]["checks"]}["02 acknowledgement"][
        "status"
    ] == "ok"


def test_too_large_a_file_is_refused_before_it_is_read(
    world: World, browser: Any, tmp_path: Path
) -> None:
    """A 700 MB file (sparse on disk) over the 576 MiB bundle cap: a clear message at once, and the
    tab still answers."""
    from selenium.webdriver.common.by import By

    big = tmp_path / "huge.certmail-proof.zip"
    with big.open("wb") as f:
        f.truncate(700 * 10**6)
    browser.get(world.notary.url + "/verify")
    verdict = _drop(browser, big, timeout=30)
    assert verdict.get_attribute("data-valid") == "false"
    assert "the bundle is too large" in browser.find_element(By.ID, "error").text
    assert browser.execute_script("return 1 + 1") == 2


VECTORS = Path(__file__).resolve().parents[1] / "vectors"

RUN_VECTORS = """
const [cases, done] = arguments;
const b64 = (s) => Uint8Array.from(atob(s || ""), (c) => c.charCodeAt(0));
const { verifyInclusion, verifyConsistency } = globalThis.certmailVerifier.merkle;
(async () => {
  const out = [];
  for (const [kind, c] of cases) {
    try {
      if (kind === "inclusion") {
        await verifyInclusion(b64(c.leafHash), BigInt(c.leafIdx), BigInt(c.treeSize),
                              (c.proof || []).map(b64), b64(c.root));
      } else {
        await verifyConsistency(BigInt(c.size1), BigInt(c.size2), (c.proof || []).map(b64),
                                b64(c.root1), b64(c.root2));
      }
      out.push(false);
    } catch (e) {
      out.push(e.name === "VerificationError" ? true : "page error: " + e.message);
    }
  }
  done(out);
})();
"""


def test_official_rfc9162_vectors_in_the_page(browser: Any, page: Path) -> None:
    """The page's Merkle checks over every official vector, as tests/notary/test_merkle.py
    runs notary/merkle/ over them."""
    files = sorted((VECTORS / "rfc9162-merkle").rglob("*.json"))
    assert len(files) == 196
    root = VECTORS / "rfc9162-merkle"
    cases = [[f.relative_to(root).parts[0], json.loads(f.read_text())] for f in files]
    browser.get(page.as_uri())
    got = browser.execute_async_script(RUN_VECTORS, cases)
    want = [c["wantErr"] for _, c in cases]
    wrong = [str(f) for f, g, w in zip(files, got, want, strict=True) if g is not w]
    assert wrong == []


def test_golden_bundle_same_checks_as_the_cli(browser: Any, page: Path, tmp_path: Path) -> None:
    """tests/vectors/certmail-proof (made by released code): valid in both, check for check."""
    golden = VECTORS / "certmail-proof"
    bundle = golden / "typical-v1.certmail-proof.zip"
    cli = subprocess.run(
        [
            *CERTMAIL,
            *("proof", "verify", str(bundle), "--json"),
            *("--vkey", str(golden / "notary.vkey"), "--tsa-root", str(golden / "tsa-root.pem")),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={"CERTMAIL_HOME": str(tmp_path / "home"), "PATH": "/usr/bin:/bin"},
    )
    assert cli.returncode == 0, cli.stderr
    browser.get(page.as_uri())
    (js,) = verify_in_page(
        browser,
        [(bundle.read_bytes(), True)],
        (golden / "notary.vkey").read_text().strip(),
        (golden / "tsa-root.pem").read_text(),
    )
    assert js["valid"], js
    same_checks(json.loads(cli.stdout), js)


VERIFY_WITH_KEYS = """
const [b64, vkey, keys, done] = arguments;
const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
globalThis.certmailVerifier.verify(bytes, vkey, null, keys)
  .then(done, (e) => done({error: e.message}));
"""


def test_signed_acknowledged_bundle_with_openpgp_keys(
    correspondents: Any, notary_server: Any, browser: Any, page: Path, tmp_path: Path
) -> None:
    """A signed-only message, acknowledged by Bob: with Alice's and Bob's public keys pasted,
    the page checks the sender's signature and the acknowledgement (OpenPGP.js) and says
    what `certmail proof verify` says with Alice's keyring; a key that is not Bob's is
    refused by both."""
    import base64

    from certmail.bundle import read_members, write_members
    from tests.fixtures.cli import run, use_notary
    from tests.fixtures.proof import send_deal

    c = correspondents
    use_notary(c, c.alice, notary_server)
    sent = send_deal(c, tmp_path, "--no-encrypt")
    eml = tmp_path / "delivered.eml"
    eml.write_bytes(c.sink.messages[-1].data)
    p = run(c.bob, "open", str(eml), "--ack", "--json")
    assert p.returncode == 0, p.stderr
    bundle = tmp_path / "signed.certmail-proof.zip"
    p = run(c.alice, "proof", "export", sent["sha256"], "-o", str(bundle))
    assert p.returncode == 0, p.stderr
    vkey = tmp_path / "trusted.vkey"
    vkey.write_text(notary_server.vkey + "\n")
    p = run(
        c.alice,
        *("proof", "verify", str(bundle), "--vkey", str(vkey), "--trust-bundle-root"),
        *("--json", "--allow-partial"),
    )
    assert p.returncode == 0, p.stderr
    py = json.loads(p.stdout)
    keys = c.alice.keyring.export_public(c.alice.email) + c.bob.keyring.export_public(c.bob.email)
    browser.get(page.as_uri())

    def page_verify(data: bytes, armored: str | None) -> dict[str, Any]:
        b64 = base64.b64encode(data).decode()
        out: dict[str, Any] = browser.execute_async_script(
            VERIFY_WITH_KEYS, b64, notary_server.vkey, armored
        )
        return out

    js = page_verify(bundle.read_bytes(), keys)
    assert js["valid"], js
    py_items = {ch["item"]: ch for ch in py["checks"]}
    js_items = {ch["item"]: ch for ch in js["checks"]}
    for item in ("sender signature", "02 acknowledgement"):
        assert py_items[item]["status"] == js_items[item]["status"] == "ok", (
            py_items[item],
            js_items[item],
        )
        assert js_items[item]["detail"] == py_items[item]["detail"]
    same_checks(py, js)
    # without keys: both OpenPGP checks "not checked here"
    bare = page_verify(bundle.read_bytes(), None)
    assert {ch["item"]: ch["status"] for ch in bare["checks"]}["sender signature"] == "skipped"
    # only Alice's key: Bob's acknowledgement cannot be judged, the sender's signature can
    only_alice = page_verify(bundle.read_bytes(), c.alice.keyring.export_public(c.alice.email))
    statuses = {ch["item"]: ch["status"] for ch in only_alice["checks"]}
    assert statuses["sender signature"] == "ok" and statuses["02 acknowledgement"] == "skipped"
    # the signed part changed by one byte: both refuse, naming the signature
    files = read_members(bundle.read_bytes())
    msg = bytearray(files["message.eml"])
    at = bytes(msg).index(b"I agree")
    msg[at] ^= 0x20
    forged = tmp_path / "forged.certmail-proof.zip"
    forged.write_bytes(write_members({**files, "message.eml": bytes(msg)}))
    js_bad = page_verify(forged.read_bytes(), keys)
    assert not js_bad["valid"]
    # (the statements are about the original SHA-256: the first check to fail is the
    # statement's, in the page and in the CLI alike)
    p = run(c.alice, "proof", "verify", str(forged), "--vkey", str(vkey), "--trust-bundle-root")
    assert p.returncode == 3
    cli_error = next(ln for ln in p.stderr.splitlines() if ln.startswith("certmail: error: "))
    assert _key(js_bad["error"]) == _key(cli_error.removeprefix("certmail: error: "))


def test_acknowledgement_by_another_key_is_refused_as_the_cli_refuses_it(
    correspondents: Any,
    notary_server: Any,
    browser: Any,
    page: Path,
    tmp_path: Path,
    gnupghome_factory: Any,
) -> None:
    """Mallory's key carries Bob's user id and signed an acknowledgement naming Bob: with
    Bob's real key given, page and CLI refuse it in the same words; given both keys, the
    page cannot tell them apart and does not say ok."""
    import base64

    from keys.gpg import Keyring
    from tests.fixtures.cli import run
    from tests.fixtures.proof import acked_bundle

    c = correspondents
    mallory = Keyring(gnupghome_factory())
    mallory_fpr = mallory.generate_identity(c.bob.email, c.bob.name)
    _, bundle, vkey = acked_bundle(
        c, notary_server, tmp_path, signer=mallory, export_args=("--keep-all-acks",)
    )
    p = run(c.alice, "proof", "verify", str(bundle), "--vkey", str(vkey), "--trust-bundle-root")
    assert p.returncode == 3
    cli_error = next(ln for ln in p.stderr.splitlines() if ln.startswith("certmail: error: "))
    browser.get(page.as_uri())
    alice_bob = c.alice.keyring.export_public(c.alice.email) + c.bob.keyring.export_public(
        c.bob.email
    )
    b64 = base64.b64encode(bundle.read_bytes()).decode()
    js = browser.execute_async_script(VERIFY_WITH_KEYS, b64, notary_server.vkey, alice_bob)
    assert not js["valid"] and "not a recipient's key" in js["error"] and mallory_fpr in js["error"]
    assert js["error"] == cli_error.removeprefix("certmail: error: ")
    both = alice_bob + mallory.export_public(mallory_fpr)
    js = browser.execute_async_script(VERIFY_WITH_KEYS, b64, notary_server.vkey, both)
    ack = {ch["item"]: ch for ch in js["checks"]}["02 acknowledgement"]
    assert ack["status"] == "skipped" and "several keys" in ack["detail"]
