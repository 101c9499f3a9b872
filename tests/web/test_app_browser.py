"""``GET /app`` in Debian's headless Chromium (issue 13 item 2): sign in with the token form
and with a `certmail web-login` link, watch a message's timeline change while the relay
delivers it (a real relay and recipient server: deferred with the server's 451, then
delivered, with no reload), sign out (the old cookie refused), screenshots at 360 and
1280 px (saved, non-blank, no horizontal overflow), no CSP violation."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from certmail.relay_client import submit
from tests.fixtures.smtp import SmtpSink
from tests.notary.relay_helpers import ALICE, BOB, RelayNotary, configure, message, wait_for
from tests.web.app_world import notarize, sha, web_login


class Live:
    def __init__(self, relay: RelayNotary, sink: SmtpSink) -> None:
        self.relay, self.sink = relay, sink

    @property
    def url(self) -> str:
        return self.relay.url


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    from tests.fixtures.notary import init_notary_dir

    sink = SmtpSink(tmp_path_factory.mktemp("sink"))
    sink.start()
    d = init_notary_dir(tmp_path_factory.mktemp("live") / "notary")
    configure(d, relay_retry_initial=0.2)
    relay = RelayNotary(d, sink.port)
    relay.start()
    try:
        for i in range(4):
            notarize(relay.url, relay.token, sha(f"direct-{i}"), f"<direct-{i}@a.test>")
        yield Live(relay, sink)
    finally:
        relay.proc.stop()
        sink.stop()


def _wait(browser: Any, script: str, what: str, timeout: float = 60.0) -> Any:
    """Poll ``script`` in the page until it returns something truthy (not a timing assertion)."""
    deadline = time.monotonic() + timeout
    while True:
        got = browser.execute_script(script)
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}: {browser.page_source[-2000:]}")
        time.sleep(0.1)


def _sign_in_with_token(browser: Any, url: str, token: str) -> None:
    browser.delete_all_cookies()
    browser.get(url + "/app")
    browser.find_element("id", "token").send_keys(token)
    browser.find_element("id", "signin").click()
    _wait(browser, "return document.getElementById('rows')", "the list")


def _csp_violations(browser: Any) -> list[Any]:
    return [e for e in browser.get_log("browser") if "Content Security Policy" in e["message"]]


def test_the_timeline_follows_a_delivery_as_it_happens(
    live: Live, browser: Any, tmp_path: Path
) -> None:
    live.sink.fail("rcpt", 451, "4.7.1 greylisted, come back later", sticky=True)
    digest = submit(
        message("followed"),
        mail_from=ALICE,
        recipients=[BOB],
        notary_url=live.url,
        token=live.relay.token,
    )
    auth = {"Authorization": f"Bearer {live.relay.token}"}

    def deferred() -> bool:
        r = httpx.get(f"{live.url}/v1/messages/{digest}/deliveries", headers=auth, timeout=10)
        return r.status_code == 200 and r.json()["deliveries"][0]["attempts"] >= 1

    wait_for(deferred, what="a first, deferred attempt")
    browser.delete_all_cookies()
    link = web_login(live.url, live.relay.token, tmp_path / "home")
    browser.get(link)
    browser.find_element("id", "use-link").click()
    _wait(browser, "return document.getElementById('rows')", "the list after the link")
    assert digest in browser.page_source and "deferred" in browser.page_source
    browser.get(f"{live.url}/app/messages/{digest}")
    text = _wait(
        browser,
        "const t = document.getElementById('timeline'); return t && t.textContent",
        "the timeline",
    )
    assert "deferred" in text and "451" in text and "greylisted" in text
    assert "delivered" not in text
    assert browser.find_element("id", "timeline").get_attribute("data-poll")
    browser.execute_script("window.__same_page = 42;")
    live.sink.heal()
    text = _wait(
        browser,
        "const t = document.getElementById('timeline').textContent;"
        " return t.includes('delivered') && t",
        "the delivery to show without a reload",
    )
    assert "250" in text and "deferred" not in text
    assert browser.execute_script("return window.__same_page") == 42  # updated in place
    assert int(browser.find_element("id", "timeline").get_attribute("data-updated")) >= 1
    _wait(browser, "return !document.getElementById('timeline').dataset.poll", "polling to stop")
    browser.get(live.url + "/app?state=delivered")
    assert digest in browser.page_source
    assert _csp_violations(browser) == []


def test_sign_in_by_token_and_sign_out_kills_the_cookie(live: Live, browser: Any) -> None:
    _sign_in_with_token(browser, live.url, live.relay.token)
    assert sha("direct-3") in browser.page_source and ALICE in browser.page_source
    cookie = browser.get_cookie("certmail_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and cookie["path"] == "/app"
    assert browser.execute_script("return document.cookie") == ""  # not readable by script
    browser.find_element("id", "signout").click()
    _wait(browser, "return document.getElementById('token')", "the sign-in form")
    old = httpx.get(live.url + "/app", cookies={"certmail_session": cookie["value"]})
    assert 'id="token"' in old.text and sha("direct-3") not in old.text


def test_search_from_the_page(live: Live, browser: Any) -> None:
    _sign_in_with_token(browser, live.url, live.relay.token)
    box = browser.find_element("id", "f-q")
    box.send_keys("direct-2@a.test")
    browser.find_element("id", "apply").click()
    # The list before the search shows every message: wait for one of at most one row
    # (a search that filters nothing times out here and fails).
    shown = _wait(
        browser,
        "const s = [...document.querySelectorAll('#rows tr[data-sha256]')]"
        ".map(r => r.dataset.sha256).join(',') || (document.getElementById('empty') && 'none');"
        "return s && !s.includes(',') ? s : null",
        "the search result",
    )
    assert shown == sha("direct-2")
    labels = browser.execute_script(
        "return [...document.querySelectorAll('input:not([type=hidden]), select')]"
        ".filter(i => !document.querySelector(`label[for='${i.id}']`)).length"
    )
    assert labels == 0


@pytest.mark.parametrize("width", [360, 1280])
def test_screenshots_fit_the_width(live: Live, browser: Any, tmp_path: Path, width: int) -> None:
    from tests.fixtures.bundle_world import png_grey as _png_grey

    _sign_in_with_token(browser, live.url, live.relay.token)
    browser.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": width, "height": 1000, "deviceScaleFactor": 1, "mobile": width < 500},
    )
    try:
        for path in ("/app", f"/app/messages/{sha('direct-0')}"):
            browser.get(live.url + path)
            layout = browser.execute_script(
                """
                const w = document.documentElement.clientWidth;
                const wide = [...document.querySelectorAll('body *')]
                  .filter(e => e.getBoundingClientRect().right > w + 1 && !e.closest('.scroll'))
                  .map(e => e.tagName + '#' + e.id + '.' + e.className);
                return {w, scroll: document.documentElement.scrollWidth, wide,
                        font: parseFloat(getComputedStyle(document.body).fontSize)};
                """
            )
            assert layout["w"] == width and layout["scroll"] <= width, layout
            assert layout["wide"] == [] and layout["font"] >= 16, layout
            name = "list" if path == "/app" else "message"
            png = tmp_path / f"app-{name}-{width}.png"
            png.write_bytes(browser.get_screenshot_as_png())
            grey = _png_grey(png.read_bytes())
            assert min(grey) < 64 and max(grey) > 200  # dark text on a light page
            assert sum(1 for p in grey if p < 128) > 2_000  # not blank
            Path(f"/tmp/certmail-web-app-{name}-{width}.png").write_bytes(png.read_bytes())
        assert _csp_violations(browser) == []
    finally:
        browser.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})


def test_the_keyboard_alone_signs_in_and_out(live: Live, browser: Any) -> None:
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.keys import Keys

    browser.delete_all_cookies()
    browser.get(live.url + "/app")

    def tab_to(target: str, limit: int = 40) -> None:
        for _ in range(limit):
            ActionChains(browser).send_keys(Keys.TAB).perform()
            if browser.execute_script("return document.activeElement.id") == target:
                return
        raise AssertionError(f"Tab never reached #{target}")

    tab_to("token")
    ActionChains(browser).send_keys(live.relay.token, Keys.ENTER).perform()
    _wait(browser, "return document.getElementById('rows')", "the list")
    tab_to("f-q")  # the search box; then on, round to the header's sign-out button
    tab_to("signout")
    ActionChains(browser).send_keys(Keys.ENTER).perform()
    _wait(browser, "return document.getElementById('token')", "the sign-in form")
