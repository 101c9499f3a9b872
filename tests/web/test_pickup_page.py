"""The pickup page in Debian's headless Chromium (issue 12 item 2, docs/sealed.md "Pickup").

Carol (no key) opens the link Alice's ``send --pickup`` emailed, confirms her address,
acknowledges with the keyboard, reads the text and downloads the attachment byte for byte;
a wrong passphrase is refused and locks after five tries; an expired link, an incomplete
link and an unreachable notary each say so; screenshots at 360 and 1280 px are not blank.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.cli import json_of, run, use_notary
from tests.fixtures.notary import NotaryProcess
from tests.fixtures.pickup import BODY, CAROL, SECRET, send_pickup

WAIT = 60.0


def wait_for(check: Callable[[], Any], what: str, timeout: float = WAIT) -> Any:
    """Poll ``check`` until it returns something true."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if out := check():
            return out
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def text_of(browser: Any, element_id: str) -> str:
    out: str = browser.execute_script(
        "const e = document.getElementById(arguments[0]); return e.hidden ? '' : e.textContent;",
        element_id,
    )
    return out


def visible(browser: Any, element_id: str) -> bool:
    return bool(
        browser.execute_script("return !document.getElementById(arguments[0]).hidden", element_id)
    )


def submit_with_keyboard(browser: Any, address: str, passphrase: str | None = None) -> None:
    """Type into the form and press Enter, as a keyboard user does."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    field = browser.find_element(By.ID, "address")
    field.clear()
    field.send_keys(address)
    if passphrase is not None:
        pp = browser.find_element(By.ID, "passphrase")
        pp.clear()
        pp.send_keys(passphrase)
        pp.send_keys(Keys.ENTER)
    else:
        field.send_keys(Keys.ENTER)


@pytest.fixture
def alice(correspondents: Any, notary_server: NotaryProcess) -> Any:
    use_notary(correspondents, correspondents.alice, notary_server)
    return correspondents


def test_open_acknowledge_read_and_download(
    alice: Any, notary_server: NotaryProcess, browser: Any, tmp_path: Path
) -> None:
    from selenium.webdriver.common.by import By

    sent, _, url = send_pickup(alice, tmp_path)
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    browser.execute_cdp_cmd(
        "Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)}
    )
    browser.get(url)
    wait_for(lambda: visible(browser, "letter"), "the letter's details")
    assert text_of(browser, "subject") == "Keys" and "alice@example.org" in text_of(
        browser, "sender"
    )
    labels = browser.execute_script(
        "return [...document.querySelectorAll('input')].filter(i => !i.closest('[hidden]'))"
        ".map(i => i.labels.length ? i.labels[0].textContent : '')"
    )
    assert labels and all(labels), labels  # every visible field has a label
    submit_with_keyboard(browser, "someone@else.example")
    assert "another address" in wait_for(lambda: text_of(browser, "error"), "the refusal")
    assert not visible(browser, "content")
    submit_with_keyboard(browser, CAROL)
    wait_for(lambda: visible(browser, "content"), "the decrypted message")
    assert text_of(browser, "text") == BODY.decode()
    assert "logged by the notary" in text_of(browser, "receipt")
    link = browser.find_element(By.CSS_SELECTOR, "#files a")
    assert "contract.pdf" in link.text
    link.click()
    done = wait_for(
        lambda: [p for p in downloads.iterdir() if not p.name.endswith(".crdownload")],
        "the download",
    )
    assert [p.name for p in done] == ["contract.pdf"] and done[0].read_bytes() == SECRET
    Path("/tmp/certmail-web-pickup-opened.png").write_bytes(browser.get_screenshot_as_png())
    logs = [e["message"] for e in browser.get_log("browser")]
    assert not [m for m in logs if "Content Security Policy" in m], logs  # no CSP violation
    browser.refresh()  # reopening: allowed until expiry, said so, nothing new logged
    wait_for(lambda: visible(browser, "opened"), "the already-opened note")
    assert "acknowledged this message" in text_of(browser, "opened")
    steps = json_of(run(alice.alice, "receipts", sent["sha256"], "--json"))["recipients"][CAROL]
    assert [s["event"] for s in steps].count("ContentHandover") == 1


def test_wrong_passphrase_refused_then_locked(
    alice: Any, notary_server: NotaryProcess, browser: Any, tmp_path: Path
) -> None:
    pp = tmp_path / "pp.txt"
    pp.write_text("correct horse battery\n")
    _, _, url = send_pickup(alice, tmp_path, "--pickup-passphrase-file", str(pp))
    browser.get(url)
    wait_for(lambda: visible(browser, "passphrase-row"), "the passphrase field")
    for left in (4, 3, 2, 1):
        submit_with_keyboard(browser, CAROL, "not the passphrase")
        wait_for(
            lambda left=left: f"{left} tries left" in text_of(browser, "error"),
            f"{left} tries left",
        )
    submit_with_keyboard(browser, CAROL, "not the passphrase")
    wait_for(lambda: "Locked" in text_of(browser, "error"), "the lockout")
    assert not visible(browser, "content")
    browser.refresh()
    assert "locked" in wait_for(lambda: text_of(browser, "error"), "locked on reload")


def test_expired_and_incomplete_links_say_so(
    alice: Any, notary_server: NotaryProcess, browser: Any, tmp_path: Path
) -> None:
    from datetime import UTC, datetime

    import httpx

    from notary.evidence import parse_time
    from tests.fixtures.pickup import api, parts

    _, _, url = send_pickup(alice, tmp_path, "--seal-expires", "8")
    browser.get(url.split("#")[0] + "#AAAA")
    assert "incomplete" in wait_for(lambda: text_of(browser, "error"), "the incomplete link")
    _, token, _ = parts(url)
    expires = parse_time(httpx.get(api(notary_server, token)).json()["expires"])
    time.sleep(max(0.0, (expires - datetime.now(UTC)).total_seconds()) + 0.3)
    browser.get(url)
    browser.refresh()
    assert "expired" in wait_for(lambda: text_of(browser, "error"), "the expiry")
    assert not visible(browser, "letter")


@pytest.mark.parametrize("width", [360, 1280])
def test_screenshots_fit_the_width(
    alice: Any, notary_server: NotaryProcess, browser: Any, tmp_path: Path, width: int
) -> None:
    from tests.fixtures.bundle_world import png_grey as _png_grey

    _, _, url = send_pickup(alice, tmp_path)
    browser.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": width, "height": 900, "deviceScaleFactor": 1, "mobile": width < 500},
    )
    try:
        browser.get(url)
        wait_for(lambda: visible(browser, "letter"), "the letter's details")
        layout = browser.execute_script(
            "return {w: document.documentElement.clientWidth,"
            " scroll: document.documentElement.scrollWidth,"
            " font: parseFloat(getComputedStyle(document.body).fontSize)}"
        )
        assert layout["w"] == width and layout["scroll"] <= width and layout["font"] >= 16
        png = browser.get_screenshot_as_png()
        grey = _png_grey(png)
        assert min(grey) < 64 and max(grey) > 200 and sum(1 for p in grey if p < 128) > 1_000
        Path(f"/tmp/certmail-web-pickup-{width}.png").write_bytes(png)
    finally:
        browser.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})


def test_unreachable_notary_says_so(
    alice: Any, notary_server: NotaryProcess, browser: Any, tmp_path: Path
) -> None:
    _, _, url = send_pickup(alice, tmp_path)
    browser.get(url)
    wait_for(lambda: visible(browser, "letter"), "the letter's details")
    notary_server.stop()
    submit_with_keyboard(browser, CAROL)
    assert "cannot be reached" in wait_for(lambda: text_of(browser, "error"), "the error")
    assert not visible(browser, "content")


def test_pickup_bundle_reads_the_same_in_the_verify_page(
    correspondents: Any, notary_server: NotaryProcess, browser: Any, tmp_path: Path
) -> None:
    import subprocess

    from tests.fixtures.cli import CERTMAIL
    from tests.fixtures.pickup import picked_up_bundle
    from tests.web.browser import verify_in_page

    bundle, _, py = picked_up_bundle(correspondents, notary_server, tmp_path)
    page = tmp_path / "verify.html"
    made = subprocess.run(
        [*CERTMAIL, "proof", "verifier-page", "-o", str(page)], capture_output=True, timeout=60
    )
    assert made.returncode == 0, made.stderr
    browser.get(page.as_uri())
    (js,) = verify_in_page(browser, [(bundle.read_bytes(), True)], notary_server.vkey, "")
    assert js["valid"], js
    assert [(e["event"], e["proves"]) for e in js["events"]] == [
        (e["event"], e["proves"]) for e in py["events"]
    ]
    ack = [c for c in js["checks"] if c["item"].endswith("acknowledgement")]
    assert ack == [c for c in py["checks"] if c["item"].endswith("acknowledgement")]
