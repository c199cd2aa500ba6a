"""The concept index's search on real Cranfield vectors: every document is scored exactly (the cosine with its SAE
reconstruction, or with the residual sketch an estimate of the cosine with the document), a large index scores
the candidates of its one-bit first pass, and the compiled loops rank as NumPy."""

from __future__ import annotations

import shutil
from dataclasses import replace
from unittest import mock

import numpy as np
import pytest
import torch

from embedsae import pipeline
from embedsae.search import ConceptIndex, ConceptSettings, build_index, prefilter
from embedsae.search.compress import residual_lut
from embedsae.search.concept import encode_query, sae_arrays
from embedsae.search.concept_kernel import available, top_docs, top_docs_numpy
from embedsae.search.index import concept_path
from embedsae.search.prefilter import available as prefilter_available
from embedsae.workspace import Workspace

from .conftest import shared_path


@pytest.fixture(scope="module")
def cran(cranfield_ws, tmp_path_factory):
    """Cranfield with a small SAE (k 16, 1,024 latents) and its concept index."""
    dst = tmp_path_factory.mktemp("concept") / "cran"
    shutil.copytree(cranfield_ws.path, dst)
    ws = Workspace.open(dst)
    pipeline.train(ws, k=16, latents=1024, epochs=10, evaluate=False)
    build_index(ws, parts=["concept"])
    return ws


@pytest.fixture(scope="module")
def setup(cran, embedder):
    from embedsae.data.readers import read_beir

    sae = cran.load_sae()
    index = ConceptIndex.load(concept_path(cran, cran.resolve_sae()))
    texts = read_beir(shared_path("cranfield")).queries["text"].astype(str).tolist()
    return sae, index, embedder.embed(texts)


def reconstructions(sae, index: ConceptIndex) -> np.ndarray:
    with torch.no_grad():
        return sae.decode_sparse(torch.from_numpy(index.fwd_indices.astype(np.int64)),
                                 torch.from_numpy(index.fwd_values)).numpy()


def test_concept_search_is_exhaustive(setup, cran):
    """All 225 queries, every document scored: without the residual sketch the top 10 and scores are those of the
    cosine with every document's reconstruction; with it (the default), of q . R + the sketch's estimate, an
    estimate of the cosine with the document itself."""
    sae, index, queries = setup
    assert index.prefilter is None and index.n_docs <= index.settings.exact_docs and index.uses_residual
    arrays = sae_arrays(sae)
    recon = reconstructions(sae, index)
    docs = np.asarray(cran.embeddings, np.float32)
    docs = docs / np.linalg.norm(docs, axis=1, keepdims=True)
    signs = np.unpackbits(index.residual[0], axis=1, bitorder="little")[:, : docs.shape[1]] * 2.0 - 1.0
    plain = ConceptIndex(index.fwd_indices, index.fwd_values, index.n_latents, index.doc_norms,
                         replace(index.settings, residual=False))
    errors = []
    for q in queries:
        for ix, expected in ((plain, recon @ q / np.linalg.norm(recon, axis=1)),
                             (index, recon @ q + index.residual[1].astype(np.float32) * (signs @ q))):
            rows, scores = ix.search(encode_query(sae, q, ix.settings, arrays), 10)
            np.testing.assert_allclose(scores, expected[rows], rtol=1e-4, atol=1e-5)
            best = np.sort(expected)[::-1][:10]
            np.testing.assert_allclose(scores, best, rtol=1e-4, atol=1e-5)  # the exhaustive top 10 (ties aside)
        errors.append(np.abs(expected - docs @ q / np.linalg.norm(q)))
    assert np.mean(errors) < 0.01 and np.mean(np.abs(recon @ queries[0] / np.linalg.norm(recon, axis=1)
                                                     - docs @ queries[0] / np.linalg.norm(queries[0]))) > 0.01


