"""Typed records: what `embedsae.Project` returns and every front end renders.

The CLI's `--json`, the HTTP API (its OpenAPI schema is generated from these classes) and the web templates all
show the same records, so a front end cannot ask for a key the library does not have: a score that was not
computed is `None` (shown as "–"), never a missing key. Records are plain dataclasses with no dependency beyond
the standard library; `to_dict()` gives their JSON form (NaN and infinities as null, numpy values as numbers).
"""

from .base import INTERPRETED, KEYWORDS, Record, number, plain
from .features import (
    ActivationsResponse,
    DocumentRef,
    DocumentView,
    FeatureActivation,
    FeatureCard,
    FeaturePage,
    FeatureScores,
    FeatureSummary,
    HistogramRecord,
    LabelHit,
    LabelSearch,
    TextActivations,
)
from .search import HitConcept, RetrievalRow, SearchHit, SearchResponse
from .stages import (
    FamiliesSummary,
    FileCheck,
    IndexSummary,
    InterpretSummary,
    JobProgress,
    JobRecord,
    MapSummary,
    Metrics,
    SaeSummary,
    TrainSummary,
    WorkspaceInfo,
)

__all__ = [
    "INTERPRETED", "KEYWORDS", "ActivationsResponse", "DocumentRef", "DocumentView", "FamiliesSummary",
    "FeatureActivation", "FeatureCard", "FeaturePage", "FeatureScores", "FeatureSummary", "FileCheck",
    "HistogramRecord", "HitConcept", "IndexSummary", "InterpretSummary", "JobProgress", "JobRecord", "LabelHit",
    "LabelSearch", "MapSummary", "Metrics", "Record", "RetrievalRow", "SaeSummary", "SearchHit", "SearchResponse",
    "TextActivations", "TrainSummary", "WorkspaceInfo", "number", "plain",
]
