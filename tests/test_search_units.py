"""Search parts that need no trained SAE: exact and approximate dense search on real vectors, fusion maths,
steering specs and hybrid weights."""

from __future__ import annotations

import numpy as np
import pytest

from embedsae.data.embedders import l2_normalise
from embedsae.errors import InputError
from embedsae.search.dense import DenseIndex, top_k
from embedsae.search.hybrid import fuse, normalise, parse_weights
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


def test_dense_search_reads_shards_block_by_block(cran_vectors):
    """Larger than `in_memory_bytes`, the vectors stay in their source and are read shard by shard; same hits,
    also for unnormalised vectors."""
    from embedsae.data.vectors import ArraySource

    queries = cran_vectors[[3, 500, 1399]] + 0.01
    scaled = cran_vectors * np.linspace(0.5, 2.0, len(cran_vectors), dtype=np.float32)[:, None]
    for vectors, normalized in ((cran_vectors, True), (scaled, False)):
        streamed = DenseIndex(ArraySource(vectors, shard_rows=300), normalized=normalized, in_memory_bytes=0,
                              chunk_rows=128)
        assert streamed.vectors is None and len(streamed) == 1400
        rows, scores = streamed.search(queries, 10)
        want_rows, want_scores = DenseIndex(vectors, normalized=normalized).search(queries, 10)
        np.testing.assert_array_equal(rows, want_rows)
        np.testing.assert_allclose(scores, want_scores, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(streamed.scores(queries), DenseIndex(vectors, normalized=normalized).scores(queries),
                                   rtol=1e-5, atol=1e-6)


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


def test_fusions():
    a = (np.array([2, 0]), np.array([0.9, 0.5]))
    b = (np.array([0, 1]), np.array([10.0, 4.0]))
    rows, vals = fuse({"a": a, "b": b}, {"a": 1.0, "b": 2.0}, "rrf", 60)
    expected = {0: 1 / 62 + 2 / 61, 1: 2 / 62, 2: 1 / 61}
    assert rows.tolist() == sorted(expected, key=lambda d: -expected[d])
    np.testing.assert_allclose(vals, [expected[r] for r in rows.tolist()])
    # minmax: a -> {2: 1, 0: 0}, b -> {0: 1, 1: 0}; a document a part missed gets that part's lowest value
    rows, vals = fuse({"a": a, "b": b}, {"a": 1.0, "b": 0.5}, "minmax")
    assert dict(zip(rows.tolist(), vals.tolist())) == pytest.approx({0: 0.5, 1: 0.0, 2: 1.0})
    z = normalise(np.array([1.0, 2.0, 3.0]), "zscore")
    np.testing.assert_allclose(z, [-1.2247449, 0, 1.2247449], rtol=1e-6)
    d = normalise(np.array([1.0, 2.0, 3.0]), "dbsf")
    np.testing.assert_allclose(d, 0.5 + np.array([-1.2247449, 0, 1.2247449]) / 6, rtol=1e-6)
    assert normalise(np.array([2.0, 2.0]), "zscore").tolist() == [0.0, 0.0]
    with pytest.raises(InputError, match="unknown fusion"):
        normalise(np.array([1.0, 2.0]), "softmax")


def test_fusion_ties_are_broken_by_the_unclipped_scores_then_the_parts_ranks():
    # dbsf clips both of a's top two (z 6.7 and 6.0 over 50 zeros) to 1: tied; the higher unclipped score wins,
    # whatever the document numbers
    a = (np.array([7, 3, *range(10, 60)]), np.array([100.0, 90.0, *[0.0] * 50]))
    rows, vals = fuse({"a": a}, {"a": 1.0}, "dbsf")
    assert vals[0] == vals[1] == 1.0 and rows[:2].tolist() == [7, 3]
    # rrf: 1 and 2 swap ranks between a and b (equal fused score); 2's z-scores sum higher (0.59 + 1.41 against
    # 0.82 - 0.59)
    a = (np.array([1, 2, 5]), np.array([10.0, 9.0, 0.0]))
    b = (np.array([2, 1, 6]), np.array([10.0, 1.0, 0.0]))
    rows, vals = fuse({"a": a, "b": b}, {"a": 1.0, "b": 1.0}, "rrf")
    assert vals[0] == vals[1] and rows[:2].tolist() == [2, 1]
    # equal scores and z-scores: the part's own order stands
    rows, vals = fuse({"a": (np.array([9, 4]), np.array([1.0, 1.0]))}, {"a": 1.0}, "zscore")
    assert vals[0] == vals[1] and rows.tolist() == [9, 4]


def test_ranked_run_keeps_the_returned_order_of_tied_scores():
    from embedsae.search.evaluate import ranked_run

    run = ranked_run(np.array(["d0", "d1", "d2"], dtype=object), np.array([2, 0, 1]))
    assert sorted(run, key=run.get, reverse=True) == ["d2", "d0", "d1"]
    assert ranked_run(np.array(["d0"], dtype=object), np.array([], np.int64)) == {"": 0.0}


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


def test_blas_limit_is_safe_under_concurrent_searches():
    """Four threads of a started BLAS pool inside the one-thread limit at once, leaving in any order: BLAS
    stays at one thread until the last leaves, then has its own setting back."""
    import threading

    from threadpoolctl import ThreadpoolController

    from embedsae import threads

    np.ones((300, 300)) @ np.ones((300, 300))  # start the BLAS thread pool (then it ignores plain set calls)
    # the libraries that can be limited from any thread: numpy's and scipy's OpenBLAS (others loaded by other
    # packages, e.g. faiss's older OpenBLAS, only obey the thread that started their pool, and embedsae's
    # linear algebra does not run on them)
    blas = [lib for lib in ThreadpoolController().select(user_api="blas").lib_controllers
            if hasattr(lib.dynlib, "openblas_set_num_threads_local")]

    def count() -> list[int]:
        return [lib.get_num_threads() for lib in blas]

    default = count()
    if not default or max(default) < 2:
        pytest.skip("no multi-threaded BLAS here")
    inside, barrier = [], threading.Barrier(4)

    def search(delay: float) -> None:
        with threads.blas_single_thread():
            with threads.blas_single_thread():  # nested
                barrier.wait()
                threading.Event().wait(delay)
            inside.append(count())

    pool = [threading.Thread(target=search, args=(d,)) for d in (0.0, 0.05, 0.1, 0.15)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    assert inside == [[1] * len(default)] * 4
    assert threads.holders() == 0 and count() == default


def test_bm25_built_chunk_by_chunk_scores_as_bm25s(tmp_path):
    """The lexical index built from chunks of texts (bounded memory) gives bm25s's own scores for every
    Cranfield query, also after saving and loading (memory-mapped)."""
    import bm25s

    from embedsae.data.readers import read_beir
    from embedsae.search.lexical import LexicalIndex
    from tests.conftest import shared_path

    with pytest.warns(UserWarning):
        beir = read_beir(shared_path("cranfield"))
    texts = beir.corpus["text"].astype(str).tolist()
    ref = bm25s.BM25(k1=1.5, b=0.75)
    ref.index(bm25s.tokenize(texts, stopwords="en", show_progress=False), show_progress=False)
    seen = []
    ours = LexicalIndex.build((texts[i : i + 300] for i in range(0, len(texts), 300)), chunked=True,
                              on_docs=seen.append)
    assert seen == [300, 300, 300, 300, 200] and ours.n_docs == 1400
    ours.save(tmp_path / "bm25")
    loaded = LexicalIndex.load(tmp_path / "bm25")
    for q in beir.queries["text"].tolist():
        expected = LexicalIndex(ref, len(texts)).scores(q)
        np.testing.assert_allclose(ours.scores(q), expected, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(loaded.scores(q), expected, rtol=1e-5, atol=1e-5)

def test_hit_explanations_never_repeat_a_name():
    """Features that share a label are one entry of a hit's explanation, their contributions summed."""
    import numpy as np

    from embedsae.search.concept import ConceptQuery
    from embedsae.search.explain import explain_hit

    class Index:  # the one method explain_hit reads: per latent, its contribution to the document's score
        def contributions(self, doc, query):
            return {3: 0.5, 7: 0.3, 9: 0.15, 11: 0.05, 12: -0.1}

    query = ConceptQuery(latents=np.array([3, 7, 9, 12]), weights=np.ones(4))
    labels = {3: "galaxies", 7: "black holes", 9: "Galaxies", 11: "dust", 12: "galaxies"}
    got = explain_hit(Index(), 0, query, labels)
    assert [g["label"] for g in got] == ["galaxies", "black holes"]  # 11 is not among the query's latents
    assert got[0]["features"] == [3, 9] and got[0]["feature"] == 3
    assert got[0]["contribution"] == pytest.approx(0.65) and got[0]["share"] == pytest.approx(0.65 / 1.0)
    assert got[1]["features"] == [7] and got[1]["share"] == pytest.approx(0.3)
