"""The one door: a `Project` is one workspace and one of its SAEs, with every operation a user has. The CLI and
the web app only parse, call a Project and format what it returns (typed records, `embedsae.records`); library
users get the same object.

    import embedsae
    p = embedsae.open("ws")                      # the latest trained SAE; embedsae.open("ws", sae="topk-k32-n3072")
    p.features(search="galaxy", sort="score")    # a FeaturePage of FeatureSummary records
    p.feature(12)                                # a FeatureCard
    p.search("black holes", mode="hybrid", steer=["spiral galaxy=-0.4"])
    p.run_stage("interpret")                     # any stage by kind, as the app's jobs run them

A Project computes what is expensive once (the SAE, its codes, co-occurrence, labels, the feature table, the
searchers) and keeps it while the files it came from are unchanged, so a warm Project answers a card, neighbours
or a search in milliseconds, and a stage that rewrites those files (here or in another process) shows at the next
read. Reading never writes a file. A Project is safe to share between threads: parts are built under a lock.

The methods are grouped by what they do: cached parts (`_parts.py`), reads (`_reads.py`), search (`_search.py`),
stages (`_stages.py`), words, maps and other tools' formats (`_words.py`).
"""

from __future__ import annotations

import os

from ..records import (
    INTERPRETED,
    KEYWORDS,
    ActivationsResponse,
    DocumentView,
    FamiliesSummary,
    FeatureActivation,
    FeatureCard,
    FeaturePage,
    FeatureScores,
    FeatureSummary,
    FileCheck,
    IndexSummary,
    InterpretSummary,
    JobProgress,
    JobRecord,
    LabelHit,
    LabelSearch,
    Metrics,
    RetrievalRow,
    SaeSummary,
    SearchHit,
    SearchResponse,
    TextActivations,
    TrainSummary,
    WorkspaceInfo,
    plain,
)
from ._reads import FEATURE_SORTS
from ._words import Words

__all__ = [
    "FEATURE_SORTS", "ActivationsResponse", "LabelSearch", "INTERPRETED", "KEYWORDS", "DocumentView", "FamiliesSummary", "FeatureActivation", "FeatureCard",
    "FeaturePage", "FeatureScores", "FeatureSummary", "FileCheck", "IndexSummary", "InterpretSummary", "JobProgress", "JobRecord", "LabelHit",
    "Metrics", "Project", "RetrievalRow", "SaeSummary", "SearchHit", "SearchResponse", "TextActivations",
    "TrainSummary", "WorkspaceInfo", "open", "plain",
]


class Project(Words):
    """One workspace and one of its SAEs, with the operations a user has. Build with `embedsae.open`."""

    def use(self, sae: str) -> Project:
        """A project on another SAE of the same workspace."""
        return Project(self.workspace, self.workspace.resolve_sae(sae))


def open(path: str | os.PathLike, sae: str | None = None) -> Project:  # noqa: A001 - the natural name
    """Open a workspace (and one of its SAEs, the latest trained by default) as a Project."""
    return Project(path, sae)
