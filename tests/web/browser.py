"""Debian's Chromium, headless, driven through /usr/bin/chromedriver with selenium (never a
downloaded browser): the ``browser`` fixture of the web page tests."""

from __future__ import annotations

import base64
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"


def start_browser(profile: Path, width: int = 1280, height: int = 900) -> Any:
    """A headless Chromium with a fresh profile, no background networking."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    assert shutil.which(CHROMIUM) and shutil.which(CHROMEDRIVER), (
        "install Debian's chromium and chromium-driver (scripts/bootstrap.sh)"
    )
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--hide-scrollbars",
        f"--user-data-dir={profile}",
        f"--window-size={width},{height}",
    ):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    driver.set_script_timeout(120)
    driver.set_page_load_timeout(60)
    return driver


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    driver = start_browser(tmp_path_factory.mktemp("chromium"))
    try:
        yield driver
    finally:
        driver.quit()


VERIFY_MANY = """
const [items, vkey, root, done] = arguments;
(async () => {
  const out = [];
  for (const [b64, trusted] of items) {
    const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
    try {
      const r = await globalThis.certmailVerifier.verify(
        bytes, trusted ? vkey : null, trusted ? root : null);
      out.push({valid: r.valid, error: r.error, failed: r.failed, verdict: r.verdict,
                checks: r.checks, warnings: r.warnings, events: r.events});
    } catch (e) {
      out.push({valid: false, error: "page error: " + e.message, failed: "page", checks: []});
    }
  }
  done(out);
})();
"""


def verify_in_page(
    driver: Any, bundles: list[tuple[bytes, bool]], vkey: str, root_pem: str
) -> list[dict[str, Any]]:
    """certmailVerifier.verify over each (bundle, trusted) in the page loaded in ``driver``."""
    out: list[dict[str, Any]] = []
    for i in range(0, len(bundles), 40):
        batch = [[base64.b64encode(b).decode(), t] for b, t in bundles[i : i + 40]]
        out += driver.execute_async_script(VERIFY_MANY, batch, vkey, root_pem)
    return out


#: What the page cannot check that `certmail proof verify` does.
NOT_IN_BROWSER = {"documents"}


def _openpgp(item: str) -> bool:
    return item == "sender signature" or item.endswith(" acknowledgement")


def same_checks(py: dict[str, Any], js: dict[str, Any]) -> None:
    """Item for item, status for status, detail for detail, but for what the browser
    cannot check (named in NOT_IN_BROWSER, and OpenPGP checks that ran in neither)."""
    assert [c["item"] for c in js["checks"]] == [c["item"] for c in py["checks"]]
    for p, j in zip(py["checks"], js["checks"], strict=True):
        if p["item"] in NOT_IN_BROWSER:
            assert j["status"] == "skipped" and j["detail"].startswith("not checked here")
            continue
        if _openpgp(p["item"]) and j["status"] == "skipped" and p["status"] != "skipped":
            # the CLI had keys (a keyring, or a format 2 bundle's own) the page was not given
            assert j["detail"].startswith("not checked here"), (p, j)
            continue
        assert j["status"] == p["status"], (p, j)
        assert j["applies"] == p["applies"], (p, j)
        if p["status"] != "skipped":
            assert j["detail"] == p["detail"], (p, j)
    assert js["warnings"] == py["warnings"]
    for p, j in zip(py["events"], js["events"], strict=True):
        for k in ("number", "event", "time", "recipient", "index", "checkpoint_size", "timestamp"):
            assert j[k] == p[k], (k, p, j)
