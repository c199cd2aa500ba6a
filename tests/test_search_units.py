"""Search parts that need no trained SAE: exact and approximate dense search on real vectors, fusion maths,
steering specs and hybrid weights."""

from __future__ import annotations

import numpy as np
import pytest

from embedsae.data.embedders import l2_normalise
from embedsae.errors import InputError
from embedsae.search.dense import DenseIndex, top_k
from embedsae.search.hybrid import parse_weights, rrf, score_fusion
from embedsae.search.steering import parse_spec


@pytest.fixture(scope="module")
def cran_vectors(cranfield_ws) -> np.ndarray:
    return np.asarray(cranfield_ws.embeddings, np.float32)


def test_dense_exact_matches_brute_force_across_chunks(cran_vectors):
    queries = cran_vectors[[3, 500, 1399]] + 0.01
    truth = l2_normalise(queries) @ l2_normalise(cran_vectors).T
    index = DenseIndex(cran_vectors, chunk_rows=97)  # 15 chunks: the running top-k must merge them
    rows, scores = index.search(queries, 10)
    for q in range(len(queries)):
        expected = np.argsort(-truth[q])[:10]
        assert rows[q].tolist() == expected.tolist()
        np.testing.assert_allclose(scores[q], truth[q, expected], rtol=1e-5, atol=1e-6)
    assert rows[0, 0] == 3 and rows[1, 0] == 500 and rows[2, 0] == 1399


def test_dense_cosine_when_vectors_are_not_normalised(cran_vectors):
    scaled = cran_vectors * np.linspace(0.5, 3.0, len(cran_vectors), dtype=np.float32)[:, None]
    rows, scores = DenseIndex(scaled, normalized=False).search(cran_vectors[7], 5)
    plain_rows, plain_scores = DenseIndex(cran_vectors).search(cran_vectors[7], 5)
    assert rows.tolist() == plain_rows.tolist()
    np.testing.assert_allclose(scores, plain_scores, rtol=1e-4)


def test_dense_rejects_wrong_dimension(cran_vectors):
    with pytest.raises(InputError, match="384-d"):
        DenseIndex(cran_vectors).search(np.ones((1, 50), np.float32), 3)


def test_ann_index_recall_against_exact(cran_vectors, tmp_path):
    pytest.importorskip("usearch")
    from embedsae.search.dense import AnnIndex

    AnnIndex.build(cran_vectors).save(tmp_path / "dense.usearch")
    ann = AnnIndex.load(tmp_path / "dense.usearch")
    queries = cran_vectors[::70] + 0.02
    exact_rows, _ = DenseIndex(cran_vectors).search(queries, 10)
    ann_rows, ann_scores = ann.search(queries, 10)
    recall = np.mean([len(set(a) & set(e)) / 10 for a, e in zip(ann_rows.tolist(), exact_rows.tolist())])
    assert recall >= 0.9
    assert np.all(np.diff(ann_scores, axis=1) <= 1e-5)  # best first


def test_top_k_sorted_and_clipped():
    scores = np.array([[0.1, 0.9, 0.5, 0.7]], np.float32)
    rows, vals = top_k(scores, 10)
    assert rows[0].tolist() == [1, 3, 2, 0]
    assert vals[0].tolist() == sorted(scores[0].tolist(), reverse=True)


def test_rrf_and_score_fusion():
    fused = rrf({"a": np.array([2, 0]), "b": np.array([0, 1])}, {"a": 1.0, "b": 2.0}, n_docs=4, k=60)
    assert fused[0] == pytest.approx(1 / 62 + 2 / 61)
    assert fused[2] == pytest.approx(1 / 61)
    assert fused[1] == pytest.approx(2 / 62)
    assert fused[3] == 0
    s = score_fusion({"a": np.array([0.0, 5.0, 10.0]), "b": np.array([3.0, 2.0, 1.0])}, {"a": 1.0, "b": 0.5})
    np.testing.assert_allclose(s, [0.5, 0.75, 1.0])


def test_parse_weights_errors_name_the_problem():
    assert parse_weights("dense=1, bm25=0.5", ("dense", "concept", "bm25")) == {"dense": 1.0, "bm25": 0.5}
    for bad in ("dense=x", "lexical=1", "dense=-1", "dense"):
        with pytest.raises(InputError, match="NAME=WEIGHT"):
            parse_weights(bad, ("dense", "concept", "bm25"))


def test_steering_spec_parsing():
    assert parse_spec("12=0.5") == ("12", "set", 0.5)
    assert parse_spec('"wing flutter"=+0.3') == ("wing flutter", "add", 0.3)
    assert parse_spec("shock waves = -0.25") == ("shock waves", "add", -0.25)
    assert parse_spec("7=0") == ("7", "set", 0.0)
    for bad in ("12", "=0.4", "12=much", "12=0.5x"):
        with pytest.raises(InputError, match="ID=VALUE"):
            parse_spec(bad)
