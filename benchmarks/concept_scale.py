"""Concept-query latency as the corpus grows: the default concept query against the exhaustive computation, the
previous default and exact dense search, in the same run.

Synthetic but shaped like real codes: 384-d document vectors drawn around 2,000 cluster centres, a 3,072-latent
decoder of unit rows, and per document 32 latents whose popularity follows a Zipf law (a few latents fire
often, most rarely), activations exponential. Queries are held-out documents of the same clusters. For each
corpus size it prints the index build time (the first pass's codes included above `exact_docs`), bytes per document
(stored and in memory) and median query latency (one thread) of:

- default: `ConceptIndex.search` with the default settings (exact scores, the residual sketch included, of
  every document up to `exact_docs`, else of the `candidates` best documents of the one-bit first pass);
- exhaustive: the same compiled scoring over every document (the exact top 10 the default is checked against:
  "same top-10" is the share of queries whose default top 10 equals it, in order);
- before: the previous default (posting lists of the query's 64 strongest latents read with NumPy, 200
  candidates rescored by the cosine with their reconstruction, a second pass expanded by 5 feedback
  documents; "before same" compares it with the exhaustive top 10 of today's score, which it does not compute);
- exact dense search over the float32 vectors.

`--milvus` adds Milvus Lite at the smallest size (write time, query latency, agreement with the embedded index).

    python benchmarks/concept_scale.py --sizes 100000 1000000
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd

from embedsae.search.compress import reconstructions, stored_values
from embedsae.search.concept import ConceptIndex, ConceptQuery, ConceptSettings
from embedsae.search.dense import DenseIndex, top_k

DIM, LATENTS, DOC_K, CLUSTERS = 384, 3072, 32, 2000


def synthetic(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(unit document vectors, decoder, b_pre, latent ids, activations) for n documents."""
    rng = np.random.default_rng(seed)
    W = rng.standard_normal((LATENTS, DIM)).astype(np.float32)
    W /= np.linalg.norm(W, axis=1, keepdims=True)
    b_pre = (0.01 * rng.standard_normal(DIM)).astype(np.float32)
    popularity = 1.0 / np.arange(1, LATENTS + 1) ** 0.8
    popularity /= popularity.sum()
    cluster_latents = np.stack([rng.choice(LATENTS, DOC_K, replace=False, p=popularity) for _ in range(CLUSTERS)])
    cluster = rng.integers(0, CLUSTERS, n)
    lat = cluster_latents[cluster].copy()
    swap = rng.random((n, DOC_K)) < 0.25  # a quarter of each document's latents are its own
    lat[swap] = rng.choice(LATENTS, int(swap.sum()), p=popularity)
    val = rng.exponential(1.0, (n, DOC_K)).astype(np.float32)
    vectors = np.empty((n, DIM), np.float32)
    for a in range(0, n, 65536):
        b = min(a + 65536, n)
        vectors[a:b] = np.einsum("nk,nkd->nd", val[a:b], W[lat[a:b]]) + b_pre
    scale = np.linalg.norm(vectors, axis=1, keepdims=True)
    vectors /= scale
    val /= scale  # as a trained SAE's codes: they reconstruct the unit vector (up to b_pre), not a multiple of it
    srt = np.argsort(lat, axis=1)  # a latent drawn twice for one document keeps one activation
    dup = np.zeros_like(swap)
    dup[:, 1:] = np.diff(np.take_along_axis(lat, srt, 1), axis=1) == 0
    np.put_along_axis(val, srt, np.where(dup, 0.0, np.take_along_axis(val, srt, 1)), 1)
    order = np.argsort(-val, axis=1)
    return vectors, W, b_pre, np.take_along_axis(lat, order, 1), np.take_along_axis(val, order, 1)


def encode(q: np.ndarray, W: np.ndarray, b_pre: np.ndarray, settings: ConceptSettings) -> ConceptQuery:
    """As `encode_query` with projection scoring."""
    proj = W @ q
    lat = np.argpartition(-proj, settings.query_k - 1)[: settings.query_k]
    lat = lat[proj[lat] > 0]
    return ConceptQuery(lat.astype(np.int64), proj[lat], float(q @ b_pre), proj, q)


class Before:
    """The previous default concept query: posting lists in document order read with NumPy (`bincount` over every
    document), the best 200 rescored exactly, and a second pass expanded by the top 5 documents."""

    def __init__(self, index: ConceptIndex, W: np.ndarray, b_pre: np.ndarray) -> None:
        self.index, self.W, self.b_pre = index, W, b_pre
        n, k = index.fwd_indices.shape
        lat = index.fwd_indices.ravel().astype(np.int64)
        val = index.fwd_values.ravel()
        keep = val > 0
        rows = np.repeat(np.arange(n, dtype=np.int32), k)[keep]
        lat, val = lat[keep], val[keep]
        order = np.argsort(lat, kind="stable")
        self.indptr = np.zeros(LATENTS + 1, np.int64)
        np.cumsum(np.bincount(lat, minlength=LATENTS), out=self.indptr[1:])
        self.doc_ids, self.weights = rows[order], val[order].astype(np.float16)
        self.settings = ConceptSettings(feedback_docs=5, feedback_weight=0.5)

    def search(self, cq: ConceptQuery, k: int) -> np.ndarray:
        ix = self.index
        starts, ends = self.indptr[cq.latents], self.indptr[cq.latents + 1]
        sl = [slice(a, b) for a, b in zip(starts.tolist(), ends.tolist()) if b > a]
        lens = ends - starts
        docs = np.concatenate([self.doc_ids[s] for s in sl])
        contrib = np.concatenate([self.weights[s] for s in sl]) * np.repeat(cq.weights[lens > 0], lens[lens > 0])
        scores = np.bincount(docs, weights=contrib, minlength=ix.n_docs).astype(np.float32)
        scores += np.float32(cq.offset)
        scores *= ix.inv_norms
        cand = top_k(scores[None, :], max(k, 200))[0][0]
        idx, val, inv = ix.forward(cand)
        exact = ((cq.full_weights[idx] * val).sum(1) + cq.offset) * inv  # the cosine with the reconstruction
        return cand[np.argsort(-exact, kind="stable")[:k]]

    def __call__(self, q: np.ndarray) -> np.ndarray:
        top = self.search(encode(q, self.W, self.b_pre, self.settings), 5)
        feedback = self.index.reconstruct(top, self.W, self.b_pre).mean(0)
        return self.search(encode(q + 0.5 * feedback, self.W, self.b_pre, self.settings), 10)


