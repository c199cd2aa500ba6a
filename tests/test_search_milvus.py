"""The concept index and dense vectors in Milvus (Milvus Lite, in-process) answer as the embedded index does."""

import shutil
import sys

import numpy as np
import pytest

from embedsae import pipeline
from embedsae.errors import InputError, MissingDependencyError, WorkspaceError
from embedsae.search import Searcher, build_index
from embedsae.search.milvus import MilvusSettings, pointer_path, read_pointer
from embedsae.workspace import Workspace
from tests.conftest import shared_path

pytest.importorskip("pymilvus", reason="the Milvus backend needs embedsae[milvus] (pymilvus, milvus-lite)")
pytest.importorskip("milvus_lite", reason="the Milvus backend's tests run on Milvus Lite (milvus-lite)")


@pytest.fixture(scope="module")
def pair(cranfield_ws, tmp_path_factory):
    """Cranfield with a small SAE, indexed twice: embedded, and in Milvus Lite (a copy of the same SAE)."""
    root = tmp_path_factory.mktemp("milvus")
    embedded = root / "embedded"
    shutil.copytree(cranfield_ws.path, embedded)
    ws = Workspace.open(embedded)
    pipeline.train(ws, k=16, latents=1024, epochs=10, evaluate=False)
    build_index(ws, lexical=True)
    shutil.copytree(embedded, root / "milvus")
    mws = Workspace.open(root / "milvus")
    info = build_index(mws, lexical=True, backend="milvus", milvus=MilvusSettings(batch_rows=500))
    return ws, mws, info


@pytest.fixture(scope="module")
def queries(embedder):
    from embedsae.data.readers import read_beir

    texts = read_beir(shared_path("cranfield")).queries["text"].astype(str).tolist()
    return texts, embedder.embed(texts)


def test_milvus_index_is_written_and_the_embedded_one_removed(pair):
    ws, mws, info = pair
    assert info["backend"] == "milvus" and info["concept"]["documents"] == 1400
    assert info["concept"]["collection"].startswith("embedsae_milvus_")
    pointer = read_pointer(mws, info["sae"])
    assert pointer["dense"] and pointer["resolved_uri"].endswith("index/milvus.db")
    assert not (mws.sae_dir(info["sae"]) / "concept_index.npz").exists()
    assert (ws.sae_dir(info["sae"]) / "concept_index.npz").is_file() and not pointer_path(ws, info["sae"]).exists()


@pytest.mark.parametrize("mode", ["concept", "dense", "hybrid"])
def test_milvus_gives_the_embedded_top_10(pair, queries, embedder, mode):
    """Every third Cranfield query (75): the same top-10 documents, in the same order, with the same scores."""
    ws, mws, _ = pair
    a, b = Searcher(ws, embedder=embedder), Searcher(mws, embedder=embedder)
    assert type(b.retriever("concept").index).__name__ == "MilvusConceptIndex"
    texts, vectors = queries[0][::3], queries[1][::3]
    same = 0
    for text, q in zip(texts, vectors):
        ra, sa = a.rank(mode, q, text, 10)
        rb, sb = b.rank(mode, q, text, 10)
        same += int(np.array_equal(ra, rb))
        np.testing.assert_allclose(sb, sa, atol=1e-5)
    assert same == len(texts), f"{len(texts) - same} of {len(texts)} {mode} rankings differ"


def test_milvus_explains_and_steers_like_the_embedded_index(pair, embedder):
    ws, mws, _ = pair
    a, b = Searcher(ws, embedder=embedder), Searcher(mws, embedder=embedder)
    feature = int(a.concept_query(a.embed(["shock waves on a flat plate"])[0]).latents[0])
    ra = a.search("shock waves on a flat plate", "concept", 5, steer=[f"{feature}=0"])
    rb = b.search("shock waves on a flat plate", "concept", 5, steer=[f"{feature}=0"])
    assert [h["id"] for h in ra.hits] == [h["id"] for h in rb.hits]
    assert [h["concepts"] for h in ra.hits] == [h["concepts"] for h in rb.hits]
    assert ra.hits[0]["concepts"], "hits are explained by shared concepts"
    assert ra.steering["changes"] == rb.steering["changes"]


def test_milvus_bad_input_is_named(pair, tmp_path, monkeypatch):
    ws, mws, _ = pair
    with pytest.raises(InputError, match="build the concept part too"):
        build_index(ws, parts=["dense"], backend="milvus")
    with pytest.raises(InputError, match="unknown index backend 'faiss'"):
        build_index(ws, backend="faiss")
    with pytest.raises(InputError, match="neither a server address"):
        build_index(ws, backend="milvus", milvus=MilvusSettings(uri=str(tmp_path / "x.sqlite")))
    with pytest.raises(InputError, match="collection names"):
        MilvusSettings(collection="has-dash")
    monkeypatch.setitem(sys.modules, "pymilvus", None)
    with pytest.raises(MissingDependencyError, match=r"embedsae\[milvus\]"):
        build_index(ws, backend="milvus")


def test_a_dropped_collection_says_to_rebuild(pair, tmp_path):
    _, mws, _ = pair
    dst = tmp_path / "gone"
    shutil.copytree(mws.path, dst)
    ws = Workspace.open(dst)
    settings = MilvusSettings(uri=str(tmp_path / "own.db"), collection="gone_soon")
    build_index(ws, lexical=False, backend="milvus", milvus=settings)
    pointer = read_pointer(ws, ws.resolve_sae(None))
    from embedsae.search.milvus import client

    client(pointer["resolved_uri"]).drop_collection("gone_soon")
    with pytest.raises(WorkspaceError, match="is gone; rebuild the index"):
        Searcher(ws).retriever("concept")
