"""Interpretation of a corpus read block by block gives what the in-memory path gives."""

import numpy as np
import pytest

from embedsae.data.vectors import ArraySource, UnitRows, unit
from embedsae.interpret.examples import ExampleConfig, _nearest, select_examples


def _brute_force(docs: np.ndarray, means: np.ndarray, excluded: list[np.ndarray], n: int) -> list[np.ndarray]:
    out = []
    for j, ex in enumerate(excluded):
        sims = docs @ means[j]
        sims[ex] = -np.inf
        order = np.argsort(-sims, kind="stable")
        out.append(order[np.isfinite(sims[order])][:n])
    return out


def test_nearest_documents_by_block_equal_brute_force() -> None:
    rng = np.random.default_rng(1)
    docs = unit(rng.standard_normal((500, 16)))
    means = rng.standard_normal((6, 16)).astype(np.float32)
    per = [dict(active=rng.choice(500, 40, replace=False), random_neg=rng.choice(500, 5), heldout_neg=np.array([j]))
           for j in range(6)]
    excluded = [np.unique(np.concatenate([p["active"], p["random_neg"], p["heldout_neg"]])) for p in per]
    lazy = UnitRows(ArraySource(docs, shard_rows=130), chunk_rows=37)
    for got, want in zip(_nearest(per, lazy, means, 12), _brute_force(docs, means, excluded, 12)):
        np.testing.assert_array_equal(got, want)
    for got, want in zip(_nearest(per, docs, means, 12), _brute_force(docs, means, excluded, 12)):
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
