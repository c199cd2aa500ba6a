"""Concept-query latency as the corpus grows: the embedded concept index against exact dense search, same run.

Synthetic but shaped like real codes: 384-d document vectors drawn around 2,000 cluster centres, a 3,072-latent
decoder of unit rows, and per document 32 latents whose popularity follows a Zipf law (a few latents fire
often, most rarely), activations exponential. Queries are held-out documents of the same clusters. For each
corpus size it prints the index build time, bytes per document (stored and in memory), and median query
latency of concept search (projection scoring, re-ranking 200, query expansion on as by default) and exact dense
search, with their ratio. `--milvus` adds Milvus Lite at the smallest size (write time and query latency).

    python benchmarks/concept_scale.py --sizes 100000 1000000
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd

from embedsae.search.concept import ConceptIndex, ConceptQuery, ConceptSettings
from embedsae.search.dense import DenseIndex

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
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    srt = np.argsort(lat, axis=1)  # a latent drawn twice for one document keeps one activation
    dup = np.zeros_like(swap)
    dup[:, 1:] = np.diff(np.take_along_axis(lat, srt, 1), axis=1) == 0
    np.put_along_axis(val, srt, np.where(dup, 0.0, np.take_along_axis(val, srt, 1)), 1)
    order = np.argsort(-val, axis=1)
    return vectors, W, b_pre, np.take_along_axis(lat, order, 1), np.take_along_axis(val, order, 1)


def encode(q: np.ndarray, W: np.ndarray, b_pre: np.ndarray, settings: ConceptSettings) -> ConceptQuery:
    proj = W @ q
    lat = np.argpartition(-proj, settings.query_k - 1)[: settings.query_k]
    lat = lat[proj[lat] > 0]
    return ConceptQuery(lat.astype(np.int64), proj[lat], float(q @ b_pre), proj)


def concept_query(index: ConceptIndex, q: np.ndarray, W: np.ndarray, b_pre: np.ndarray, k: int = 10):
    """As ConceptRetriever.rank_vector: a first pass, query expansion from its top documents, the final pass."""
    s = index.settings
    top, _ = index.search(encode(q, W, b_pre, s), s.feedback_docs)
    feedback = index.reconstruct(top, W, b_pre).mean(0)
    return index.search(encode(q + s.feedback_weight * feedback, W, b_pre, s), k)


def median_ms(fn, queries: np.ndarray) -> float:
    times = []
    for q in queries:
        t = time.perf_counter()
        fn(q)
        times.append(time.perf_counter() - t)
    return 1000 * statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    ap.add_argument("--queries", type=int, default=50)
    ap.add_argument("--milvus", action="store_true", help="also Milvus Lite at the smallest size")
    args = ap.parse_args()
    print(f"{'docs':>10} {'build s':>8} {'stored B/doc':>12} {'memory B/doc':>12} {'concept ms':>10} "
          f"{'dense ms':>9} {'dense/concept':>13}")
    for n in args.sizes:
        measure(n, args.queries, args.milvus and n == min(args.sizes))


def measure(n: int, n_queries: int, with_milvus: bool) -> None:
    """One table row: build the embedded index over n documents and time both searches."""
    from embedsae.threads import blas_single_thread

    vectors, W, b_pre, lat, val = synthetic(n + n_queries)
    queries, vectors, lat, val = vectors[n:], vectors[:n], lat[:n], val[:n]
    t = time.perf_counter()
    stored = val.astype(np.float16).astype(np.float32)  # the activations the index keeps
    norms = np.concatenate([np.linalg.norm(np.einsum("nk,nkd->nd", stored[a:a + 65536], W[lat[a:a + 65536]]) + b_pre,
                                           axis=1) for a in range(0, n, 65536)])
    index = ConceptIndex.from_codes(lat, val, LATENTS, norms, ConceptSettings())
    build = time.perf_counter() - t
    dense = DenseIndex(vectors)
    with blas_single_thread():
        c_ms = median_ms(lambda q: concept_query(index, q, W, b_pre), queries)
        d_ms = median_ms(lambda q: dense.search(q[None, :], 10), queries)
    print(f"{n:>10,} {build:>8.2f} {index.stored_bytes / n:>12.1f} {index.memory_bytes / n:>12.1f} {c_ms:>10.2f} "
          f"{d_ms:>9.2f} {d_ms / c_ms:>12.2f}x")
    if with_milvus:
        milvus_row(n, index, lat, val, norms, vectors, queries, W, b_pre)


def milvus_row(n, index, lat, val, norms, vectors, queries, W, b_pre) -> None:
    """Milvus Lite: the same documents written through the backend's writer, queried through its index class."""
    from embedsae._io import read_json
    from embedsae.search.milvus import MilvusConceptIndex, MilvusSettings, write_collection

    folder = tempfile.mkdtemp(prefix="concept-scale-")
    try:
        ws = SimpleNamespace(path=Path(folder), dim=DIM, n_documents=n, embeddings=vectors,
                             corpus=pd.DataFrame({"id": np.arange(n).astype(str)}), sae_dir=lambda name: Path(folder))
        ctx = SimpleNamespace(ws=ws, sae="bench", concept=index.settings, parts=("concept", "dense"),
                              milvus=MilvusSettings(batch_rows=4096), progress=None)
        t = time.perf_counter()
        write_collection(ctx, lat, val, norms, LATENTS)
        write_s = time.perf_counter() - t
        milvus = MilvusConceptIndex(ws, read_json(Path(folder) / "concept_index.milvus.json"))
        same = 0
        for q in queries:
            a, _ = concept_query(index, q, W, b_pre)
            b, _ = concept_query(milvus, q, W, b_pre)
            same += int(np.array_equal(a, b))
        m_ms = median_ms(lambda q: concept_query(milvus, q, W, b_pre), queries)
        print(f"{'milvus-lite':>10} {n:,} documents: written in {write_s:.1f}s, concept query {m_ms:.2f} ms median, "
              f"same top-10 as the embedded index for {same}/{len(queries)} queries")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
