"""The app on real workspaces of every kind (tests/real_workspaces.py): every internal link from `/`, two levels
deep, answers 200, through the HTTP API's own client (the browser tests, tests/test_app_browser.py, add the
console and the network)."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from urllib.parse import urljoin, urlparse

import pytest
from fastapi.testclient import TestClient

from embedsae.app import create_app

pytestmark = pytest.mark.slow


class Links(HTMLParser):
    """The same-site links (a href), images and scripts of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.links: list[str] = []
        self.assets: list[str] = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "a" and a.get("href") and not a.get("download"):
            self.links.append(a["href"])
        elif tag in ("img", "script") and a.get("src"):
            self.assets.append(a["src"])
        elif tag == "link" and a.get("href") and a.get("rel") == "stylesheet":
            self.assets.append(a["href"])


def internal(base: str, href: str) -> str | None:
    """The path and query of a same-site link, else None."""
    if href.startswith(("#", "data:", "javascript:", "mailto:")):
        return None
    url = urlparse(urljoin(base, href))
    if url.netloc not in ("", "127.0.0.1"):
        return None
    return url.path + (f"?{url.query}" if url.query else "")


def crawl(client, start: str = "/", depth: int = 2) -> dict[str, int]:
    """Every page reachable from `start` in `depth` clicks, and every asset they load, with its status."""
    seen: dict[str, int] = {}
    frontier = [start]
    for level in range(depth + 1):
        nxt = []
        for path in frontier:
            if path in seen:
                continue
            r = client.get(path)
            seen[path] = r.status_code
            if "text/html" not in r.headers.get("content-type", ""):
                continue
            parser = Links()
            parser.feed(r.text)
            for asset in parser.assets:
                if (p := internal(path, asset)) and p not in seen:
                    seen[p] = client.get(p).status_code
            if level < depth:
                nxt += [p for href in parser.links if (p := internal(path, href)) and p not in seen]
        frontier = list(dict.fromkeys(nxt))
    return seen


def test_every_screen_of_every_kind_of_workspace_answers_200(real_workspaces):
    with TestClient(create_app(list(real_workspaces.values())), base_url="http://127.0.0.1", follow_redirects=True,
                    raise_server_exceptions=False) as c:
        statuses = crawl(c)
    bad = {p: s for p, s in statuses.items() if s != 200}
    assert not bad, bad
    for name in real_workspaces:
        for screen in ("search", "features", "families", "map", "concepts"):
            assert any(re.match(rf"/w/{re.escape(name)}/{screen}\b", p) for p in statuses), (name, screen)
    assert len(statuses) > 100


def test_concept_groups_from_a_corpus_column_on_the_command_line(ws_arxiv, tmp_path, capsys):
    """`embedsae concepts WS --column categories`: each arXiv category a group of documents; the SAE's features
    detect them better than the raw dimensions, PCA and ICA; an unknown column is a one-line error naming those
    there are."""
    import json
    import shutil

    from embedsae.cli import main

    ws = tmp_path / "arxiv"
    shutil.copytree(ws_arxiv.path, ws)
    assert main(["concepts", str(ws), "--column", "categories", "--json"]) == 0
    out, err = capsys.readouterr()
    data = json.loads(out)
    assert data["groups"]["evaluated"] >= 20 and data["groups"]["n_missing_words"] == 0
    best = {row["method"]: row["median_best_f1"] for row in data["summary"]}
    assert best["sae"] > 1.5 * max(best["raw"], best["pca"], best["ica"]), best
    assert "concepts/categories.json" in err and any((ws / "saes").glob("*/concepts/categories.png"))
    assert main(["concepts", str(ws), "--column", "nope"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no column 'nope'" in err[0] and "categories" in err[0], err


def test_a_word_workspace_has_its_features_named(ws_words):
    """The default labeller names the features of a word workspace (each document one word) by words, with
    names that separate their words from the others (AUC of the name's embedding)."""
    with TestClient(create_app([ws_words.path]), base_url="http://127.0.0.1") as c:
        r = c.get(f"/api/v1/workspaces/{ws_words.path.name}/features", params={"sort": "id", "limit": 500})
    assert r.status_code == 200
    items = r.json()["items"]
    named = [f for f in items if f["label"]]
    assert len(named) >= 0.9 * len(items), (len(named), len(items))
    assert all(len(f["label"].split()) <= 6 for f in named)
    aucs = sorted(f["scores"]["embedding_auc"] for f in named if f["scores"]["embedding_auc"] is not None)
    assert aucs and aucs[len(aucs) // 2] > 0.8, aucs[len(aucs) // 2]
