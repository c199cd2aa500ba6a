"""The hybrid mode: fusing the rankings of registered retrievers (reciprocal-rank fusion or normalised score
fusion, with a weight per part)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from ..errors import InputError, WorkspaceError
from ..settings import Settings, check
from .retriever import Query, Retriever, retriever_class, retriever_names

FUSIONS = ("rrf", "score")
DEFAULT_WEIGHTS = {"dense": 1.0, "concept": 1.0, "bm25": 1.0}
"""The hybrid's parts when `weights` is not set: those of them the workspace has an index for."""


@dataclass
class HybridSettings(Settings):
    """How the hybrid mode fuses its parts."""

    fusion: Literal["rrf", "score"] = "rrf"
    """Hybrid fusion: rrf (reciprocal-rank fusion) or score (min-max normalised scores, weighted sum)."""
    weights: str | None = None
    """Hybrid parts and their weights as NAME=WEIGHT,... (e.g. dense=1,bm25=1; 0 leaves a part out); default:
    dense=1,concept=1,bm25=1 over the parts the workspace has an index for."""
    rrf_k: float = 60.0
    """Reciprocal-rank fusion constant k in 1 / (k + rank)."""
    depth: int = 100
    """Hits each part contributes to the fusion."""

    def __post_init__(self) -> None:
        if isinstance(self.weights, Mapping):
            self.weights = ",".join(f"{k}={v}" for k, v in self.weights.items())
        super().__post_init__()

    def validate(self) -> None:
        super().validate()
        check(self.rrf_k >= 0 and self.depth > 0, f"rrf_k must be >= 0 and depth > 0 (got {self.rrf_k}, {self.depth})")
        self.part_weights()

    def part_weights(self) -> dict[str, float] | None:
        """The weights that were set (checked against the registered parts), or None for the default."""
        if self.weights is None:
            return None
        return parse_weights(self.weights, fusable_names())


def fusable_names() -> tuple[str, ...]:
    """The registered modes that can be parts of the hybrid."""
    return tuple(n for n in retriever_names() if retriever_class(n).fusable)


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
            weights = {p: w for p, w in DEFAULT_WEIGHTS.items() if p in fusable_names() and searcher.available(p)}
        parts = {p: w for p, w in weights.items() if w > 0 and (text or not retriever_class(p).needs_text)}
        if not parts:
            raise InputError("hybrid search has no part with a weight above 0: set the hybrid `weights`, "
                             "e.g. dense=1,bm25=1")
        return parts

    def rank(self, query: Query, k: int) -> tuple[np.ndarray, np.ndarray]:
        from .dense import top_k

        settings = self.searcher.hybrid
        parts = self.parts(query.text is not None)
        n = self.searcher.ws.n_documents
        depth = max(settings.depth, k)
        ranked = {p: self.searcher.retriever(p).rank(query, depth) for p in parts}
        if settings.fusion == "rrf":
            fused = rrf({p: rows for p, (rows, _) in ranked.items()}, parts, n, settings.rrf_k)
        else:
            scores = {}
            for p, (rows, vals) in ranked.items():
                full = np.full(n, float(vals.min()) if len(vals) else 0.0)
                full[rows] = vals
                scores[p] = full
            fused = score_fusion(scores, parts)
        i, s = top_k(fused[None, :], k)
        return i[0], s[0]

    def size(self) -> int:
        return sum(self.searcher.retriever(p).size() for p in self.parts())

    def available(self) -> bool:
        try:
            return all(self.searcher.available(p) for p in self.parts())
        except (InputError, WorkspaceError):
            return False

    def describe(self) -> dict[str, Any]:
        """The parts and fusion of this hybrid, for reports."""
        return {"parts": self.parts(), "fusion": self.searcher.hybrid.fusion}
