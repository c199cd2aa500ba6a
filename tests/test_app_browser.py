"""The web app in a real browser: Debian's Chromium driven by Playwright against a real `embedsae serve` process on a
free loopback port. Every request must stay on the machine; the console must stay free of errors. The screenshots
are written to a temporary folder, or to docs/ (the README shows them) when EMBEDSAE_UPDATE_DOCS=1, so running the
suite never changes the repository."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run"]
DOCS = (Path(__file__).resolve().parents[1] / "docs" if os.environ.get("EMBEDSAE_UPDATE_DOCS") == "1"
        else Path(tempfile.mkdtemp(prefix="embedsae-screens-")))

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server(app_ws, tmp_path_factory):
    """`embedsae serve` on a copy of the app workspace, on a free port; yields the base URL."""
    import shutil

    ws = tmp_path_factory.mktemp("served") / "cranfield"
    shutil.copytree(app_ws.path, ws)
    proc = subprocess.Popen([sys.executable, "-m", "embedsae", "serve", str(ws), "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        line = proc.stdout.readline()
        m = re.search(r"at (http://127\.0\.0\.1:\d+/)", line)
        assert m, f"serve printed no URL: {line!r}"
        yield m.group(1)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture(scope="module")
def browser_page(server):
    if not CHROMIUM.is_file():
        pytest.skip("Debian chromium is not installed at /usr/bin/chromium (apt-get install chromium)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright Python package is not installed")
    requests: list[str] = []
    errors: list[str] = []

    def route(r):
        requests.append(r.request.url)
        host = urlparse(r.request.url).hostname
        return r.continue_() if host == "127.0.0.1" or r.request.url.startswith("data:") else r.abort()

    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.route("**/*", route)
        page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.set_default_timeout(120_000)
        yield page, requests, errors
        browser.close()
    off = [u for u in requests if urlparse(u).hostname not in ("127.0.0.1", None) and not u.startswith("data:")]
    assert not off, f"requests left the machine: {off[:5]}"
    assert not errors, f"console errors: {errors[:5]}"


def not_blank(path: Path, min_coloured: float = 0.01) -> None:
    import matplotlib.image as mpimg

    img = mpimg.imread(path)[..., :3]
    coloured = float((img < 0.92).any(axis=2).mean())
    distinct = len(np.unique((img * 255).astype(np.uint8).reshape(-1, 3), axis=0))
    assert coloured > min_coloured and distinct > 20, (path, coloured, distinct)


def hit_ids(page) -> list[str]:
    return page.eval_on_selector_all("#results li.hit", "els => els.map(e => e.dataset.id)")


def test_search_steer_feature_page_and_try_it(server, browser_page):
    page, _, errors = browser_page
    page.goto(server + "w/cranfield/search?q=heat+transfer+in+hypersonic+flow&mode=dense")
    page.wait_for_selector("#steer-form input[type=range]")
    before = hit_ids(page)
    assert len(before) == 10
    first = page.locator("#steer-form input[type=range]").first
    name = first.get_attribute("name")
    first.evaluate("el => { el.value = 0; el.dispatchEvent(new Event('input', {bubbles: true})); }")
    page.wait_for_selector("#steering-report")
    after = hit_ids(page)
    assert after != before
    assert f"{name}=0" in page.url  # the steered search is a shareable URL
    page.screenshot(path=str(DOCS / "app-search.png"), full_page=False)
    not_blank(DOCS / "app-search.png")

    page.locator("#results .concepts a.chip").first.click()
    page.wait_for_selector("#feature-label")
    assert re.search(r"/w/cranfield/features/\d+", page.url)
    page.wait_for_selector("#histogram .main-svg")
    page.fill("textarea[name=text]", "shock wave boundary layer interaction on a flat plate")
    page.click("form[hx-post] button[type=submit]")
    page.wait_for_selector("#tryit-activation")
    assert "on this text" in page.inner_text("#tryit-activation")
    assert page.locator("#tryit-result li").count() > 0
    page.evaluate("window.scrollTo(0, 0)")
    page.screenshot(path=str(DOCS / "app-feature.png"), full_page=False)
    not_blank(DOCS / "app-feature.png")
    assert not errors


def test_families_sunburst_and_map_render(server, browser_page):
    page, _, _ = browser_page
    page.goto(server + "w/cranfield/families")
    page.wait_for_selector("#sunburst .main-svg path")
    shot = DOCS / "app-families.png"
    page.screenshot(path=str(shot))
    not_blank(shot)

    page.goto(server + "w/cranfield/map")
    page.wait_for_function("document.getElementById('map-status').textContent.includes('1400 documents')",
                           timeout=300_000)
    page.fill("#map-form input[name=feature]", "3")
    page.click("#map-form button[type=submit]")
    page.wait_for_function("document.getElementById('map-status').textContent.includes('feature #3')")
    shot = DOCS / "app-map.png"
    page.locator("#map").screenshot(path=str(shot))
    not_blank(shot, 0.02)


def test_a_train_job_reaches_100_percent(server, browser_page):
    page, _, _ = browser_page
    page.goto(server + "jobs?ws=cranfield")
    form = page.locator("form", has=page.locator("#start-train-cranfield"))
    form.locator("input[name=k]").fill("4")
    form.locator("input[name=latents]").fill("64")
    form.locator("input[name=epochs]").fill("3")
    form.locator("input[name=name]").fill("browser-tiny")
    page.click("#start-train-cranfield")
    page.wait_for_selector("tr.job.done", timeout=300_000)
    row = page.locator("tr.job.done").first
    assert row.locator(".pct").inner_text().strip() == "100 %"
    assert "browser-tiny" in row.inner_text()
    time.sleep(0.5)
    page.screenshot(path=str(DOCS / "app-jobs.png"))
    page.goto(server)
    assert "browser-tiny" in page.content()
    page.screenshot(path=str(DOCS / "app-workspaces.png"), full_page=False)
