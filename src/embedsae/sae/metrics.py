"""SAE quality: NMSE, L0, dead latents, feature density, activation size, neighbour fidelity."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..data.embedders import l2_normalise
from ..data.vectors import VectorSource, as_source
from ..progress import ProgressCallback
from .base import SAE
from .codes import Codes, decode_codes, encode_array


def nmse_np(x: np.ndarray, x_hat: np.ndarray) -> float:
    """||x - x_hat||^2 / ||x - mean(x)||^2."""
    if len(x) == 0:
        return float("nan")
    den = float(((x - x.mean(0)) ** 2).sum())
    return float(((x - x_hat) ** 2).sum()) / max(den, 1e-12)


def neighbour_overlap(x: np.ndarray, x_hat: np.ndarray, k: int = 10, max_queries: int = 2000, seed: int = 0) -> float:
    """Mean share of each vector's k nearest neighbours (cosine, self excluded) kept after reconstruction."""
    n = len(x)
    if n <= k:
        return float("nan")
    a, b = l2_normalise(x), l2_normalise(x_hat)
    q = np.random.default_rng(seed).choice(n, size=min(n, max_queries), replace=False)
    overlaps = []
    for start in range(0, len(q), 512):
        qs = q[start : start + 512]
        top = []
        for m in (a, b):
            s = m[qs] @ m.T
            s[np.arange(len(qs)), qs] = -np.inf
            top.append(np.argpartition(-s, k, axis=1)[:, :k])
        for r1, r2 in zip(*top):
            overlaps.append(len(np.intersect1d(r1, r2, assume_unique=True)) / k)
    return float(np.mean(overlaps))


def code_statistics(codes: Codes, bins: int = 20) -> dict[str, Any]:
    """L0, dead fraction, log10 density (mean and histogram) and mean active value of sparse codes."""
    active = codes.values > 0
    counts = np.bincount(codes.indices[active].ravel(), minlength=codes.n_latents)
    density = counts / max(len(codes), 1)
    alive = counts > 0
    sums = np.bincount(codes.indices[active].ravel(), weights=codes.values[active].ravel(), minlength=codes.n_latents)
    act_mean = sums[alive] / counts[alive]
    log_density = np.log10(density[alive]) if alive.any() else np.array([])
    hist, edges = np.histogram(log_density, bins=bins, range=(-np.log10(max(len(codes), 1)) - 0.01, 0.0))
    return {
        "l0": float(active.sum(1).mean()) if len(codes) else 0.0,
        "dead_fraction": float(1 - alive.mean()),
        "dead_latents": int((~alive).sum()),
        "log_feature_density": float(log_density.mean()) if len(log_density) else float("nan"),
        "log_feature_density_histogram": {"counts": hist.tolist(), "edges": [round(e, 4) for e in edges.tolist()]},
        "act_mean": float(act_mean.mean()) if len(act_mean) else 0.0,
    }


EVAL_ROWS = 16_384
"""Vectors an evaluation looks at: all of them up to this many; above, a seeded sample (`EVAL_SAMPLE`)."""
EVAL_SAMPLE = EVAL_ROWS // 4
"""Above EVAL_ROWS vectors, the evaluation reads this many (4,096) held-out vectors and this many training vectors
(each a seeded uniform sample of its split, so together they are drawn like the corpus): the held-out NMSE rests
on 4,096 vectors instead of the ~800 a uniform sample of 16,384 holds, at half the encoding cost. NMSE, code
statistics and the neighbour search then describe the sample; metrics.json says so."""
NEIGHBOUR_QUERIES = 2000
"""Query vectors of the 10-NN overlap (a seeded sample; their neighbours are searched among all evaluated rows)."""


def sample_rows(n: int, val_indices: np.ndarray | None, per_split: int, seed: int = 0) -> np.ndarray:
    """Sorted rows of a seeded evaluation sample of n vectors: up to `per_split` held-out rows and `per_split` other
    rows, each drawn uniformly from its split (2 x `per_split` uniform rows when nothing is held out)."""
    rng = np.random.default_rng(seed)
    held = np.unique(np.asarray(val_indices, np.int64)) if val_indices is not None and len(val_indices) else None
    if held is None:
        return np.sort(rng.choice(n, size=min(n, 2 * per_split), replace=False))
    take_held = rng.choice(held, size=min(len(held), per_split), replace=False)
    want = min(n - len(held), per_split)
    rest: np.ndarray = np.zeros(0, np.int64)
    while len(rest) < want:  # rejection: held-out rows are a small share
        draw = rng.choice(n, size=min(n, 2 * want + 64), replace=False)
        rest = np.unique(np.concatenate([rest, draw[~np.isin(draw, held)]]))
    rest = rng.permutation(rest)[:want]
    return np.sort(np.concatenate([take_held, rest]))


def evaluate_sae(
    sae: SAE, vectors: VectorSource | np.ndarray, *, val_indices: np.ndarray | None = None, neighbours: bool = True,
    codes: Codes | None = None, max_rows: int = EVAL_ROWS, seed: int = 0, progress: ProgressCallback | None = None,
) -> dict[str, Any]:
    """All quality figures of an SAE on a set of vectors (held-out NMSE when validation rows are given).

    `codes`, when given, are the codes of all of `vectors` and are reused instead of encoding again (only the
    rows evaluated are read). Above `max_rows` vectors, every figure is computed on a seeded sample
    (`sample_rows`: held-out and training vectors, as many of each), the only rows read, so memory
    stays bounded however large the source (`max_rows` // 4 per split; EVAL_SAMPLE by default).
    """
    source = as_source(vectors)
    n = source.shape[0]
    rows = None if n <= max_rows else sample_rows(n, val_indices, max(1, max_rows // 4), seed)
    x = source.read(0, n) if rows is None else source.take(rows)
    if codes is not None and len(codes) == n:
        if rows is not None:
            codes = Codes(codes.indices[rows], codes.values[rows], codes.n_latents)
    else:
        codes = encode_array(sae, x, progress=progress)
    x_hat = decode_codes(sae, codes)
    out: dict[str, Any] = {"n_vectors": int(len(x)), "k": sae.cfg.k, "n_latents": sae.cfg.n_latents}
    out["sample"] = None if rows is None else {
        "rows": int(len(x)), "of": int(n), "seed": seed,
        "what": "NMSE (all, held-out, train), code statistics and the 10-NN overlap are computed on these rows only: "
                f"up to {max(1, max_rows // 4)} held-out and as many training vectors, each a uniform sample of its split",
    }
    out["nmse_all"] = nmse_np(x, x_hat)
    held = np.zeros(n, bool)
    if val_indices is not None and len(val_indices):
        held[val_indices] = True
    held = held if rows is None else held[rows]
    if held.any():
        out["nmse"] = nmse_np(x[held], x_hat[held])
        out["nmse_train"] = nmse_np(x[~held], x_hat[~held])
        out["n_heldout"] = int(held.sum())
    else:
        out["nmse"] = out["nmse_all"]
        out["nmse_train"] = out["nmse_all"]
        out["n_heldout"] = 0
    out.update(code_statistics(codes))
    out["neighbour_overlap_at_10"] = neighbour_overlap(x, x_hat, max_queries=NEIGHBOUR_QUERIES, seed=seed) if neighbours else None
    out["neighbour_queries"] = min(len(x), NEIGHBOUR_QUERIES) if neighbours else 0
    return out
