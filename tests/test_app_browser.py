"""The web app in a real browser, on real workspaces of every kind (tests/real_workspaces.py: arXiv, the demo, words,
vectors only, trained only, two SAEs, read-only): Debian's Chromium driven by Playwright against one real
`embedsae serve` process on a free loopback port. Every page loads with no console error and no request off the
machine; every internal link from `/`, two levels deep, answers 200; each screen is used as a user would."""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from pathlib import Path
from urllib.parse import urljoin, urlparse

import numpy as np
import pytest

from tests.browser import chromium, serving

BROWSER_PAGES_PER_KIND = 3
"""Pages of one kind (a feature page, a features page, ...) per workspace the crawl opens in the browser; every
link is still fetched (status 200)."""

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def served(real_workspaces, ws_trained, tmp_path_factory):
    """`embedsae serve` on every real workspace and on `jobs`, a writable copy of (e) for the jobs; the base URL."""
    jobs = tmp_path_factory.mktemp("served") / "jobs"
    shutil.copytree(ws_trained.path, jobs)
    folders = [*real_workspaces.values(), jobs]
    with serving(folders) as url:
        yield url


class Watched:
    """A browser page whose console errors and off-machine requests are collected (and those requests blocked)."""

    def __init__(self, page) -> None:
        self.page, self.errors, self.off = page, [], []
        page.route("**/*", self._route)
        page.on("console", lambda msg: self.errors.append(f"{page.url}: {msg.text}") if msg.type == "error" else None)
        page.on("pageerror", lambda exc: self.errors.append(f"{page.url}: {exc}"))

    def _route(self, route):
        url = route.request.url
        if urlparse(url).hostname == "127.0.0.1" or url.startswith(("data:", "blob:")):
            return route.continue_()
        self.off.append(url)
        return route.abort()

    def open(self, url: str, status: int = 200):
        response = self.page.goto(url)
        assert response is not None and response.status == status, (url, response and response.status)
        return response

    def clean(self) -> None:
        """No console error and no request off the machine so far (then forget them)."""
        errors, off = self.errors[:], self.off[:]
        self.errors.clear()
        self.off.clear()
        assert not off, f"requests left the machine: {off[:5]}"
        assert not errors, f"console errors: {errors[:5]}"


@pytest.fixture(scope="module")
def browser():
    with chromium() as b:
        yield b


