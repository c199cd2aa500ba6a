"""Fusion study: how to combine dense, concept and BM25 rankings, on one or more BEIR benchmarks.

Each part ranks every query once (depth 100, the Searcher's own retrievers); every fusion is then computed
from those rankings: reciprocal-rank fusion with k in {10, 20, 60}, and weighted sums of scores normalised
by min-max, z-score or distribution-based (mean +- 3 sd, DBSF) over each part's retrieved list; for every
pair of parts and for all three; equal weights, and for the pairs with BM25 a weight sweep on BM25.

    python benchmarks/fusion_study.py WS:BEIR_DIR [WS:BEIR_DIR ...] [--sae NAME]

Prints nDCG@10 per benchmark and fusion (Markdown): over all queries and over the even- and odd-numbered
queries, two development halves (a choice that wins on one half only is tuned to noise).
"""

from __future__ import annotations

import argparse
import itertools

import numpy as np


def ndcg_per_query(run: dict[str, list[str]], qrels: dict[str, dict[str, int]]) -> np.ndarray:
    """nDCG@10 of each judged query (linear gains, as ranx's ndcg), in the order of `qrels`."""
    disc = 1.0 / np.log2(np.arange(2, 12))
    out = []
    for q, rel in qrels.items():
        gains = [rel.get(d, 0) for d in run.get(q, [])[:10]]
        dcg = float(np.dot(gains, disc[: len(gains)]))
        ideal = sorted(rel.values(), reverse=True)[:10]
        out.append(dcg / float(np.dot(ideal, disc[: len(ideal)])))
    return np.asarray(out)


def ndcg_at_10(run: dict[str, list[str]], qrels: dict[str, dict[str, int]]) -> float:
    """Mean nDCG@10."""
    return float(ndcg_per_query(run, qrels).mean())


def halves(values: np.ndarray) -> list[float]:
    """Mean over all queries, over the even-numbered ones and over the odd-numbered ones (two development halves)."""
    return [float(values.mean()), float(values[0::2].mean()), float(values[1::2].mean())]


def query_vectors(searcher, texts: list[str]) -> np.ndarray:
    """The queries' vectors, cached in the workspace folder (bench-queries-<hash>.npy) across study runs."""
    import hashlib

    key = hashlib.sha256("\x00".join([searcher.ws.model_id, *texts]).encode()).hexdigest()[:16]
    path = searcher.ws.path / f"bench-queries-{key}.npy"
    if path.is_file():
        return np.load(path)
    vectors = searcher.embed(texts)
    np.save(path, vectors)
    return vectors


PARTS = ("dense", "concept", "bm25")
METHODS = [("rrf", 10), ("rrf", 20), ("rrf", 60), ("minmax", 0), ("zscore", 0), ("dbsf", 0)]


def study(ws_dir: str, beir: str, sae: str | None, depth: int, table: dict) -> None:
    """Add one benchmark's nDCG@10 per part and per fusion to `table` ((parts, fusion, bm25 weight) -> values)."""
    from embedsae.search import Searcher
    from embedsae.search.evaluate import load_benchmark
    from embedsae.search.hybrid import fuse

    s = Searcher(ws_dir, sae)
    qids, texts, qrels = load_benchmark(s.ws, beir)
    vectors = query_vectors(s, texts)
    ids = np.asarray(s.ws.ids, dtype=object)
    ranked = {p: [s.rank(p, v, t, depth) for v, t in zip(vectors, texts)] for p in PARTS}

    def score(combo, method, k, weights):
        run = {}
        for qi, q in enumerate(qids):
            rows, _ = fuse({p: ranked[p][qi] for p in combo}, weights, method, k)
            run[q] = [str(ids[r]) for r in rows[:10]]
        return halves(ndcg_per_query(run, qrels))

    for p in PARTS:
        table.setdefault((p, "alone", 1.0), []).extend(
            halves(ndcg_per_query({q: [str(ids[r]) for r in ranked[p][i][0][:10]] for i, q in enumerate(qids)}, qrels)))
    for combo in [c for r in (2, 3) for c in itertools.combinations(PARTS, r)]:
        for method, k in METHODS:
            table.setdefault(("+".join(combo), f"{method}{k or ''}", 1.0), []).extend(
                score(combo, method, k, {p: 1.0 for p in combo}))
        if "bm25" in combo and len(combo) == 2:
            for w in (0.5, 2.0):
                for method, k in (("rrf", 60), ("zscore", 0)):
                    weights = {p: (w if p == "bm25" else 1.0) for p in combo}
                    table.setdefault(("+".join(combo), f"{method}{k or ''}", w), []).extend(
                        score(combo, method, k, weights))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("sets", nargs="+", metavar="WS:BEIR_DIR")
    ap.add_argument("--sae")
    ap.add_argument("--depth", type=int, default=100)
    args = ap.parse_args()
    table: dict[tuple, list[float]] = {}
    names = []
    for spec in args.sets:
        ws_dir, beir = spec.split(":", 1)
        names.append(beir.rstrip("/").split("/")[-1])
        study(ws_dir, beir, args.sae, args.depth, table)
    cols = [f"{n} {h}" for n in names for h in ("all", "even", "odd")]
    print("| parts | fusion | bm25 weight | " + " | ".join(cols) + " |")
    print("| --- | --- | --- | " + " | ".join("---" for _ in cols) + " |")
    for (combo, method, w), vals in table.items():
        print(f"| {combo} | {method} | {w:g} | " + " | ".join(f"{v:.4f}" for v in vals) + " |")


if __name__ == "__main__":
    main()