def test_a_large_index_scores_the_candidates_of_its_first_pass(setup, tmp_path):
    """Forced into a first pass (exact_docs 0): its one-bit estimates follow the exact scores; the best 140 of
    them (a tenth of the documents) hold the exhaustive top 10 on most queries, and as many candidates as
    documents is the exhaustive ranking; saved and loaded, it ranks the same."""
    sae, index, queries = setup
    arrays = sae_arrays(sae)
    first = ConceptIndex.from_codes(index.fwd_indices, index.fwd_values, index.n_latents, index.doc_norms,
                                    replace(index.settings, exact_docs=0, candidates=140), decoder=arrays,
                                    residual=index.residual)
    codes = first.prefilter
    assert codes.words.shape == (6, 1400) and codes.nbytes == 1400 * (48 + 2)
    every = ConceptIndex(index.fwd_indices, index.fwd_values, index.n_latents, index.doc_norms,
                         replace(first.settings, candidates=1400), prefilter=codes, residual=index.residual)
    same, held, corr = 0, 0, []
    for q in queries:
        query = encode_query(sae, q, index.settings, arrays)
        full = index.search(query, 10)[0]
        got = first.search(query, 10)[0]
        same += int(np.array_equal(got, full))
        held += int(np.isin(full, first.scored_documents(query)).all())
        assert np.array_equal(every.search(query, 10)[0], full)
        assert len(first.search(query, 200)[0]) == 200  # a deeper search scores as many candidates as it asks for
        corr.append(np.corrcoef(codes.estimates(q), index.exact(np.arange(1400), query))[0, 1])
    assert np.median(corr) > 0.9, f"one-bit estimate vs exact score: median correlation {np.median(corr):.3f}"
    assert same == held >= 0.9 * len(queries), f"140 candidates: {same} of {len(queries)} top-10s as exhaustive"
    first.save(tmp_path / "c.npz")
    again = ConceptIndex.load(tmp_path / "c.npz")
    assert again.stored_bytes == first.stored_bytes == index.stored_bytes + codes.nbytes
    query = encode_query(sae, queries[0], index.settings, arrays)
    assert np.array_equal(again.search(query, 10)[0], first.search(query, 10)[0])


@pytest.mark.skipif(not prefilter_available(), reason="numba is unavailable")
def test_compiled_first_pass_picks_as_numpy(setup):
    """The compiled scan (one thread, and split over two) keeps the documents of the best NumPy estimates."""
    sae, index, queries = setup
    first = ConceptIndex.from_codes(index.fwd_indices, index.fwd_values, index.n_latents, index.doc_norms,
                                    replace(index.settings, exact_docs=0), decoder=sae_arrays(sae),
                                    residual=index.residual)
    codes = first.prefilter
    for q in queries[::20]:
        est = codes.estimates(q)
        for split in (False, True):
            with mock.patch.object(prefilter, "_SPLIT_DOCS", 100 if split else 10**9):
                got = codes.candidates(q, 50)
            assert len(got) == 50 and np.all(np.diff(got) > 0)
            assert np.sort(est[got])[0] >= np.sort(est)[::-1][49] - 1e-5  # the 50 largest estimates (ties aside)


@pytest.mark.skipif(not available(), reason="numba is unavailable")
def test_compiled_loop_ranks_as_numpy(setup):
    sae, index, queries = setup
    arrays = sae_arrays(sae)
    for settings in (index.settings, replace(index.settings, residual=False), ConceptSettings(scoring="bm25")):
        ix = ConceptIndex(index.fwd_indices, index.fwd_values, index.n_latents, index.doc_norms, settings,
                          residual=index.residual)
        for q in queries[::15]:
            query = encode_query(sae, q, ix.settings, arrays)
            sketch = ix.uses_residual
            lut, total = residual_lut(query.vector, index.residual[0].shape[1]) if sketch else (np.zeros((0, 256)), 0.0)
            args = (ix.fwd_indices, ix.term_weights, query.dense_weights(ix.n_latents), query.offset, ix.factor,
                    np.zeros(0, np.int64), 10,
                    index.residual[0], index.residual[1].astype(np.float32), lut.astype(np.float32), total)
            r1, s1 = top_docs(*args)
            r2, s2 = top_docs_numpy(*args)
            np.testing.assert_allclose(s1, s2, rtol=1e-5, atol=1e-6)
            assert np.array_equal(r1, r2) or np.allclose(s1, s2, atol=1e-6)
            assert np.array_equal(r1, ix.search(query, 10)[0])


def test_first_pass_estimate_is_the_one_bit_formula(monkeypatch):
    """Each estimate is c (2 q' . bits - sum q) with q' the query quantised to 4 bits, c = |t|^2 / |t|_1 of the
    document's vector t; popcounts by a byte table (NumPy < 2) give the same figures."""
    rng = np.random.default_rng(7)
    t = rng.standard_normal((300, 130)).astype(np.float32)  # 130 dimensions: three words, the last partly used
    codes = prefilter.SignCodes.build(len(t), lambda rows: t[rows])
    q = rng.standard_normal(130).astype(np.float32)
    _, lo, step, total = codes.query(q)
    quantised = lo + step * np.clip(np.rint((q - lo) / step), 0, 15)
    c = np.square(t).sum(1) / np.abs(t).sum(1)
    expected = c.astype(np.float16).astype(np.float32) * (2 * ((t > 0) @ quantised) - total)
    np.testing.assert_allclose(codes.estimates(q), expected, rtol=1e-4, atol=1e-4)
    assert np.corrcoef(codes.estimates(q), t @ q)[0, 1] > 0.7
    monkeypatch.delattr(np, "bitwise_count", raising=False)
    again = prefilter.SignCodes(codes.words, codes.scale)
    assert np.array_equal(again.ones, codes.ones)
    np.testing.assert_allclose(again.estimates(q), codes.estimates(q), rtol=1e-6)
