"""IR evaluation on a BEIR-format benchmark whose corpus is the workspace's corpus (metrics by ranx)."""

from __future__ import annotations

import os
import time
from typing import Any

import numpy as np

from ..errors import InputError
from ..progress import ProgressCallback, track
from ..workspace import Workspace
from .searcher import Searcher

METRICS = ("ndcg@10", "mrr@10", "recall@100")


def load_benchmark(ws: Workspace, beir_dir: str | os.PathLike, split: str = "test") -> tuple[list[str], list[str], dict]:
    """Query ids, query texts and positive judgements of a BEIR split, checked against the workspace corpus."""
    from ..data.readers import read_beir

    data = read_beir(beir_dir)
    qrels = {q: {d: g for d, g in docs.items() if g > 0} for q, docs in data.split(split).items()}
    qrels = {q: docs for q, docs in qrels.items() if docs}
    ids = set(ws.ids)
    judged = {d for docs in qrels.values() for d in docs}
    if not judged or len(judged & ids) < 0.5 * len(judged):
        raise InputError(
            f"only {len(judged & ids)} of the {len(judged)} judged documents of {beir_dir} are in workspace {ws.path}; "
            f"its corpus must be the benchmark's corpus: embed it with: embedsae embed {beir_dir} -o NEW_WORKSPACE"
        )
    queries = data.queries[data.queries["id"].astype(str).isin(qrels)]
    if queries.empty:
        raise InputError(f"no query of {beir_dir}/queries.jsonl has judgements in split '{split}'")
    return queries["id"].astype(str).tolist(), queries["text"].astype(str).tolist(), qrels


def ranked_run(doc_ids: np.ndarray, rows: np.ndarray) -> dict[str, float]:
    """One query's run for ranx: document id -> a score that falls with the rank, so that the metrics see the
    order the mode returned (ranx re-sorts by score and would reorder tied scores its own way)."""
    rows = np.asarray(rows).tolist()
    return {str(doc_ids[r]): float(len(rows) - i) for i, r in enumerate(rows)} or {"": 0.0}


def evaluate_retrieval(
    ws: Workspace | str,
    beir_dir: str | os.PathLike,
    *,
    split: str = "test",
    modes: list[str] | tuple[str, ...] | str = ("concept",),
    searcher: Searcher | None = None,
    sae: str | None = None,
    depth: int = 100,
    progress: ProgressCallback | None = None,
) -> list[dict[str, Any]]:
    """nDCG@10, MRR@10, Recall@100, index bytes and per-query latency (median, p95, milliseconds) per mode, and
    under the mode's name the settings it ran with where it has some (hybrid: parts, weights, fusion; concept:
    the SAE and the index settings).

    `modes="all"` evaluates every registered mode the workspace is indexed for. Queries are embedded once in
    a batch (not counted in the latency); each query is then searched alone, as a user's query would be.
    """
    from ranx import Qrels, Run, evaluate

    from .retriever import retriever_class

    ws = ws if isinstance(ws, Workspace) else Workspace.open(ws)
    searcher = searcher or Searcher(ws, sae)
    modes = searcher.modes() if modes == "all" else list(modes)
    classes = [retriever_class(m) for m in modes]  # unknown modes fail here, before any work
    qids, texts, qrels = load_benchmark(ws, beir_dir, split)
    t0 = time.perf_counter()
    needs_vectors = any(c.needs_vector for c in classes)
    vectors = searcher.embed(texts) if needs_vectors else [None] * len(texts)
    embed_ms = 1000 * (time.perf_counter() - t0) / max(len(texts), 1) if needs_vectors else 0.0
    doc_ids = np.asarray(ws.ids, dtype=object)
    results = []
    for mode in modes:
        searcher.rank(mode, vectors[0], texts[0], depth)  # warm up (loads the index)
        run: dict[str, dict[str, float]] = {}
        times = []
        for qid, text, vec in track(list(zip(qids, texts, vectors)), progress, f"eval {mode}", unit="query"):
            t = time.perf_counter()
            rows, _ = searcher.rank(mode, vec, text, depth)
            times.append(time.perf_counter() - t)
            run[qid] = ranked_run(doc_ids, rows)
        scores = evaluate(Qrels(qrels), Run(run), list(METRICS), make_comparable=True)
        ms = 1000 * np.asarray(times)
        retriever = searcher.retriever(mode)
        row = {
            "mode": mode, "queries": len(qids), **{k: round(float(scores[k]), 4) for k in METRICS},
            "latency_ms": {"median": round(float(np.median(ms)), 3), "p95": round(float(np.percentile(ms, 95)), 3)},
            "query_embedding_ms": round(embed_ms, 3), "index_bytes": int(retriever.size()),
            "split": split, "documents": ws.n_documents,
            "sae": searcher.sae_name if mode in ("concept", "hybrid") else None,
        }
        if hasattr(retriever, "describe"):  # the settings a mode ran with (hybrid: parts and fusion; concept)
            row[mode] = retriever.describe()
        results.append(row)
    return results
