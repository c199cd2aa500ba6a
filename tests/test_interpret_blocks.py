"""Interpretation of a corpus read block by block gives what the in-memory path gives."""

import numpy as np
import pytest

from embedsae.data.vectors import ArraySource, UnitRows, unit
from embedsae.interpret.examples import ExampleConfig, select_examples
from embedsae.interpret.hard import NearestDocuments


def _brute_force(docs: np.ndarray, rows: np.ndarray, excluded: np.ndarray) -> np.ndarray:
    out = []
    for r in rows:
        sims = docs @ docs[r]
        sims[excluded] = -np.inf
        out.append(int(np.argmax(sims)))
    return np.asarray(out)


def test_nearest_documents_by_block_equal_brute_force() -> None:
    """Each row's nearest document outside an excluded set, from the kept neighbours or, when all of them are
    excluded, by a scan of the whole pool: the same on vectors in memory and read block by block."""
    rng = np.random.default_rng(1)
    docs = unit(rng.standard_normal((500, 16)))
    lazy = UnitRows(ArraySource(docs, shard_rows=130), chunk_rows=37)
    for source in (docs, lazy):
        near = NearestDocuments(source, k=8)
        for _ in range(6):
            active = np.sort(rng.choice(500, 40, replace=False))
            rows = active[:10]
            np.testing.assert_array_equal(near.nearest_outside(rows, active), _brute_force(docs, rows, active))
        # exclude a row's 8 kept neighbours: the answer comes from the scan
        row = np.array([3])
        excluded = np.sort(near.neighbours(row)[0])
        before = near.fallbacks
        np.testing.assert_array_equal(near.nearest_outside(row, excluded), _brute_force(docs, row, excluded))
        assert near.fallbacks == before + 1


def test_nearest_documents_search_a_bounded_sample_of_a_large_corpus() -> None:
    rng = np.random.default_rng(2)
    docs = unit(rng.standard_normal((400, 8)))
    near = NearestDocuments(docs, k=4, pool=100)
    assert len(near.pool_rows) == 100 and near.pool_vecs.shape == (100, 8)
    got = near.nearest_outside(np.arange(20), np.arange(20))
    assert set(got.tolist()) <= set(near.pool_rows.tolist())
    outside = np.setdiff1d(near.pool_rows, np.arange(20))
    want = outside[np.argmax(docs[:20] @ docs[outside].T, axis=1)]
    np.testing.assert_array_equal(got, want)


@pytest.mark.slow
def test_interpret_by_block_gives_the_in_memory_labels(cranfield_ws, copy_ws, tmp_path):
    """A small SAE on Cranfield, interpreted twice: unit vectors in memory, and read block by block
    (`in_memory_bytes` 0). The hard negatives are identical and the labels and scores the same."""
    import shutil

    from embedsae import pipeline
    from embedsae.interpret.stage import interpret
    from embedsae.interpret.store import FeatureStore, db_path
    from embedsae.sae.codes import workspace_codes
    from embedsae.workspace import Workspace

    ws = copy_ws(cranfield_ws)
    pipeline.train(ws, k=8, latents=128, epochs=5, evaluate=False)
    csc = workspace_codes(ws, save=True).to_csr().tocsc()
    feats = np.flatnonzero(np.diff(csc.indptr))[:20]
    a = select_examples(csc, feats, unit(ws.embeddings), ExampleConfig())
    b = select_examples(csc, feats, UnitRows(ws.vectors, chunk_rows=300), ExampleConfig())
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x.hard_neg, y.hard_neg)
        np.testing.assert_array_equal(x.heldout_hard, y.heldout_hard)
    shutil.copytree(ws.path, tmp_path / "by-block")
    other = Workspace.open(tmp_path / "by-block")
    name = ws.resolve_sae(None)
    interpret(ws, name, max_features=24)
    interpret(other, name, max_features=24, in_memory_bytes=0)
    t1 = FeatureStore.read(db_path(ws.sae_dir(name))).table().set_index("id")
    t2 = FeatureStore.read(db_path(other.sae_dir(name))).table().set_index("id")
    t1, t2 = t1[t1["status"] == "done"], t2[t2["status"] == "done"]
    assert len(t1) == len(t2) >= 20
    same = (t1["label"] == t2["label"]).mean()
    assert same >= 0.9, f"only {same:.0%} of the labels agree"
    both = t1.index[t1["label"] == t2["label"]]
    np.testing.assert_allclose(t2.loc[both, "embedding_auc"], t1.loc[both, "embedding_auc"], atol=1e-6)
