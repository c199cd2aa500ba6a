"""Fast checks of the family-finding pieces on small hand-built inputs (no fixtures, no model)."""

from __future__ import annotations

import numpy as np
import pytest

from embedsae.errors import InputError
from embedsae.sae.codes import Codes
from embedsae.structure.cooccurrence import activation_correlation, cooccurrence
from embedsae.structure.families import Family, FamilySettings, deduplicate, oriented_tree, tree_families
from embedsae.structure.labels import family_label


def _codes(rows: list[list[tuple[int, float]]], n_latents: int, k: int = 3) -> Codes:
    idx = np.zeros((len(rows), k), np.int32)
    val = np.zeros((len(rows), k), np.float32)
    for r, row in enumerate(rows):
        for j, (f, v) in enumerate(row):
            idx[r, j], val[r, j] = f, v
    return Codes(idx, val, n_latents)


@pytest.mark.parametrize("block", [64, 65536])
def test_cooccurrence_counts_match_dense_products(block, monkeypatch):
    """Counts summed block by block of documents (64: four blocks, the last a partial one) equal the dense products."""
    from embedsae.structure import cooccurrence as cooc_mod

    monkeypatch.setattr(cooc_mod, "BLOCK_ROWS", block)
    rng = np.random.default_rng(1)
    rows = [[(int(f), float(rng.uniform(0.1, 2))) for f in rng.choice(12, 3, replace=False)] for _ in range(200)]
    codes = _codes(rows, 12)
    dense = np.zeros((200, 12))
    for r, row in enumerate(rows):
        for f, v in row:
            dense[r, f] = v
    onehot = (dense > 0).astype(float)
    co = cooccurrence(codes)
    np.testing.assert_array_equal(co.counts.toarray(), onehot.T @ onehot)
    np.testing.assert_array_equal(co.freq, onehot.sum(0))
    norm = co.normalised().toarray()
    i, j = 2, 7
    assert norm[i, j] == pytest.approx((onehot[:, i] @ onehot[:, j]) / (min(onehot[:, i].sum(), onehot[:, j].sum()) + 1))
    assert np.all(np.diag(norm) == 0)
    corr = activation_correlation(codes, 4)
    np.testing.assert_allclose(corr, [np.corrcoef(dense[:, 4], dense[:, c])[0, 1] for c in range(12)], atol=1e-5)


def test_stored_activation_statistics_and_counts_are_the_computed_ones(tmp_path):
    """What the stages store for the app (feature-major codes, co-occurrence counts) reads back memory-mapped and
    answers as the statistics computed from the codes do."""
    from embedsae.structure.cooccurrence import ActivationStats, Cooccurrence

    rng = np.random.default_rng(2)
    rows = [[(int(f), float(rng.uniform(0.1, 2))) for f in rng.choice(12, 3, replace=False)] for _ in range(300)]
    codes = _codes(rows, 12)
    fresh = ActivationStats(codes)
    fresh.save(tmp_path / "a.npz", "k")
    from embedsae._io import load_npz

    z = load_npz(tmp_path / "a.npz")
    again = ActivationStats(codes, z["indptr"], z["docs"], z["acts"], z["sums"], z["sq"])
    for f in range(12):
        for a, b in zip(fresh.column(f), again.column(f)):
            np.testing.assert_array_equal(a, b)
        np.testing.assert_allclose(again.correlation(f), fresh.correlation(f), atol=1e-9)
    co = cooccurrence(codes)
    co.save(tmp_path / "c.npz", "k")
    with np.load(tmp_path / "c.npz") as z:
        import scipy.sparse as sp

        back = Cooccurrence(sp.csr_matrix((z["data"], z["indices"], z["indptr"]), shape=(12, 12)), z["freq"], int(z["n_docs"]))
    np.testing.assert_array_equal(back.counts.toarray(), co.counts.toarray())
    assert back.n_docs == 300 and np.array_equal(back.freq, co.freq)


def test_tree_families_follow_the_seed_rules():
    # 0 -> 1,2,3 ; 1 -> 4,5,6 ; 2 -> 7 ; 8 -> 9,10 (only two children: no family)
    children = {0: [1, 2, 3], 1: [4, 5, 6], 2: [7], 8: [9, 10]}
    found = {p: (sorted(d), tp) for p, d, tp in tree_families(children, min_root_children=3)}
    assert set(found) == {0, 1}
    assert found[0][0] == [1, 2, 3, 4, 5, 6, 7]
    assert found[1][0] == [4, 5, 6]


def test_oriented_tree_points_from_dense_to_sparse():
    # feature 0 fires everywhere it co-occurs: it should be the parent of 1, 2, 3
    rows = [[(0, 1.0), (1, 1.0)]] * 5 + [[(0, 1.0), (2, 1.0)]] * 5 + [[(0, 1.0), (3, 1.0)]] * 5 + [[(4, 1.0)]] * 3
    co = cooccurrence(_codes(rows, 5, k=2))
    tree = oriented_tree(co, np.arange(5), threshold=0.1)
    assert tree == {0: [1, 2, 3]}


def test_deduplicate_keeps_the_larger_of_overlapping_families():
    a = Family(parent=0, children=[1, 2, 3, 4, 5], tree_parent=[0] * 5)
    b = Family(parent=9, children=[1, 2, 3, 4], tree_parent=[9] * 4)  # Jaccard 0.8 with a
    c = Family(parent=10, children=[4, 5, 11, 12], tree_parent=[10] * 4)  # Jaccard 2/7 with a
    kept = deduplicate([b, c, a], max_jaccard=0.6)
    assert [f.parent for f in kept] == [0, 10]


def test_bad_settings_are_rejected_with_the_name():
    with pytest.raises(InputError, match="threshold"):
        FamilySettings(threshold=1.5)
    with pytest.raises(InputError, match="rounds"):
        FamilySettings(rounds=0)


def test_family_label_joins_parent_and_shared_child_terms():
    label = family_label("neural networks", ["graph neural networks", "graph kernels", "image segmentation",
                                             "image classification"])
    assert label.startswith("neural networks [")
    assert "graph" in label and "image" in label


def test_families_is_a_run_stage():
    from embedsae import pipeline
    from embedsae.structure.stage import families_stage

    assert families_stage in list(pipeline.run_stages())


def test_activation_statistics_with_dead_features_at_either_end():
    """Features that never fire, first, in the middle and last (an SAE's trailing latents often are dead), get zero
    sums; the others the sums of their activations."""
    from embedsae.structure.cooccurrence import ActivationStats

    rng = np.random.default_rng(5)
    rows = [[(int(f), float(rng.uniform(0.1, 2))) for f in rng.choice([1, 2, 4, 5, 6], 2, replace=False)]
            for _ in range(50)]
    codes = _codes(rows, 9)  # features 0, 3, 7 and 8 never fire
    dense = np.zeros((50, 9))
    for r, pairs in enumerate(rows):
        for f, v in pairs:
            dense[r, f] = v
    stats = ActivationStats(codes)
    np.testing.assert_allclose(stats.sums, dense.sum(0), rtol=1e-6)
    np.testing.assert_allclose(stats.sq, (dense ** 2).sum(0), rtol=1e-6)
    assert stats.sums[[0, 3, 7, 8]].tolist() == [0.0] * 4
