"""Index storage behind one interface: a backend registered from this module (indexes kept in memory) is built
by `build_index` and searched by a Searcher with no change to any retriever, and ranks as the embedded one."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from embedsae import pipeline
from embedsae.errors import InputError, WorkspaceError
from embedsae.search import Searcher, build_index, storage
from embedsae.search.concept import ConceptIndex, sae_arrays
from embedsae.search.dense import DenseIndex
from embedsae.search.storage import EmbeddedStore, IndexStore, Storage, concept_path, index_info, register_store
from embedsae.workspace import Workspace

from .conftest import shared_path


class MemoryStore(IndexStore):
    """Keeps every index in a dict of this process, keyed by workspace folder and SAE."""

    name = "memory"
    held: dict = {}

    def _write_concept(self, ctx, docs, sae):
        index = ConceptIndex.from_codes(docs.indices, docs.values, docs.n_latents, docs.norms, ctx.concept, ctx.sae,
                                        decoder=sae_arrays(sae), residual=docs.residual)
        self.held[self.ws.path, ctx.sae] = index
        return {"kept": "in memory", "documents": index.n_docs}

    def has_concept(self, sae):
        return (self.ws.path, sae) in self.held

    def concept(self, sae):
        return self.held[self.ws.path, sae]

    def drop_concept(self, sae):
        self.held.pop((self.ws.path, sae), None)

    def write_dense(self, ctx):
        self.held[self.ws.path, "dense"] = np.array(self.ws.embeddings, np.float32)
        return {"kind": "in memory"}

    def dense(self, ann):
        vectors = self.held[self.ws.path, "dense"]
        return DenseIndex(vectors), vectors.nbytes


@pytest.fixture(scope="module")
def memory_store():
    register_store(MemoryStore)
    yield MemoryStore
    storage.unregister_store("memory")
    MemoryStore.held.clear()


@pytest.fixture(scope="module")
def pair(cranfield_ws, tmp_path_factory, memory_store):
    """Cranfield with a small SAE, indexed twice: in the workspace's files and in the memory store."""
    root = tmp_path_factory.mktemp("storage")
    shutil.copytree(cranfield_ws.path, root / "embedded")
    ws = Workspace.open(root / "embedded")
    pipeline.train(ws, k=16, latents=1024, epochs=10, evaluate=False)
    build_index(ws)
    shutil.copytree(root / "embedded", root / "memory")
    mws = Workspace.open(root / "memory")
    info = build_index(mws, backend="memory")
    return ws, mws, info


def test_a_registered_store_is_built_and_searched_like_the_embedded_one(pair, embedder):
    ws, mws, info = pair
    assert info["backend"] == "memory" and info["concept"] == {"kept": "in memory", "documents": 1400}
    assert not concept_path(mws, info["sae"]).exists(), "the embedded copy is dropped when another backend holds it"
    assert concept_path(ws, info["sae"]).is_file() and index_info(ws)["backend"] == "embedded"
    a, b = Searcher(ws, embedder=embedder), Searcher(mws, embedder=embedder)
    assert isinstance(b.concept, ConceptIndex) and b.storage.concept_store(b.sae_name).name == "memory"
    from embedsae.data.readers import read_beir

    texts = read_beir(shared_path("cranfield")).queries["text"].astype(str).tolist()[::9]
    for text, q in zip(texts, a.embed(texts)):
        for mode in ("dense", "concept", "hybrid", "bm25"):
            ra, sa = a.rank(mode, q, text, 10)
            rb, sb = b.rank(mode, q, text, 10)
            assert np.array_equal(ra, rb), mode
            np.testing.assert_allclose(sa, sb, atol=1e-6)


def test_storage_finds_each_index_where_it_is(pair, tmp_path):
    ws, mws, info = pair
    assert Storage(ws).concept_store(info["sae"]).name == "embedded"
    assert Storage(mws).concept_store(info["sae"]).name == "memory"
    assert Storage(ws).concept_store("no-such-sae") is None
    with pytest.raises(WorkspaceError, match="build it with: embedsae index"):
        Storage(ws).concept("no-such-sae")
    assert storage.store_class("embedded") is EmbeddedStore and "memory" in storage.BACKENDS


def test_bad_backends_are_named(pair):
    ws, _, _ = pair
    with pytest.raises(InputError, match="unknown index backend 'faiss'; use one of embedded, milvus, memory"):
        build_index(ws, backend="faiss")
    with pytest.raises(InputError, match="an index backend named 'memory' is already registered"):
        register_store(type("Again", (MemoryStore,), {}))
    with pytest.raises(InputError, match="cannot be removed"):
        storage.unregister_store("embedded")