def timed(fn, queries: np.ndarray) -> tuple[float, list[np.ndarray]]:
    """Median milliseconds per query and the rankings."""
    times, out = [], []
    for q in queries:
        t = time.perf_counter()
        out.append(fn(q))
        times.append(time.perf_counter() - t)
    return 1000 * statistics.median(times), out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    ap.add_argument("--queries", type=int, default=100)
    ap.add_argument("--milvus", action="store_true", help="also Milvus Lite at the smallest size")
    ap.add_argument("--no-before", action="store_true", help="skip the previous default (slow at 1 M)")
    args = ap.parse_args()
    print(f"{'docs':>10} {'build s':>8} {'stored B/doc':>12} {'memory B/doc':>12} {'default ms':>10} "
          f"{'exhaustive ms':>13} {'before ms':>9} {'dense ms':>8} {'same top-10':>11} {'before same':>11}")
    for n in args.sizes:
        measure(n, args.queries, args.milvus and n == min(args.sizes), not args.no_before)
    with open("/proc/loadavg") as f:
        print(f"load average: {f.read().split()[:3]}")


def measure(n: int, n_queries: int, with_milvus: bool, before: bool) -> None:
    """One table row: build the embedded index over n documents and time every search."""
    from embedsae.threads import blas_single_thread

    vectors, W, b_pre, lat, val = synthetic(n + n_queries)
    queries, vectors, lat, val = vectors[n:], vectors[:n], lat[:n], val[:n]
    val = stored_values(val)  # the activations the index keeps
    norms = np.concatenate([np.linalg.norm(reconstructions(lat[a:a + 65536], val[a:a + 65536], W, b_pre), axis=1)
                            for a in range(0, n, 65536)])
    settings = ConceptSettings()
    t = time.perf_counter()
    index = ConceptIndex.from_codes(lat, val, LATENTS, norms, settings, decoder=(W, b_pre), vectors=vectors)
    build = time.perf_counter() - t
    every = ConceptIndex(index.fwd_indices, None, LATENTS, norms, replace(settings, exact_docs=n),
                         quantized=(index.fwd_codes, index.doc_scale), residual=index.residual)
    dense = DenseIndex(vectors)
    with blas_single_thread():
        default_ms, got = timed(lambda q: index.search(encode(q, W, b_pre, settings), 10)[0], queries)
        exact_ms, truth = timed(lambda q: every.search(encode(q, W, b_pre, settings), 10)[0], queries)
        b_ms, b_got = timed(Before(index, W, b_pre), queries) if before else (float("nan"), truth)
        d_ms, _ = timed(lambda q: dense.search(q[None, :], 10), queries)
    same = np.mean([np.array_equal(a, b) for a, b in zip(got, truth)])
    b_same = np.mean([np.array_equal(a, b) for a, b in zip(b_got, truth)])
    print(f"{n:>10,} {build:>8.2f} {index.stored_bytes / n:>12.1f} {index.memory_bytes / n:>12.1f} {default_ms:>10.2f} "
          f"{exact_ms:>13.2f} {b_ms:>9.2f} {d_ms:>8.2f} {same:>11.1%} {b_same:>11.1%}")
    if with_milvus:
        milvus_row(n, index, lat, val, norms, vectors, queries, W, b_pre)


def milvus_row(n, index, lat, val, norms, vectors, queries, W, b_pre) -> None:
    """Milvus Lite: the same documents written through the backend's writer, queried through its index class."""
    from embedsae._io import read_json
    from embedsae.search.concept import DocumentCodes
    from embedsae.search.milvus import MilvusConceptIndex, MilvusSettings, write_collection

    folder = tempfile.mkdtemp(prefix="concept-scale-")
    try:
        ws = SimpleNamespace(path=Path(folder), dim=DIM, n_documents=n, embeddings=vectors,
                             corpus=pd.DataFrame({"id": np.arange(n).astype(str)}), sae_dir=lambda name: Path(folder))
        ctx = SimpleNamespace(ws=ws, sae="bench", concept=index.settings, parts=("concept", "dense"),
                              milvus=MilvusSettings(batch_rows=4096), progress=None)
        t = time.perf_counter()
        write_collection(ctx, DocumentCodes(lat, val, norms, LATENTS, index.residual))
        write_s = time.perf_counter() - t
        milvus = MilvusConceptIndex(ws, read_json(Path(folder) / "concept_index.milvus.json"))
        settings = index.settings
        same = sum(int(np.array_equal(index.search(encode(q, W, b_pre, settings), 10)[0],
                                      milvus.search(encode(q, W, b_pre, settings), 10)[0])) for q in queries)
        m_ms, _ = timed(lambda q: milvus.search(encode(q, W, b_pre, settings), 10), queries)
        print(f"{'milvus-lite':>10} {n:,} documents: written in {write_s:.1f}s, concept query {m_ms:.2f} ms median, "
              f"same top-10 as the embedded index for {same}/{len(queries)} queries")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
