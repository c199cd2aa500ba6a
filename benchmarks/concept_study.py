"""Concept-level scoring study: nDCG@10, index bytes and query latency of the concept index under several
settings (document k, query k, query expansion by feedback documents), next to exact dense search.

    python benchmarks/concept_study.py WS:BEIR_DIR [WS:BEIR_DIR ...] [--sae NAME]

The concept indexes are built in memory from the workspace's SAE (nothing is written). Expansion adds to the
(unit) query the mean unit SAE reconstruction of the first pass's top documents (`feedback_docs`, weight
`feedback_weight`), read from the concept index itself; dense search is shown plain and with the same
feedback on the dense vectors, for reference.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

GRID = [dict(doc_k=dk, query_k=qk, feedback_docs=fd, feedback_weight=fw)
        for dk in (32, 64) for qk in (64, 128) for fd, fw in ((0, 0.0), (5, 0.5), (5, 1.0), (10, 1.0))]


def study(ws_dir: str, beir: str, sae_name: str | None, rows: dict) -> None:
    """Add one benchmark's (nDCG@10, median ms, index bytes) per retrieval setting to `rows`."""
    from embedsae.sae.codes import encode_array
    from embedsae.search import ConceptIndex, ConceptSettings, Searcher
    from embedsae.search.concept import doc_norms
    from embedsae.search.evaluate import load_benchmark
    from fusion_study import ndcg_at_10, query_vectors

    s = Searcher(ws_dir, sae_name)
    qids, texts, qrels = load_benchmark(s.ws, beir)
    vectors = query_vectors(s, texts)
    ids = np.asarray(s.ws.ids, dtype=object)
    sae = s.sae
    retriever = s.retriever("concept")
    dense = s.retriever("dense").index
    dense_bytes = s.ws.n_documents * s.ws.dim * 4

    def evaluate(rank):
        run, times = {}, []
        with s.single_thread():
            for q, v in zip(qids, vectors):
                t = time.perf_counter()
                r, _ = rank(v)
                times.append(time.perf_counter() - t)
                run[q] = [str(ids[i]) for i in r[:10]]
        return ndcg_at_10(run, qrels), 1000 * float(np.median(times))

    def dense_plain(v):
        return dense.search(v, 10)[0][0], None

    def dense_feedback(v, m=5, w=1.0):
        top = dense.search(v, m)[0][0]
        e = np.asarray(s.ws.embeddings[top], np.float32)
        e /= np.linalg.norm(e, axis=1, keepdims=True)
        return dense.search(v / np.linalg.norm(v) + w * e.mean(0), 10)[0][0], None

    rows.setdefault("dense (exact)", []).append((*evaluate(dense_plain), dense_bytes))
    rows.setdefault("dense + feedback (feedback_docs=5, feedback_weight=1.0)", []).append(
        (*evaluate(dense_feedback), dense_bytes))
    codes = {}
    for g in GRID:
        if g["doc_k"] not in codes:
            c = encode_array(sae, s.ws.embeddings, k=g["doc_k"])
            codes[g["doc_k"]] = (c, doc_norms(sae, c.indices, c.values))
        c, norms = codes[g["doc_k"]]
        retriever.index = ConceptIndex.from_codes(c.indices, c.values, sae.cfg.n_latents, norms, ConceptSettings(**g))
        label = "concept " + ", ".join(f"{k}={v}" for k, v in g.items())
        rows.setdefault(label, []).append((*evaluate(lambda v: retriever.rank_vector(v, 10)),  # noqa: B023
                                           retriever.index.stored_bytes))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("sets", nargs="+", metavar="WS:BEIR_DIR")
    ap.add_argument("--sae")
    args = ap.parse_args()
    rows: dict[str, list] = {}
    names = []
    for spec in args.sets:
        ws_dir, beir = spec.split(":", 1)
        names.append(beir.rstrip("/").split("/")[-1])
        study(ws_dir, beir, args.sae, rows)
    print("| retrieval | " + " | ".join(f"nDCG@10 {n} | ms | bytes" for n in names) + " | mean nDCG@10 |")
    print("| --- | " + " | ".join("--- | --- | ---" for _ in names) + " | --- |")
    for label, vals in rows.items():
        cells = " | ".join(f"{n:.4f} | {ms:.2f} | {b:,}" for n, ms, b in vals)
        print(f"| {label} | {cells} | {np.mean([v[0] for v in vals]):.4f} |")


if __name__ == "__main__":
    main()
