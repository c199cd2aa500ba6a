"""The retrieval development matrix: every search mode and every fusion / weight / concept candidate on several
development collections (Cranfield, arxiv-titles, arxiv-sentences, arxiv-keywords; see retrieval_collections.py)
and on cranfield-titles, a collection held out of the choice of the defaults, in one table (the table's mean
is over every collection run; the checks below it use the development collections' mean).

Each collection follows a user's path through the library: `embed` the BEIR corpus into a workspace, `train`
the default SAE, `index` with the default settings, `eval-retrieval --mode all` (the rows marked "default").
The other rows re-rank the same queries: concept indexes built in memory with other settings from the same
SAE, and fusions of the parts' rankings (each part's top 200, as the default hybrid fuses them; the rows marked
"depth=100" fuse each part's top 100, the default before; ties are broken as the library's `fuse` breaks them,
and the metrics see the order returned). Latency is the median per query
(one thread; query embedding excluded), a fusion's the sum of its parts' and the fusion's own time; bytes are
the index bytes a mode searches (a fusion: the sum of its parts').

    python benchmarks/retrieval_matrix.py                       # all collections, the full grid
    python benchmarks/retrieval_matrix.py --only cranfield --quick

Workspaces, SAEs and vectors are cached under /work/cache/retrieval (EMBEDSAE_RETRIEVAL_CACHE): the first run
embeds ~12,400 texts (minutes), trains one SAE per workspace (arxiv-keywords shares arxiv-titles') and
writes `matrix.json` beside them.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from embedsae.search.hybrid import HybridSettings  # noqa: E402
from retrieval_collections import CACHE, HELD_OUT, WORKSPACES, collections, embedder  # noqa: E402

DEPTH = HybridSettings().depth
"""Hits per part that the fusions fuse (the default hybrid's depth)."""
RUN_DEPTH = 100
"""Hits per query that the metrics see (Recall@100)."""
METRICS = ("ndcg@10", "mrr@10", "recall@100")


@dataclass
class Collection:
    """One development collection, its workspace (embedded, trained, indexed) and its queries."""

    name: str
    beir: Path
    searcher: object
    qids: list[str]
    texts: list[str]
    vectors: np.ndarray
    qrels: dict
    ids: np.ndarray
    seconds: dict = field(default_factory=dict)


@dataclass
class Row:
    """One candidate on one collection."""

    metrics: dict
    ms: float
    bytes: int


def prepare(name: str, beir: Path, emb) -> Collection:
    """Embed, train the default SAE and index with the defaults (each skipped when already done)."""
    from embedsae import pipeline
    from embedsae.search import Searcher, build_index
    from embedsae.search.evaluate import load_benchmark
    from embedsae.workspace import Workspace

    folder = CACHE / "ws" / WORKSPACES.get(name, name)
    seconds = {}
    t = time.perf_counter()
    ws = Workspace.open(folder) if (folder / "manifest.json").is_file() else pipeline.embed(beir, folder, embedder=emb)
    seconds["embed"] = time.perf_counter() - t
    if not ws.sae_names():
        t = time.perf_counter()
        pipeline.train(ws)
        seconds["train"] = time.perf_counter() - t
    t = time.perf_counter()
    build_index(ws)
    seconds["index"] = time.perf_counter() - t
    searcher = Searcher(ws, embedder=emb)
    qids, texts, qrels = load_benchmark(ws, beir)
    return Collection(name, beir, searcher, qids, texts, searcher.embed(texts), qrels,
                      np.asarray(ws.ids, dtype=object), seconds)


def evaluate_run(run: dict[str, dict[str, float]], qrels: dict) -> dict[str, float]:
    from ranx import Qrels, Run, evaluate

    scores = evaluate(Qrels(qrels), Run(run), list(METRICS), make_comparable=True)
    return {k: float(scores[k]) for k in METRICS}


def rank_each(col: Collection, rank: Callable[[int], tuple[np.ndarray, np.ndarray]]):
    """Rank every query (index i) with `rank`; return the rankings and per-query seconds."""
    out, times = [], []
    with col.searcher.single_thread():
        for i in range(len(col.qids)):
            t = time.perf_counter()
            rows, scores = rank(i)
            times.append(time.perf_counter() - t)
            out.append((np.asarray(rows), np.asarray(scores)))
    return out, np.asarray(times)


def to_row(col: Collection, ranked, times, nbytes: int) -> Row:
    from embedsae.search.evaluate import ranked_run

    run = {q: ranked_run(col.ids, rows[:RUN_DEPTH]) for q, (rows, _) in zip(col.qids, ranked)}
    return Row(evaluate_run(run, col.qrels), 1000 * float(np.median(times)), int(nbytes))


# ---------------------------------------------------------------------------- candidates
CONCEPT_GRID = {  # label -> ConceptSettings fields (the rest default)
    "concept doc_k=24": dict(doc_k=24),
    "concept doc_k=28": dict(doc_k=28),
    "concept doc_k=32": dict(doc_k=32),
    "concept doc_k=32 feedback=5": dict(doc_k=32, feedback_docs=5, feedback_weight=0.5),
    "concept doc_k=32 residual=off": dict(doc_k=32, residual=False),
    "concept doc_k=48 residual=off": dict(doc_k=48, residual=False),
    "concept doc_k=32 residual=off feedback=5": dict(doc_k=32, residual=False, feedback_docs=5, feedback_weight=0.5),
    "concept doc_k=32 scoring=bm25": dict(doc_k=32, scoring="bm25"),
    "concept doc_k=32 scoring=dot": dict(doc_k=32, scoring="dot"),
}
QUICK_GRID = ("concept doc_k=32", "concept doc_k=32 residual=off")
PLAIN = "concept doc_k=32 residual=off"
"""The concept part without its residual sketch, fused as a part of its own ("concept (no residual)")."""
FUSIONS = [("rrf", 60.0), ("minmax", 0.0), ("zscore", 0.0), ("dbsf", 0.0)]
WEIGHTED = [  # (parts with weights, fusion): weight variants beyond equal weights
    *[({"dense": 1, "bm25": w}, m) for w in (0.5, 0.75, 1.25, 1.5, 2) for m in ("zscore", "minmax")],
    *[({"concept": 1, "bm25": w}, m) for w in (0.5, 0.75, 1.25, 1.5, 2) for m in ("zscore", "minmax")],
    *[({"dense": 1, "concept": w, "bm25": 1}, "zscore") for w in (0.25, 0.5)],
    *[({"dense": 1, "concept": 1, "bm25": w}, "zscore") for w in (1.5, 2)],
]


def concept_candidates(col: Collection, grid: dict[str, dict]) -> dict[str, tuple[list, np.ndarray, int]]:
    """Rankings of concept indexes built in memory with each setting of `grid` (same SAE)."""
    from embedsae.sae.codes import encode_array
    from embedsae.search import ConceptIndex, ConceptSettings
    from embedsae.search.compress import stored_values
    from embedsae.search.concept import doc_norms, sae_arrays

    s = col.searcher
    sae = s.sae
    retriever = s.retriever("concept")
    default = retriever.index
    codes: dict[int, tuple] = {}
    out = {}
    for label, fields in grid.items():
        settings = ConceptSettings(**fields)
        if settings.doc_k not in codes:
            c = encode_array(sae, s.ws.vectors, k=settings.doc_k)
            values = stored_values(c.values)
            codes[settings.doc_k] = (c.indices, values, doc_norms(sae, c.indices, values))
        indices, values, norms = codes[settings.doc_k]
        retriever.index = ConceptIndex.from_codes(indices, values, sae.cfg.n_latents, norms, settings,
                                                  decoder=sae_arrays(sae), vectors=s.ws.vectors)
        ranked, times = rank_each(col, lambda i: retriever.rank_vector(col.vectors[i], DEPTH))  # noqa: B023
        out[label] = (ranked, times, retriever.index.stored_bytes)
    retriever.index = default
    return out


def fusion_candidates(col: Collection, parts: dict[str, tuple[list, np.ndarray, int]], quick: bool):
    """Every fusion of two or three parts (equal weights, each method), plus the weighted variants and the
    equal-weight z-score pairs over each part's top 100."""
    from embedsae.search.hybrid import fuse

    specs = []
    for r in (2, 3):
        for combo in itertools.combinations(parts, r):
            if "concept" in combo and "concept (no residual)" in combo:
                continue
            for method, k in (FUSIONS[1:2] if quick else FUSIONS):
                specs.append((dict.fromkeys(combo, 1.0), method, k))
    specs = [(w, m, k, DEPTH) for w, m, k in specs]
    if not quick:
        specs += [(w, m, 60.0, DEPTH) for w, m in WEIGHTED]
        specs += [({"dense": 1.0, "bm25": 1.0}, "zscore", 60.0, 100), ({"bm25": 1.0, "concept": 1.0}, "zscore", 60.0, 100)]
    out = {}
    for weights, method, k, depth in specs:
        ranked, times = [], []
        for i in range(len(col.qids)):
            t = time.perf_counter()
            rows, scores = fuse({p: tuple(a[:depth] for a in parts[p][0][i]) for p in weights}, weights, method, k)
            times.append(time.perf_counter() - t + sum(parts[p][1][i] for p in weights))
            ranked.append((rows, scores))
        label = " + ".join(f"{p}" if w == 1 else f"{p}×{w:g}" for p, w in weights.items()) + f" {method}"
        label += "" if depth == DEPTH else f" depth={depth}"
        out[label] = (ranked, np.asarray(times), sum(parts[p][2] for p in weights))
    return out


def run_collection(col: Collection, quick: bool) -> dict[str, Row]:
    """Every candidate's row on one collection."""
    from embedsae.search.evaluate import evaluate_retrieval

    rows: dict[str, Row] = {}
    for r in evaluate_retrieval(col.searcher.ws, col.beir, modes="all", searcher=col.searcher, depth=RUN_DEPTH):
        label = f"{r['mode']} (default)"
        if r["mode"] == "hybrid":
            h = r["hybrid"]
            label = "hybrid (default: " + " + ".join(h["parts"]) + f" {h['fusion']})"
        rows[label] = Row({k: r[k] for k in METRICS}, r["latency_ms"]["median"], r["index_bytes"])
    s = col.searcher
    parts = {}
    for mode in ("dense", "bm25", "concept"):
        ranked, times = rank_each(col, lambda i: s.rank(mode, col.vectors[i], col.texts[i], DEPTH))  # noqa: B023
        parts[mode] = (ranked, times, s.retriever(mode).size())
    grid = {k: v for k, v in CONCEPT_GRID.items() if not quick or k in QUICK_GRID}
    for label, (ranked, times, nbytes) in concept_candidates(col, grid).items():
        rows[label] = to_row(col, ranked, times, nbytes)
        if label == PLAIN:
            parts["concept (no residual)"] = (ranked, times, nbytes)
    for label, (ranked, times, nbytes) in fusion_candidates(col, parts, quick).items():
        rows[label] = to_row(col, ranked, times, nbytes)
    return rows


# ---------------------------------------------------------------------------- report
def table(results: dict[str, dict[str, Row]]) -> str:
    names = list(results)
    labels = list(dict.fromkeys(label for rows in results.values() for label in rows))
    head = ["candidate"] + [f"{n} {m}" for n in names for m in ("nDCG@10", "MRR@10", "R@100", "ms", "bytes")]
    head += ["mean nDCG@10", "mean MRR@10", "mean R@100"]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(" --- " for _ in head) + "|"]
    for label in labels:
        cells, means = [label], {m: [] for m in METRICS}
        for n in names:
            row = results[n].get(label)
            if row is None:
                cells += ["–"] * 5
                continue
            cells += [f"{row.metrics[m]:.4f}" for m in METRICS] + [f"{row.ms:.2f}", f"{row.bytes:,}"]
            for m in METRICS:
                means[m].append(row.metrics[m])
        cells += [f"{np.mean(v):.4f}" if len(v) == len(names) else "–" for v in means.values()]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def checks(results: dict[str, dict[str, Row]]) -> list[str]:
    """The issue's rules for the default hybrid and the concept channel: on each collection above the best
    single part, within 0.005 of the best two-part fusion at equal weights (any fusion method; the gap to the
    best weighted pair is printed beside it) and concept >= 0.98 x dense; best on the mean of the development
    collections (those not in HELD_OUT)."""
    out = []
    nd = {n: {label: r.metrics["ndcg@10"] for label, r in rows.items()} for n, rows in results.items()}
    hybrid = next(label for label in next(iter(nd.values())) if label.startswith("hybrid (default"))
    single = ("dense (default)", "bm25 (default)", "concept (default)")
    dev = [n for n in nd if n not in HELD_OUT] or list(nd)
    means = {label: np.mean([nd[n][label] for n in dev]) for label in nd[dev[0]] if all(label in nd[n] for n in dev)}

    def best(v: dict[str, float], weighted: bool) -> str:
        pairs = [label for label in v if label.count(" + ") == 1 and not label.startswith("hybrid")
                 and ("×" in label) == weighted and "depth=" not in label]
        return max(pairs, key=v.get)

    for n, v in nd.items():
        best_single = max(single, key=lambda m: v[m])  # noqa: B023
        eq, wt = best(v, False), best(v, True)
        ok = v[hybrid] >= v[best_single] and v[hybrid] >= v[eq] - 0.005
        ratio = v["concept (default)"] / v["dense (default)"]
        b = results[n]
        by = b["concept (default)"].bytes / b["dense (default)"].bytes
        out.append(f"{n}: default hybrid {v[hybrid]:.4f}; best single {best_single} {v[best_single]:.4f}; best "
                   f"equal-weight pair {eq} {v[eq]:.4f} ({v[eq] - v[hybrid]:+.4f}) -> {'OK' if ok else 'FAILS'}; "
                   f"best weighted pair {wt} {v[wt]:.4f} ({v[wt] - v[hybrid]:+.4f}); concept/dense nDCG "
                   f"{ratio:.3f} ({'OK' if ratio >= 0.98 else 'FAILS'}) at {by:.1%} of dense bytes")
    same = [round(nd[n][hybrid], 4) for n in dev]  # (eval-retrieval rounds to 4 places)
    others = {m: x for m, x in means.items() if m != hybrid and [round(nd[n][m], 4) for n in dev] != same}
    top = max(others, key=others.get)  # (the default's own fusion row, the same on every collection, left out)
    out.append(f"mean nDCG@10 of the development collections ({', '.join(dev)}): default hybrid "
               f"{means[hybrid]:.4f}; best other candidate {top} {others[top]:.4f} "
               f"-> {'OK' if round(means[hybrid], 4) >= round(others[top], 4) else 'FAILS'}")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", nargs="+", help="collections to run (default: all)")
    ap.add_argument("--quick", action="store_true", help="fewer candidates (minmax fusions, two concept settings)")
    args = ap.parse_args()
    emb = embedder()
    results = {}
    for name, beir in collections().items():
        if args.only and name not in args.only:
            continue
        t = time.perf_counter()
        col = prepare(name, beir, emb)
        results[name] = run_collection(col, args.quick)
        print(f"{name}: {len(col.qids)} queries, {col.searcher.ws.n_documents:,} documents, SAE "
              f"{col.searcher.sae_name}; " + ", ".join(f"{k} {v:.1f}s" for k, v in col.seconds.items())
              + f"; matrix {time.perf_counter() - t:.0f}s", file=sys.stderr)
    print(table(results))
    print()
    for line in checks(results):
        print(line)
    out = CACHE / "matrix.json"
    out.write_text(json.dumps({n: {label: r.__dict__ for label, r in rows.items()} for n, rows in results.items()},
                              indent=1))


if __name__ == "__main__":
    main()