@pytest.fixture
def tab(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(120_000)
    watched = Watched(page)
    yield watched
    context.close()
    watched.clean()


def page_links(page) -> list[str]:
    return page.eval_on_selector_all("a[href]:not([download])", "els => els.map(e => e.getAttribute('href'))")


def internal(base: str, href: str, root: str) -> str | None:
    url = urljoin(base, href)
    if not url.startswith(root) or href.startswith(("#", "javascript:")):
        return None
    return url.split("#")[0]


def kind_of(url: str) -> str:
    """A page's kind: its path with ids and the query left out (so one workspace's 50 feature pages are one kind)."""
    path = urlparse(url).path
    return re.sub(r"/\d+(?=/|$)", "/N", path)


# ---------------------------------------------------------------------------- every link, two levels deep
def test_every_link_two_levels_deep_loads_cleanly(served, tab):
    """Every internal link from `/` and from the pages it links to answers 200; the pages of each kind (up to
    BROWSER_PAGES_PER_KIND of a kind per workspace) load in Chromium with no console error and no request off the
    machine."""
    statuses: dict[str, int] = {}
    opened: dict[str, int] = {}
    level = [served]
    for depth in range(3):
        nxt = []
        for url in level:
            if url in statuses:
                continue
            kind = kind_of(url)
            if opened.get(kind, 0) < BROWSER_PAGES_PER_KIND or depth == 0:
                response = tab.page.goto(url)
                tab.page.wait_for_load_state("networkidle")
                statuses[url] = response.status
                opened[kind] = opened.get(kind, 0) + 1
                if depth < 2:
                    nxt += [u for href in page_links(tab.page) if (u := internal(url, href, served))]
            else:
                response = tab.page.request.get(url)
                statuses[url] = response.status
                if depth < 2 and response.status == 200 and "text/html" in response.headers.get("content-type", ""):
                    nxt += [u for href in re.findall(r'<a [^>]*href="([^"]+)"(?![^>]*download)', response.text())
                            if (u := internal(url, href, served))]
        level = list(dict.fromkeys(u for u in nxt if u not in statuses))
    bad = {u: s for u, s in statuses.items() if s != 200}
    assert not bad, bad
    for ws in ("arxiv", "demo", "words", "vectors", "trained", "two-saes", "readonly"):
        assert any(f"/w/{ws}/" in u for u in statuses), ws
    assert len(statuses) > 150, len(statuses)
    tab.clean()


# ---------------------------------------------------------------------------- search and steering
def hit_ids(page) -> list[str]:
    return page.eval_on_selector_all("#results li.hit", "els => els.map(e => e.dataset.id)")


@pytest.mark.parametrize("ws, query, mode", [
    ("arxiv", "sparse autoencoders for interpretability", "hybrid"),
    ("demo", "volcanic islands in the Pacific", "hybrid"),
    ("words", "dog", "dense"),
    ("vectors", None, "dense"),
    ("two-saes", "heat transfer in hypersonic flow", "dense"),
    ("readonly", "football world cup", "concept"),
])
def test_search_and_a_steer_slider(served, tab, ws, query, mode, real_workspaces):
    """A query shows hits and one slider per active feature; moving a slider re-ranks and the URL keeps it."""
    if query is None:  # vectors with no model: a document's id finds the documents like it
        from embedsae.workspace import Workspace

        query = Workspace.open(real_workspaces[ws]).ids[7]
    tab.open(f"{served}w/{ws}/search?q={query}&mode={mode}")
    tab.page.wait_for_selector("#steer-form input[type=range]")
    before = hit_ids(tab.page)
    assert len(before) == 10
    if ws == "vectors":
        assert before[0] == query  # the document itself comes first
    first = tab.page.locator("#steer-form input[type=range]").first
    name = first.get_attribute("name")
    first.evaluate("el => { el.value = 0; el.dispatchEvent(new Event('input', {bubbles: true})); }")
    tab.page.wait_for_selector("#steering-report")
    assert hit_ids(tab.page) != before
    assert f"{name}=0" in tab.page.url  # the steered search is a shareable URL
    tab.clean()


def test_a_word_not_in_the_vocabulary_is_said_on_the_search_screen(served, tab):
    tab.open(f"{served}w/words/search?q=qwxzyv&mode=dense")
    assert "holds no word of workspace words" in tab.page.inner_text("#search-error")
    tab.clean()


# ---------------------------------------------------------------------------- features and a feature page
@pytest.mark.parametrize("ws", ["arxiv", "demo", "words", "two-saes", "readonly"])
def test_features_in_every_order_and_filtered(served, tab, ws):
    """Every sort order lists the features (ordered as it says), the label filter keeps matching labels only, the
    clean filter keeps clean ones; features lacking a score show "–"."""
    for sort in ("score", "density", "id"):
        tab.open(f"{served}w/{ws}/features?sort={sort}")
        rows = tab.page.locator("table.features tr").count() - 1
        assert rows > 0, (ws, sort)
        ids = [int(x) for x in tab.page.eval_on_selector_all("table.features td:first-child a", "e => e.map(a => a.textContent)")]
        if sort == "id":
            assert ids == sorted(ids)
        if sort == "density":
            heads = tab.page.eval_on_selector_all("table.features th", "e => e.map(h => h.textContent)")
            col = heads.index("docs") + 1  # the score columns before it depend on what the labeller stored
            docs = [int(x) for x in tab.page.eval_on_selector_all(f"table.features tr td:nth-child({col})",
                                                                  "e => e.map(a => a.textContent)")]
            assert docs == sorted(docs, reverse=True)
    label = tab.page.locator("table.features td:nth-child(2) a").first.inner_text()
    word = label.split()[0]
    tab.page.fill("input[name=search]", word)
    tab.page.click("form.searchbar button[type=submit]")
    tab.page.wait_for_url(re.compile(r"search="))
    labels = tab.page.eval_on_selector_all("table.features td:nth-child(2) a", "e => e.map(a => a.textContent)")
    assert labels and all(word.lower() in x.lower() for x in labels)
    tab.page.check("input[name=clean]")
    tab.page.click("form.searchbar button[type=submit]")
    tab.page.wait_for_url(re.compile(r"clean=true"))
    assert all(t.strip() == "✓" for t in tab.page.locator("table.features tr td:last-child").all_inner_texts())
    tab.clean()


@pytest.mark.parametrize("ws, text", [
    ("arxiv", "We train sparse autoencoders on sentence embeddings to find interpretable features."),
    ("demo", "The volcano erupted and covered the island in ash."),
    ("words", "dog"),
    ("trained", "shock wave boundary layer interaction on a flat plate"),
])
def test_a_feature_page_and_try_it(served, tab, ws, text):
    """A feature page shows its histogram (a log axis labelled one decade at a time), strong / medium / weak
    examples, neighbours; "try it" embeds a text (looks a word up) and shows the activation and top features."""
    tab.open(f"{served}w/{ws}/features/{first_alive(served, tab, ws)}")
    tab.page.wait_for_selector("#feature-label")
    tab.page.wait_for_selector("#histogram .main-svg")
    boxes = tab.page.eval_on_selector_all("#histogram .ytick text", """e => e.map(t => {
        const r = t.getBoundingClientRect(); return [t.textContent, r.top, r.bottom]; })""")
    assert boxes and all(re.fullmatch(r"\d+", text) for text, _, _ in boxes), boxes  # counts, no stray digits
    spans = sorted((top, bottom) for _, top, bottom in boxes)
    assert all(b[0] >= a[1] - 0.5 for a, b in zip(spans, spans[1:])), boxes  # the log axis labels never overlap
    assert tab.page.locator("#bands .band").count() == 3
    assert tab.page.locator("#bands .band.strong li, #bands .band.strong .chip").count() > 0
    tab.page.fill("textarea[name=text]", text)
    tab.page.click("form[hx-post] button[type=submit]")
    tab.page.wait_for_selector("#tryit-activation")
    assert "on this text" in tab.page.inner_text("#tryit-activation")
    assert tab.page.locator("#tryit-result li").count() > 0
    tab.clean()


def first_alive(served, tab, ws) -> int:
    """The first feature that fires (the next link of feature 0's page, or 0)."""
    body = tab.page.request.get(f"{served}api/v1/workspaces/{ws}/features/0").json()
    if body.get("n_active"):
        return 0
    page = tab.page.request.get(f"{served}w/{ws}/features/0").text()
    return int(re.search(r'id="next" href="/w/[^/]+/features/(\d+)', page).group(1))


# ---------------------------------------------------------------------------- families, map, concept groups
@pytest.mark.parametrize("ws", ["arxiv", "demo", "vectors", "two-saes"])
def test_families_sunburst(served, tab, ws):
    tab.open(f"{served}w/{ws}/families" + ("?sae=topk-k8-n256" if ws == "two-saes" else ""))
    tab.page.wait_for_selector("#sunburst .main-svg path")
    assert tab.page.locator("details[id^=family-]").count() > 0
    tab.clean()


def test_families_of_an_sae_without_the_stage(served, tab):
    """The second SAE of two-saes has no families stage yet: the screen offers it (a stage that found no family
    says why: tests/test_app.py)."""
    tab.open(f"{served}w/two-saes/families?sae=small")
    assert "No families yet" in tab.page.inner_text("main")
    tab.clean()


def map_status(tab) -> str:
    return tab.page.inner_text("#map-status")


def draw(tab, wait: str, **fields) -> None:
    for name, value in fields.items():
        if name == "dims":
            tab.page.select_option("#map-form select[name=dims]", value)
        elif name == "column":
            tab.page.select_option("#map-form select[name=column]", value)
        elif name == "groups":
            tab.page.click("#map-form details.groups summary")
            tab.page.fill("#map-form textarea[name=groups]", value)
        else:
            tab.page.fill(f"#map-form input[name={name}]", value)
    tab.page.click("#map-form button[type=submit]")
    tab.page.wait_for_function(f"document.getElementById('map-status').textContent.includes({json.dumps(wait)})")


def test_a_workspace_without_a_map_offers_the_map_job(served, tab):
    """Trained with nothing after it: the map screen says there is no map and offers the map job, at once, with
    no failed request (the button itself is exercised by the map job tests of tests/test_app.py)."""
    t0 = time.perf_counter()
    tab.open(f"{served}w/trained/map")
    tab.page.wait_for_selector("#map-start", state="visible")
    assert time.perf_counter() - t0 < 5
    assert "no 2-D map yet" in map_status(tab) and "Compute the map" in tab.page.inner_text("#map-missing")
    tab.clean()


@pytest.mark.parametrize("ws, column, groups", [
    ("arxiv", "categories", None),
    ("demo", "categories", None),
    ("words", None, "Animals: dog, cat, horse, cow, pig, sheep, lion, tiger\nColours: red, green, blue, yellow, "
                    "black, white, pink, purple"),
])
def test_the_map_opens_at_once_in_2d_and_3d_coloured_every_way(served, tab, ws, column, groups):
    """On a workspace made by `run` (or `map`) the map opens in <= 5 s; 3-D, a feature, a column and concept
    groups recolour it."""
    t0 = time.perf_counter()
    tab.open(f"{served}w/{ws}/map")
    tab.page.wait_for_function("/\\d+ documents/.test(document.getElementById('map-status').textContent)")
    opened = time.perf_counter() - t0
    assert opened <= 5.0, f"the map took {opened:.1f} s to open"
    n = int(re.search(r"(\d+) documents", map_status(tab)).group(1))
    draw(tab, "coloured by feature #3", feature="3")
    draw(tab, "documents", dims="3", feature="")
    tab.page.wait_for_selector("#map .gl-container canvas, #map canvas")
    draw(tab, "documents", dims="2")
    if column:
        draw(tab, f"coloured by {column}", column=column)
        assert tab.page.locator("#map .legend .traces").count() > 2
    if groups:
        draw(tab, "coloured by 2 concept groups", groups=groups)
        legend = tab.page.locator("#map .legend").text_content()
        assert "Animals" in legend and "Colours" in legend
    tab.page.locator("#map").screenshot(path=str(tab_dir(tab) / f"map-{ws}.png"))
    not_blank(tab_dir(tab) / f"map-{ws}.png", 0.01)
    assert n > 0
    tab.clean()


def tab_dir(tab) -> Path:
    d = Path(os.environ.get("PYTEST_SHOTS", "/tmp")) / "embedsae-browser"
    d.mkdir(parents=True, exist_ok=True)
    return d


def not_blank(path: Path, min_coloured: float = 0.02) -> None:
    import matplotlib.image as mpimg

    img = mpimg.imread(path)[..., :3]
    coloured = float((img < 0.92).any(axis=2).mean())
    distinct = len(np.unique((img * 255).astype(np.uint8).reshape(-1, 3), axis=0))
    assert coloured > min_coloured and distinct > 20, (path, coloured, distinct)


def test_concept_groups_from_a_column(served, tab):
    """arXiv's categories as concept groups: the features that detect each, next to the baselines."""
    tab.open(f"{served}w/arxiv/concepts")
    tab.page.select_option("select[name=column]", "categories")
    tab.page.click("form[hx-post] button[type=submit]")
    tab.page.wait_for_selector("#concepts-result table")
    text = tab.page.inner_text("#concepts-result")
    assert "physics" in text and "Baseline: raw" in text and "Baseline: pca" in text
    tab.clean()


def test_the_word_workspace_flow(served, tab):
    """The Streamlit word app's flow: search a word, try-it with a word, concept groups scored against the raw,
    PCA and ICA baselines, monosemantic features with strong / medium / weak words."""
    tab.open(f"{served}w/words/search?q=king&mode=dense")
    titles = tab.page.eval_on_selector_all("#results li.hit .title", "e => e.map(t => t.textContent)")
    assert titles[0] == "king" and {"queen", "prince"} & set(titles)
    tab.open(f"{served}w/words/concepts")
    groups = ("Numbers: one, two, three, four, five, six, seven, eight, nine, ten\n"
              "Months: january, february, march, april, june, july, august, september, october, november\n"
              "Countries: france, germany, china, japan, india, russia, britain, canada, spain, italy\n")
    tab.page.fill("textarea[name=groups]", groups)
    tab.page.check("input[name=baselines][value=ica]")
    tab.page.click("form[hx-post] button[type=submit]")
    tab.page.wait_for_selector("#concepts-result table")
    text = tab.page.inner_text("#concepts-result")
    for part in ("Months", "Countries", "Baseline: raw", "Baseline: pca", "Baseline: ica"):
        assert part in text, part
    summary = tab.page.locator("#concepts-result table").first.inner_text()
    assert re.search(r"\bsae\b", summary) and re.search(r"\bica\b", summary)
    tab.clean()


# ---------------------------------------------------------------------------- SAEs, read-only, jobs
def test_switching_between_two_saes(served, tab):
    """The latest SAE is the default; the workspace card's link switches every screen to the other one."""
    tab.open(f"{served}w/two-saes/features")
    assert "SAE small" in tab.page.inner_text("header")
    tab.open(served)
    tab.page.click("#ws-two-saes a[href='/w/two-saes/search?sae=topk-k8-n256']")
    tab.page.click("header nav a:has-text('Features')")
    assert "sae=topk-k8-n256" in tab.page.url and "SAE topk-k8-n256" in tab.page.inner_text("header")
    tab.page.locator("table.features td:first-child a").first.click()
    tab.page.wait_for_selector("#feature-label")
    assert "sae=topk-k8-n256" in tab.page.url and "SAE topk-k8-n256" in tab.page.inner_text("header")
    tab.clean()


def test_jobs_start_progress_and_cancel(served, tab):
    """A train job on the writable copy shows its progress live and is cancelled from the API; a train job on the
    read-only workspace fails with a one-line error."""
    tab.open(f"{served}jobs?ws=jobs")
    form = tab.page.locator("form", has=tab.page.locator("#start-train-jobs"))
    form.locator("input[name=epochs]").fill("300")
    form.locator("input[name=name]").fill("browser-long")
    tab.page.click("#start-train-jobs")
    tab.page.wait_for_function("[...document.querySelectorAll('tr.job.running .pct')].some(e => parseInt(e.textContent) > 0)",
                               timeout=300_000)
    job = tab.page.locator("tr.job.running").first.get_attribute("data-job")
    tab.page.request.post(f"{served}api/v1/jobs/{job}/cancel")
    tab.page.wait_for_selector(f"tr.job.cancelled[data-job={job}]", timeout=60_000)
    r = tab.page.request.post(f"{served}api/v1/workspaces/readonly/jobs",
                              data={"kind": "train", "k": 4, "latents": 32, "epochs": 1})
    assert r.status == 202
    done = wait_job(tab, served, r.json()["id"])
    assert done["state"] == "failed" and done["error"].count("\n") == 0, done
    tab.clean()


def wait_job(tab, served, job_id: str, timeout: float = 300) -> dict:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        job = tab.page.request.get(f"{served}api/v1/jobs/{job_id}").json()
        if job["state"] in ("done", "failed", "cancelled"):
            return job
        time.sleep(0.3)
    raise AssertionError(f"job {job_id} did not finish: {job}")
