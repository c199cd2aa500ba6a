"""Fusing rankings: reciprocal-rank fusion and normalised score fusion, with weights per ranking."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from ..errors import InputError

FUSIONS = ("rrf", "score")


def rrf(rankings: Mapping[str, np.ndarray], weights: Mapping[str, float], n_docs: int, k: float = 60.0) -> np.ndarray:
    """Reciprocal-rank fusion: sum over rankings of weight / (k + rank), rank counted from 1.

    `rankings` maps a name to document rows, best first (documents absent from a ranking add nothing).
    """
    out = np.zeros(n_docs, np.float64)
    for name, rows in rankings.items():
        rows = np.asarray(rows, np.int64)
        out[rows] += float(weights.get(name, 1.0)) / (k + np.arange(1, len(rows) + 1))
    return out


def score_fusion(scores: Mapping[str, np.ndarray], weights: Mapping[str, float]) -> np.ndarray:
    """Normalised score fusion: each score vector min-max scaled to [0, 1], then a weighted sum."""
    out = None
    for name, s in scores.items():
        s = np.asarray(s, np.float64)
        lo, hi = float(s.min()), float(s.max())
        scaled = (s - lo) / (hi - lo) if hi > lo else np.zeros_like(s)
        part = float(weights.get(name, 1.0)) * scaled
        out = part if out is None else out + part
    if out is None:
        raise InputError("hybrid search needs at least one ranking to fuse")
    return out


def parse_weights(text: str | Mapping[str, float] | None, allowed: tuple[str, ...]) -> dict[str, float]:
    """Weights from 'dense=1,concept=1,bm25=0.5' (or a mapping), checked against the allowed names."""
    if text is None:
        return {}
    if isinstance(text, Mapping):
        items = dict(text)
    else:
        items = {}
        for part in str(text).split(","):
            if not part.strip():
                continue
            name, sep, value = part.partition("=")
            try:
                items[name.strip()] = float(value) if sep else float("nan")
            except ValueError:
                items[name.strip()] = float("nan")
    for name, value in items.items():
        if name not in allowed or not np.isfinite(value) or value < 0:
            raise InputError(
                f"bad hybrid weight '{name}={value}': use NAME=WEIGHT with NAME one of {', '.join(allowed)} and "
                "WEIGHT a number >= 0, e.g. dense=1,concept=1,bm25=0.5"
            )
    return {k: float(v) for k, v in items.items()}
