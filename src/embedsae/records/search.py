"""Records of search: hits with the concepts that explain them, responses, retrieval figures."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from .base import Record, plain
from .features import FeatureActivation


@dataclass
class HitConcept(Record):
    """A feature a hit shares with the query and its share of the hit's concept score."""

    feature: int
    label: str
    contribution: float
    share: float


@dataclass
class SearchHit(Record):
    """One ranked document."""

    rank: int
    id: str
    title: str
    score: float
    row: int | None = None
    concepts: list[HitConcept] | None = None
    """The shared concepts that explain the hit (None when explanations were not asked for or not available)."""


@dataclass
class SearchResponse(Record):
    """The hits of one query, with the steering report when it was steered."""

    query: str
    mode: str
    hits: list[SearchHit]
    seconds: float = 0.0
    sae: str | None = None
    steering: dict[str, Any] | None = None
    """The edits applied to the query's features and the cosine between the original and steered query."""
    query_features: list[FeatureActivation] | None = None
    """The query's active features (id, name, activation), when asked for (the steering sliders)."""


@dataclass
class RetrievalRow(Record):
    """One mode's figures on a retrieval benchmark (JSON keys as ranx names them: "ndcg@10", ...)."""

    mode: str
    queries: int
    ndcg_at_10: float
    mrr_at_10: float
    recall_at_100: float
    latency_ms: dict[str, float] = field(default_factory=dict)
    """Per-query ranking time, milliseconds: median and p95 (query embedding not included)."""
    query_embedding_ms: float = 0.0
    index_bytes: int = 0
    split: str = "test"
    documents: int = 0
    sae: str | None = None
    details: dict[str, Any] = field(default_factory=dict)
    """What else the mode reports (the hybrid's parts and fusion, ...)."""

    def to_dict(self) -> dict[str, Any]:
        out = {k.replace("_at_", "@"): v for k, v in super().to_dict().items() if k != "details"}
        return {**out, **plain(self.details)}

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> RetrievalRow:
        data = {k.replace("@", "_at_"): v for k, v in (data or {}).items()}
        known = {f.name for f in dataclasses.fields(cls)}
        extra = {k.replace("_at_", "@"): v for k, v in data.items() if k not in known}
        return cls(**{k: v for k, v in data.items() if k in known and k != "details"}, details=extra)
