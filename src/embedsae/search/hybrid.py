"""The hybrid mode: fusing the rankings of registered retrievers (reciprocal-rank fusion or normalised score
fusion, with a weight per part)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from ..errors import InputError, WorkspaceError
from ..settings import Settings, check
from .retriever import Query, Retriever, retriever_class, retriever_names

FUSIONS = ("rrf", "zscore", "minmax", "dbsf", "score")
DEFAULT_PARTS = (("dense", "bm25"), ("concept", "bm25"))
"""The hybrid's parts when `weights` is not set: the first of these pairs the workspace has indexes for, with
equal weights. Chosen on four development collections (benchmarks/retrieval_matrix.py: Cranfield,
arxiv-titles, arxiv-sentences, arxiv-keywords) and checked on a held-out one (cranfield-titles): dense + BM25
fused by z-score over each part's top 200 beats every single part on all five (nDCG@10 0.404 / 0.952 / 0.691
/ 0.701 / 0.764), is within 0.005 of every equal-weight fusion of two parts on each, and best on the mean of
the four; concept + BM25 (what an index built without the dense part fuses) is 0.000-0.003 below it from a
third of its bytes; adding the third part lowers the mean."""


@dataclass
class HybridSettings(Settings):
    """How the hybrid mode fuses its parts."""

    fusion: Literal["rrf", "zscore", "minmax", "dbsf", "score"] = "zscore"
    """Hybrid fusion: rrf (reciprocal-rank fusion), or a weighted sum of each part's scores normalised over its
    hits by zscore, minmax (also called score) or dbsf (mean +- 3 sd, clipped)."""
    weights: str | None = None
    """Hybrid parts and their weights as NAME=WEIGHT,... (e.g. dense=1,bm25=1; 0 leaves a part out); default:
    dense=1,bm25=1, or concept=1,bm25=1 where there is no dense index."""
    rrf_k: float = 60.0
    """Reciprocal-rank fusion constant k in 1 / (k + rank)."""
    depth: int = 200
    """Hits each part contributes to the fusion (its scores are normalised over them)."""

    def __post_init__(self) -> None:
        if isinstance(self.weights, Mapping):
            self.weights = ",".join(f"{k}={v}" for k, v in self.weights.items())
        super().__post_init__()

    def validate(self) -> None:
        super().validate()
        check(self.rrf_k >= 0 and self.depth > 0, f"`rrf_k` must be >= 0 and `depth` > 0 (got {self.rrf_k}, {self.depth})")
        self.part_weights()

    def part_weights(self) -> dict[str, float] | None:
        """The weights that were set (checked against the registered parts), or None for the default."""
        if self.weights is None:
            return None
        return parse_weights(self.weights, fusable_names())


def fusable_names() -> tuple[str, ...]:
    """The registered modes that can be parts of the hybrid."""
    return tuple(n for n in retriever_names() if retriever_class(n).fusable)


def normalise(scores: np.ndarray, method: str) -> np.ndarray:
    """One part's retrieved scores on a common scale: minmax to [0, 1], zscore (mean 0, sd 1), or dbsf
    (mean +- 3 sd mapped to [0, 1], clipped)."""
    s = np.asarray(scores, np.float64)
    if len(s) == 0:
        return s
    if method in ("minmax", "score"):
        lo, hi = float(s.min()), float(s.max())
        return (s - lo) / (hi - lo) if hi > lo else np.zeros_like(s)
    mean, sd = float(s.mean()), float(s.std())
    if sd <= 0:
        return np.zeros_like(s)
    if method == "zscore":
        return (s - mean) / sd
    if method == "dbsf":
        return np.clip((s - (mean - 3 * sd)) / (6 * sd), 0.0, 1.0)
    raise InputError(f"unknown fusion '{method}'; use one of {', '.join(FUSIONS)}")


def fuse(
    ranked: Mapping[str, tuple[np.ndarray, np.ndarray]], weights: Mapping[str, float], method: str = "rrf",
    k: float = 60.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Fuse the rankings of several parts (name -> (rows, scores), best first) into one, best first.

    rrf: sum of weight / (k + rank), rank counted from 1. The others: weighted sum of each part's scores
    normalised over its retrieved list; a document a part did not retrieve gets that part's lowest value.
    Documents with equal fused scores (dbsf clips, so it makes many) are ordered by the weighted sum of their
    unclipped z-scores, then by the weighted sum of 1 / (k + rank) over the parts; only documents equal on all
    three keep document order.
    """
    if not ranked:
        raise InputError("hybrid search needs at least one ranking to fuse")
    cand = np.unique(np.concatenate([np.asarray(rows, np.int64) for rows, _ in ranked.values()]))
    at = {name: np.searchsorted(cand, np.asarray(rows, np.int64)) for name, (rows, _) in ranked.items()}

    def summed(values: Callable[[np.ndarray], np.ndarray], missing_lowest: bool) -> np.ndarray:
        """Per candidate, the weighted sum over the parts of values(scores); a document a part did not
        retrieve gets that part's lowest value (missing_lowest) or 0."""
        total = np.zeros(len(cand), np.float64)
        for name, (_, scores) in ranked.items():
            v = values(np.asarray(scores, np.float64))
            part = np.full(len(cand), float(v.min()) if missing_lowest and len(v) else 0.0)
            part[at[name]] = v
            total += float(weights.get(name, 1.0)) * part
        return total

    def reciprocal(scores: np.ndarray) -> np.ndarray:
        return 1.0 / (k + np.arange(1, len(scores) + 1))

    if method == "rrf":
        total = summed(reciprocal, False)
    else:
        total = summed(lambda s: normalise(s, method), True)
    order = np.argsort(-total, kind="stable")
    if np.any(np.diff(total[order]) == 0):  # ties: the unclipped z-scores (zscore's own), then the parts' ranks
        keys = [-(total if method == "rrf" else summed(reciprocal, False)), -total]
        if method != "zscore":
            keys.insert(1, -summed(lambda s: normalise(s, "zscore"), True))
        order = np.lexsort(keys)
    return cand[order], total[order]


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


