"""Latency of the service layer: a warm `embedsae.Project` against the per-call library functions.

    python benchmarks/project_latency.py WS [--repeat 30]

WS must be trained, interpreted and indexed (e.g. the README's arXiv workspace). Prints, per operation, the
median and 90th percentile of a warm Project call, its first (cold) call, and the median of the per-call
function that rebuilds its inputs each time (the baseline), with the ratio. Checks that no call wrote a file.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

import embedsae
from embedsae.interpret.card import feature_card
from embedsae.interpret.store import FeatureStore
from embedsae.structure.neighbours import feature_neighbours
from embedsae.workspace import Workspace

QUERIES = ["contrastive learning of sentence embeddings", "graph neural networks for molecules",
           "black hole thermodynamics", "reinforcement learning from human feedback", "protein structure prediction"]


def timed(fn: Callable[[], object], repeat: int) -> list[float]:
    out = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    return {str(p): (p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*") if p.is_file()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("workspace")
    ap.add_argument("--repeat", type=int, default=30)
    args = ap.parse_args()
    before = snapshot(Path(args.workspace))
    ws = Workspace.open(args.workspace)
    p = embedsae.open(args.workspace)
    features = [r.id for r in p.features(sort="density").items[: args.repeat]]
    rng = np.random.default_rng(0)
    pick = lambda: int(rng.choice(features))  # noqa: E731

    def baseline_card():
        store = FeatureStore.read(ws.sae_file(p.sae_name, "features.db"))
        try:
            feature_card(ws, p.sae_name, store, pick())
        finally:
            store.close()

    ops = {
        "feature card": (lambda: p.feature(pick()), baseline_card),
        "neighbours": (lambda: p.neighbours(pick()), lambda: feature_neighbours(ws, pick(), p.sae_name)),
        "features page (score)": (lambda: p.features(sort="score", limit=50), None),
        "search dense (embeds query)": (lambda: p.search(str(rng.choice(QUERIES)), mode="dense"), None),
        "search concept (embeds query)": (lambda: p.search(str(rng.choice(QUERIES)), mode="concept"), None),
        "search hybrid (embeds query)": (lambda: p.search(str(rng.choice(QUERIES)), mode="hybrid"), None),
    }
    print(f"workspace {args.workspace}: {ws.n_documents} documents, SAE {p.sae_name}; {args.repeat} calls each")
    print(f"{'operation':<32} {'cold':>9} {'warm p50':>9} {'warm p90':>9} {'per-call p50':>13} {'ratio':>7}")
    for name, (warm, base) in ops.items():
        cold = timed(warm, 1)[0]
        times = sorted(timed(warm, args.repeat))
        p50, p90 = statistics.median(times), times[int(0.9 * (len(times) - 1))]
        line = f"{name:<32} {cold * 1e3:>7.1f}ms {p50 * 1e3:>7.2f}ms {p90 * 1e3:>7.2f}ms"
        if base is not None:
            b50 = statistics.median(timed(base, max(3, args.repeat // 5)))
            line += f" {b50 * 1e3:>11.1f}ms {b50 / p50:>6.0f}x"
        print(line)
    after = snapshot(Path(args.workspace))
    print("files written by these reads:", sorted(set(after.items()) - set(before.items())) or "none")


if __name__ == "__main__":
    main()
