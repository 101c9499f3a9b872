"""``GET /log``: the public log page (issue 13 item 3), against the API it summarises, and
in headless Chromium at 360 px."""

from __future__ import annotations

import html
from typing import Any

import httpx

from tests.fixtures.bundle_world import World


def test_log_page_states_what_the_api_serves(world: World) -> None:
    url = world.notary.url
    page = httpx.get(url + "/log")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    assert page.headers["x-frame-options"] == "DENY"
    text = html.unescape(page.text)
    size = httpx.get(url + "/healthz").json()["tree_size"]
    assert size >= 3
    assert f'<dd id="tree-size">{size}</dd>' in page.text
    assert httpx.get(url + "/v1/checkpoint").text in text
    assert httpx.get(url + "/v1/vkey").text.strip() in text
    assert httpx.get(url + "/v1/tsa/chain").text in text
    assert "/v1/proof/consistency?old=M&new=N" in text and "certmail proof verify" in text
    assert "No witnesses" in text
    assert "<script" not in page.text and "https://" not in page.text


def test_log_page_in_chromium_at_360_px(world: World, browser: Any) -> None:
    browser.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": 360, "height": 800, "deviceScaleFactor": 1, "mobile": True},
    )
    try:
        browser.get(world.notary.url + "/log")
        facts = browser.execute_script(
            """
            return {scroll: document.documentElement.scrollWidth,
                    w: document.documentElement.clientWidth,
                    readonly: [...document.querySelectorAll('textarea')].every(t => t.readOnly),
                    unlabelled: [...document.querySelectorAll('textarea')]
                      .filter(t => !document.querySelector(`label[for='${t.id}']`)).length,
                    vkey: document.getElementById('vkey').value};
            """
        )
        assert facts["scroll"] <= facts["w"] == 360, facts
        assert facts["readonly"] and facts["unlabelled"] == 0
        assert facts["vkey"] == world.notary.vkey
        assert [
            e for e in browser.get_log("browser") if "Content Security Policy" in e["message"]
        ] == []
    finally:
        browser.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