class HybridRetriever(Retriever):
    """Fuses the rankings of the parts named by the Searcher's hybrid settings."""

    name = "hybrid"
    fusable = False
    index_part = False

    def parts(self, text: bool = True) -> dict[str, float]:
        """Part name -> weight of the parts this query fuses (those needing the text only when there is one)."""
        searcher = self.searcher
        weights = searcher.hybrid.part_weights()
        if weights is None:
            pair = next((pair for pair in DEFAULT_PARTS if all(searcher.available(p) for p in pair)), None)
            weights = dict.fromkeys(pair or [p for p in fusable_names() if searcher.available(p)], 1.0)
        parts = {p: w for p, w in weights.items() if w > 0 and (text or not retriever_class(p).needs_text)}
        if not parts:
            raise InputError("hybrid search has no part with a weight above 0: set the hybrid `weights`, "
                             "e.g. dense=1,bm25=1")
        return parts

    def rank(self, query: Query, k: int) -> tuple[np.ndarray, np.ndarray]:
        settings = self.searcher.hybrid
        parts = self.parts(query.text is not None)
        depth = max(settings.depth, k)
        ranked = {p: self.searcher.retriever(p).rank(query, depth) for p in parts}
        rows, scores = fuse(ranked, parts, settings.fusion, settings.rrf_k)
        return rows[:k], scores[:k]

    def size(self) -> int:
        return sum(self.searcher.retriever(p).size() for p in self.parts())

    def available(self) -> bool:
        try:
            return all(self.searcher.available(p) for p in self.parts())
        except (InputError, WorkspaceError):
            return False

    def describe(self) -> dict[str, Any]:
        """The parts and fusion of this hybrid, for reports."""
        h = self.searcher.hybrid
        return {"parts": self.parts(), "fusion": h.fusion, "depth": h.depth, "rrf_k": h.rrf_k}
