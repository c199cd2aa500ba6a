"""Query latency of concept (CL-SR) search vs exact dense search on 100,000 documents.

The documents are the real documents of a workspace, repeated up to --docs rows: their SAE codes
(at the index's doc_k) and their float32 vectors, so the latent density is exactly the real one. The
queries are the real queries of a BEIR folder (embedded with the workspace's model), or, without
--beir, real document vectors. Both searches return the top 10 and run in the same process; BLAS is
limited to one thread for the concept search (as the Searcher does); the dense baseline is timed
both with one BLAS thread and with the default threads, and the faster of the two is the baseline.

    python benchmarks/search_latency.py WS [--beir ../shared/data/cranfield] [--docs 100000]

Prints medians, p95s, their ratio and the index bytes against the float32 dense matrix; then the
thread-limit study: each search timed with the per-call one-BLAS-thread limit the Searcher uses
(`embedsae.threads.blas_single_thread`) and with no limit at all, alternated in rounds, alone and
with 4 threads searching at once (medians per query).
"""

from __future__ import annotations

import argparse
import threading
import time
from contextlib import nullcontext

import numpy as np


def timed(fn, items, repeat: int = 1) -> np.ndarray:
    out = []
    for _ in range(repeat):
        for it in items:
            t = time.perf_counter()
            fn(it)
            out.append(time.perf_counter() - t)
    return 1000 * np.asarray(out)


def concurrent_ms(fn, items, threads: int) -> np.ndarray:
    """Per-query milliseconds when `threads` threads search their share of `items` at once."""
    out: list[float] = []
    lock = threading.Lock()

    def work(part):
        local = []
        for it in part:
            t = time.perf_counter()
            fn(it)
            local.append(time.perf_counter() - t)
        with lock:
            out.extend(local)

    pool = [threading.Thread(target=work, args=(items[i::threads],)) for i in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    return 1000 * np.asarray(out)


def thread_limit_study(searches: dict, queries: np.ndarray, rounds: int = 5) -> None:
    """Median query latency with the per-call BLAS limit and without any, alone and 4 threads at once."""
    from embedsae.threads import blas_single_thread

    ways = {"per-call limit (1 BLAS thread)": blas_single_thread, "no limit": nullcontext}
    print("\n| search | threads searching | per-call limit ms | no limit ms | limit / none |")
    print("| --- | --- | --- | --- | --- |")
    for name, fn in searches.items():
        for threads in (1, 4):
            times: dict[str, list] = {w: [] for w in ways}
            for _ in range(rounds):
                for way, ctx in ways.items():
                    def call(q, ctx=ctx, fn=fn):
                        with ctx():
                            fn(q)
                    times[way].append(timed(call, queries) if threads == 1 else concurrent_ms(call, queries, threads))
            med = {w: float(np.median(np.concatenate(t))) for w, t in times.items()}
            a, b = med["per-call limit (1 BLAS thread)"], med["no limit"]
            print(f"| {name} | {threads} | {a:.3f} | {b:.3f} | {a / b:.2f} |")


def main() -> None:
    from threadpoolctl import threadpool_limits

    from embedsae.sae.codes import encode_array
    from embedsae.search.concept import ConceptIndex, ConceptSettings, doc_norms, encode_query, sae_arrays
    from embedsae.search.dense import DenseIndex
    from embedsae.workspace import Workspace

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("workspace", help="a workspace with a trained SAE")
    ap.add_argument("--sae", help="SAE name (default: the latest)")
    ap.add_argument("--beir", help="BEIR folder whose queries to use (default: document vectors as queries)")
    ap.add_argument("--docs", type=int, default=100_000)
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--doc-k", type=int, default=ConceptSettings.doc_k)
    ap.add_argument("--query-k", type=int, default=ConceptSettings.query_k)
    ap.add_argument("--rerank", type=int, default=ConceptSettings.rerank)
    ap.add_argument("--rounds", type=int, default=5, help="alternated rounds of the thread-limit study")
    args = ap.parse_args()

    ws = Workspace.open(args.workspace)
    sae = ws.load_sae(args.sae)
    settings = ConceptSettings(doc_k=args.doc_k, query_k=args.query_k, rerank=args.rerank)
    vecs = np.asarray(ws.embeddings, np.float32)
    codes = encode_array(sae, vecs, k=settings.doc_k)
    norms = doc_norms(sae, codes.indices, codes.values)
    reps = -(-args.docs // len(vecs))
    rows = np.tile(np.arange(len(vecs)), reps)[: args.docs]
    index = ConceptIndex.from_codes(codes.indices[rows], codes.values[rows], sae.cfg.n_latents, norms[rows], settings)
    dense = DenseIndex(np.ascontiguousarray(vecs[rows]))
    if args.beir:
        from embedsae.data.readers import read_beir

        texts = read_beir(args.beir).queries["text"].astype(str).tolist()[: args.queries]
        queries = np.asarray(ws.embedder().embed(texts), np.float32)
    else:
        pick = np.random.default_rng(0).choice(len(vecs), min(args.queries, len(vecs)), replace=False)
        queries = vecs[pick]
    arrays = sae_arrays(sae)

    def concept(q):
        return index.search(encode_query(sae, q, settings, arrays), 10)

    def exact(q):
        return dense.search(q[None, :], 10)

    with threadpool_limits(1, user_api="blas"):
        timed(concept, queries[:10])
        c_ms = timed(concept, queries, repeat=2)
        timed(exact, queries[:5])
        d1_ms = timed(exact, queries)
    timed(exact, queries[:5])
    dn_ms = timed(exact, queries)
    d_ms, d_label = (d1_ms, "1 BLAS thread") if np.median(d1_ms) <= np.median(dn_ms) else (dn_ms, "default threads")
    dense_bytes = args.docs * vecs.shape[1] * 4
    postings = len(index.doc_ids)
    print(f"{args.docs:,} documents ({len(vecs):,} real ones repeated), {len(queries)} queries, "
          f"SAE {sae.cfg.n_latents} latents; doc_k={settings.doc_k}, query_k={settings.query_k}, rerank={settings.rerank}")
    print(f"mean postings read per query: {np.mean([np.diff(index.indptr)[encode_query(sae, q, settings, arrays).latents].sum() for q in queries]):,.0f} of {postings:,}")
    print("| search | median ms | p95 ms |")
    print("| --- | --- | --- |")
    print(f"| concept (CL-SR, projection + rerank) | {np.median(c_ms):.3f} | {np.percentile(c_ms, 95):.3f} |")
    print(f"| exact dense, 1 BLAS thread | {np.median(d1_ms):.3f} | {np.percentile(d1_ms, 95):.3f} |")
    print(f"| exact dense, default threads | {np.median(dn_ms):.3f} | {np.percentile(dn_ms, 95):.3f} |")
    print(f"speed-up of concept over exact dense ({d_label}, medians): {np.median(d_ms) / np.median(c_ms):.1f}x")
    print(f"index bytes: stored {index.stored_bytes:,} = {index.stored_bytes / dense_bytes:.1%} of float32 dense "
          f"({dense_bytes:,}); in memory with postings {index.memory_bytes:,} = {index.memory_bytes / dense_bytes:.1%}")
    thread_limit_study({"concept": concept, "exact dense": exact}, queries, args.rounds)


if __name__ == "__main__":
    main()
