"""Regenerate the app's screenshots in docs/ (the README shows them) from real workspaces, in Debian's Chromium.

    python scripts/screenshots.py --arxiv ws-arxiv --words ws-words [--demo demo-ws] [--out docs]

`--arxiv` is a workspace made by `embedsae run` on ../shared/data/arxiv/abstracts.jsonl (or any document
workspace: its search, features, a feature page, map and concept groups are shown), `--words` one made by
`embedsae words --source glove50 --train` then `embedsae map`, `--demo` the README's first command's workspace
(its families are shown; without it, the arXiv workspace's). The script starts `embedsae serve` on both, opens every screen as a user would and
writes docs/app-<screen>.png; it prints each file with the screen it shows. Nothing leaves the machine: every
request to another host is blocked (and would fail the run).
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlparse

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run"]
WORD_GROUPS = ("Animals: dog, cat, horse, cow, pig, sheep, lion, tiger, bear, wolf, rabbit, mouse\n"
               "Colours: red, green, blue, yellow, black, white, pink, purple, orange, brown\n"
               "Numbers: one, two, three, four, five, six, seven, eight, nine, ten\n"
               "Months: january, february, march, april, june, july, august, september, october, november\n"
               "Countries: france, germany, china, japan, india, russia, britain, canada, spain, italy")


def serve(folders: list[Path]) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen([sys.executable, "-m", "embedsae", "serve", *map(str, folders), "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    line = proc.stdout.readline()
    m = re.search(r"at (http://127\.0\.0\.1:\d+/)", line)
    if not m:
        proc.kill()
        raise SystemExit(f"serve printed no URL: {line!r}")
    return proc, m.group(1)


def shoot(base: str, arxiv: str, words: str, families: str, out: Path) -> list[tuple[Path, str]]:
    from playwright.sync_api import sync_playwright

    shots: list[tuple[Path, str]] = []
    errors: list[str] = []

    def route(r):
        ok = urlparse(r.request.url).hostname == "127.0.0.1" or r.request.url.startswith(("data:", "blob:"))
        if not ok:
            errors.append(f"request off the machine: {r.request.url}")
        return r.continue_() if ok else r.abort()

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        page.set_default_timeout(300_000)
        page.route("**/*", route)
        page.on("console", lambda msg: errors.append(f"{page.url}: {msg.text}") if msg.type == "error" else None)

        def save(name: str, what: str, element: str | None = None, full: bool = False) -> None:
            path = out / f"app-{name}.png"
            time.sleep(0.5)  # let Plotly finish its transitions
            if element:
                page.locator(element).screenshot(path=str(path))
            else:
                page.screenshot(path=str(path), full_page=full)
            shots.append((path, what))

        page.goto(base)
        save("workspaces", "Workspaces: the served workspaces, their SAEs and metrics, training and density plots")
        page.goto(f"{base}w/{arxiv}/search?q=sparse+autoencoders+for+interpretability&mode=hybrid")
        page.wait_for_selector("#steer-form input[type=range]")
        page.locator("#steer-form input[type=range]").first.evaluate(
            "el => { el.value = 0; el.dispatchEvent(new Event('input', {bubbles: true})); }")
        page.wait_for_selector("#steering-report")
        save("search", "Search: hits with the concepts that explain them; one slider per query feature (one moved)")
        page.goto(f"{base}w/{arxiv}/features?sort=score")
        save("features", "Features: sorted by score, filtered by label, paged, exported")
        page.locator("table.features td:first-child a").first.click()
        page.wait_for_selector("#histogram .main-svg")
        page.fill("textarea[name=text]", "We train sparse autoencoders on sentence embeddings to find features.")
        page.click("form[hx-post] button[type=submit]")
        page.wait_for_selector("#tryit-activation")
        page.evaluate("window.scrollTo(0, 0)")
        save("feature", "Feature page: label and scores, histogram, strong / medium / weak documents, neighbours, try it",
             full=True)
        page.goto(f"{base}w/{families}/families")
        page.wait_for_selector("#sunburst .main-svg path")
        save("families", "Families: the sunburst and the indented list")
        page.goto(f"{base}w/{arxiv}/map")
        page.wait_for_function("/\\d+ documents/.test(document.getElementById('map-status').textContent)")
        if page.locator("#map-form select[name=column] option[value=categories]").count():
            page.select_option("#map-form select[name=column]", "categories")
            page.click("#map-form button[type=submit]")
            page.wait_for_function("document.getElementById('map-status').textContent.includes('coloured by')")
        save("map", "Map: the stored 2-D UMAP layout coloured by a corpus column (click a point for its document)")
        page.select_option("#map-form select[name=dims]", "3")
        page.click("#map-form button[type=submit]")
        page.wait_for_selector("#map canvas")
        save("map-3d", "Map in 3-D (WebGL)")
        page.goto(f"{base}w/{arxiv}/concepts")
        if page.locator("select[name=column] option[value=categories]").count():
            page.select_option("select[name=column]", "categories")
            page.click("form[hx-post] button[type=submit]")
            page.wait_for_selector("#concepts-result table")
        save("concepts", "Concept groups from a corpus column: the features that detect each category, with the baselines")
        page.goto(f"{base}w/{words}/concepts")
        page.fill("textarea[name=groups]", WORD_GROUPS)
        page.check("input[name=baselines][value=ica]")
        page.click("form[hx-post] button[type=submit]")
        page.wait_for_selector("#concepts-result table")
        save("concepts-words", "Concept groups on a word workspace: SAE features against the raw, PCA and ICA "
                               "baselines, monosemantic features with strong / medium / weak words", full=True)
        page.goto(f"{base}w/{words}/map")
        page.wait_for_function("/\\d+ documents/.test(document.getElementById('map-status').textContent)")
        page.click("#map-form details.groups summary")
        page.fill("#map-form textarea[name=groups]", WORD_GROUPS)
        page.click("#map-form button[type=submit]")
        page.wait_for_function("document.getElementById('map-status').textContent.includes('concept groups')")
        save("map-words", "The word map coloured by concept groups")
        page.goto(f"{base}w/{words}/search?q=king&mode=dense")
        page.wait_for_selector("#results li.hit")
        save("search-words", "Searching a word: looked up in the workspace's vectors, no model loaded")
        page.goto(f"{base}jobs?ws={words}")
        save("jobs", "Jobs: start train / interpret / families / index / map; progress updates live")
        browser.close()
    if errors:
        raise SystemExit("the app misbehaved:\n" + "\n".join(errors[:10]))
    return shots


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arxiv", required=True, type=Path, metavar="WS", help="a document workspace made by `run`")
    ap.add_argument("--words", required=True, type=Path, metavar="WS", help="a word workspace (words --train, map)")
    ap.add_argument("--demo", type=Path, metavar="WS", help="the README's demo workspace (its families are shown)")
    ap.add_argument("--out", type=Path, default=ROOT / "docs", help="folder for the PNGs (default docs/)")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    folders = [args.arxiv, args.words] + ([args.demo] if args.demo else [])
    proc, base = serve(folders)
    try:
        shots = shoot(base, args.arxiv.resolve().name, args.words.resolve().name,
                      (args.demo or args.arxiv).resolve().name, args.out)
    finally:
        proc.terminate()
        proc.wait(30)
    for path, what in shots:
        print(f"{path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}  {what}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
