"""Where one search's time goes, in one process on one thread (the service time a server's request pays): query
embedding (alone and 16 at once), the SAE's encoding of one query vector as a serving Searcher does it (torch's own threads against one),
each hybrid part's ranking, explanations, the whole search, and the cheap reads (feature card, neighbours).

    python benchmarks/search_breakdown.py WS [--rounds 40]

Medians in ms, the parts alternated round by round (the machine may be shared: read the ratios, and the load
average printed with them).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("workspace", type=Path)
    ap.add_argument("--rounds", type=int, default=40)
    args = ap.parse_args()

    import torch

    import embedsae
    from embedsae.threads import torch_single_thread

    p = embedsae.open(args.workspace)
    s = p.searcher
    model = s.ws.embedder()
    features = [f.id for f in p.features(sort="density", limit=200).items]
    vec = s.embed(["dark matter halos survey"])[0]
    x = torch.from_numpy(vec[None, :].copy())
    for _ in range(2):  # a serving Searcher's state: the SAE as queries are encoded with (`Searcher.query_sae`)
        s.query_sae()
    parts = s.retriever("hybrid").parts()
    counter = iter(range(10**9))

    def q() -> str:
        return f"dark matter halos survey {next(counter)}"  # a new text each time

    def single_encode():
        with torch.no_grad(), torch_single_thread():
            s.sae.encode(x)

    def default_encode():
        with torch.no_grad():
            s.sae.encode(x)

    def explain():
        with s.single_thread():
            s._hits(np.arange(10), np.ones(10), vec)

    steps = {
        "embed 1 query": lambda: model.embed([q()]),
        "embed 16 queries (1 pass)": lambda: model.embed([q() for _ in range(16)]),
        "SAE encode 1 vector, torch threads": default_encode,
        "SAE encode 1 vector, 1 thread": single_encode,
        **{f"rank {m} (top 100)": (lambda m=m: s.rank(m, vec, "dark matter halos survey", 100)) for m in parts},
        "rank hybrid (top 10)": lambda: s.rank("hybrid", vec, "dark matter halos survey", 10),
        "explain 10 hits": explain,
        "hybrid search, vector given": lambda: p.search("dark matter halos survey", mode="hybrid", vector=vec),
        "hybrid search, new text": lambda: p.search(q(), mode="hybrid"),
        "steered dense search, vector given": lambda: p.search("dark matter halos survey", mode="dense", vector=vec,
                                                               steer=[f"{features[next(counter) % 200]}=+0.3"]),
        "feature card": lambda: p.feature(features[next(counter) % 200]),
        "neighbours": lambda: p.neighbours(features[next(counter) % 200]),
    }
    for fn in steps.values():  # loads every cached part
        fn()
    times: dict[str, list[float]] = {k: [] for k in steps}
    load = os.getloadavg()[0]
    for _ in range(args.rounds):
        for name, fn in steps.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    print(f"workspace {args.workspace.name}: SAE {p.sae_name}, embedder backend {getattr(model, 'backend', '?')}, "
          f"torch threads {torch.get_num_threads()}, {args.rounds} rounds, load average before {load:.1f} on "
          f"{os.cpu_count()} CPUs")
    for name, xs in times.items():
        print(f"{name:<38}{1000 * statistics.median(xs):>9.2f} ms")


if __name__ == "__main__":
    main()
