"""Time the `families` stage and its co-occurrence step on a real workspace.

Baseline (measured in the same run): the seed's dense co-occurrence (one-hot documents x latents matrix,
dense product), against ours (sparse Bᵀ B). Prints medians and the ratio.

    python benchmarks/bench_families.py WS [--sae NAME] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np


def _median_time(fn, repeats: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def dense_cooccurrence(codes) -> np.ndarray:
    """The seed's way: a dense one-hot activation matrix and a dense product."""
    onehot = np.zeros((len(codes), codes.n_latents), dtype=np.float32)
    rows = np.repeat(np.arange(len(codes)), codes.indices.shape[1])
    active = codes.values.ravel() > 0
    onehot[rows[active], codes.indices.ravel()[active]] = 1.0
    return onehot.T @ onehot


def main() -> None:
    from embedsae.sae.codes import workspace_codes
    from embedsae.structure.cooccurrence import cooccurrence
    from embedsae.structure.stage import build_families, write_families
    from embedsae.workspace import Workspace

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("workspace")
    ap.add_argument("--sae", help="SAE name (default: latest)")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()

    ws = Workspace.open(args.workspace)
    name = ws.resolve_sae(args.sae)
    codes = workspace_codes(ws, name)
    print(f"workspace {ws.path}: {ws.n_documents} documents; SAE {name}: {codes.n_latents} latents, "
          f"k={codes.indices.shape[1]}")

    t_dense, dense = _median_time(lambda: dense_cooccurrence(codes), args.repeats)
    t_sparse, sparse = _median_time(lambda: cooccurrence(codes), args.repeats)
    assert np.array_equal(sparse.counts.toarray(), dense), "sparse and dense co-occurrence differ"
    print(f"co-occurrence  dense (seed) {t_dense:.3f}s   sparse (ours) {t_sparse:.3f}s   "
          f"speed-up x{t_dense / t_sparse:.1f}   (median of {args.repeats})")

    def stage():
        result = build_families(ws, name)
        write_families(ws, result)
        return result

    t_stage, result = _median_time(stage, args.repeats)
    s = result.stats
    print(f"families stage {t_stage:.2f}s (median of {args.repeats}, figures included): {s['families']} families, "
          f"co-occurrence ratio {s['cooccurrence_ratio']:.2f}, block ratio {s['block_ratio']:.2f} "
          f"(random {s['block_ratio_random']:.2f}), coverage {s['coverage']:.1%}")


if __name__ == "__main__":
    main()
