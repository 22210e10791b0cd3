"""The player page in a real browser: Debian's Chromium, headless, driven by
Playwright, against the real NGINX + API edge. The user types an API key; the
page asks the API for the signed master URL and plays it with the vendored
hls.js. No mocks; the screenshot lands in test-artifacts/."""

from __future__ import annotations

import re
import shutil
import time
from pathlib import Path

import pytest

from include.config import PROJECT_ROOT

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--autoplay-policy=no-user-gesture-required", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]  # fmt: skip
ARTIFACTS = PROJECT_ROOT / "test-artifacts"

pytestmark = [
    pytest.mark.timeout(180),
    pytest.mark.skipif(shutil.which(CHROMIUM) is None, reason="Debian chromium missing (scripts/install_deps.sh)"),
]


def wait_js(page, expression: str, timeout_s: float = 30) -> None:
    """Poll ``expression`` with page.evaluate (CDP, not subject to the page's
    CSP; Playwright's wait_for_function evals inside the page, which our CSP
    rightly forbids, so it cannot be used without bypass_csp)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if page.evaluate(expression):
            return
        page.wait_for_timeout(100)
    raise AssertionError(f"timed out waiting for {expression}: {page.evaluate('window.playerState')}")


def test_player_plays_signed_hls_and_switches_quality(delivery) -> None:
    from playwright.sync_api import sync_playwright

    edge = delivery.edge
    fetched: list[str] = []
    console: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        try:
            context = browser.new_context(ignore_https_errors=True, viewport={"width": 1000, "height": 800})
            page = context.new_page()
            page.on("request", lambda req: fetched.append(req.url))
            page.on("console", lambda msg: console.append(f"{msg.type}: {msg.text}"))
            page.goto(f"{edge.base}/watch/{delivery.job}")
            page.fill("#apikey", delivery.api_key)
            page.click("button[type=submit]")
            wait_js(page, "window.playerState && window.playerState.ready")
            wait_js(page, "document.getElementById('video').currentTime >= 1")
            # Force a level switch through the page's quality menu.
            options = page.eval_on_selector_all("#quality option", "els => els.map(e => [e.value, e.textContent])")
            assert [o[0] for o in options] == ["-1", "0", "1"], options
            current = page.evaluate("window.hls.currentLevel")
            target = "1" if current != 1 else "0"
            page.select_option("#quality", target)
            wait_js(page, f"window.playerState.levelSwitches.includes({target})")
            wait_js(page, "document.getElementById('video').currentTime >= 3.5")
            state = page.evaluate("window.playerState")
            played = page.evaluate("document.getElementById('video').currentTime")
            poster = page.evaluate("document.getElementById('video').poster")
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "player.png"))
        finally:
            browser.close()
    assert played >= 3.0
    assert [e for e in state["errors"] if not e.startswith("non-fatal")] == [], (state, console)
    assert poster.startswith(f"{edge.base}/hls/") and poster.endswith("/poster.jpg")
    segments = [u for u in fetched if re.search(r"/hls/[^/]+/[0-9]+/[0-9a-f]{32}/v[01]/seg_[0-9]+\.m4s$", u)]
    renditions = {re.search(r"/(v[01])/seg_", u)[1] for u in segments}
    assert renditions == {"v0", "v1"}, fetched
    assert not any("cdn" in u or not u.startswith(edge.base) for u in fetched if not u.startswith("blob:")), fetched
    assert Path(ARTIFACTS / "player.png").stat().st_size > 10_000


def test_upload_page_posts_to_the_api(delivery, tmp_path) -> None:
    """The upload page sends the file with the typed key and links to /watch/<id>."""
    from playwright.sync_api import sync_playwright

    from tests import media_fixtures as mf

    clip = mf.make_clip(tmp_path, seconds=2)
    edge = delivery.edge
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        try:
            page = browser.new_context(ignore_https_errors=True).new_page()
            page.goto(f"{edge.base}/upload")
            page.fill("#apikey", delivery.api_key)
            page.set_input_files("#file", str(clip))
            page.click("button[type=submit]")
            link = page.wait_for_selector("#status a", timeout=60_000)
            href = link.get_attribute("href")
        finally:
            browser.close()
    assert re.fullmatch(r"/watch/[0-9a-f]{32}", href or ""), href
