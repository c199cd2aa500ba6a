"""Feature interpretation: examples, labels and scores per SAE feature, kept in SQLite in the workspace.

The two accessors below are the contract other views (search hits, neighbours, families, feature cards, the
map) rely on: every view takes its labels from `feature_labels`, so a feature reads the same everywhere. They
open the store read-only and never write a file.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .. import layout
from ..records import INTERPRETED, KEYWORDS

if TYPE_CHECKING:
    from ..sae.codes import Codes
    from ..workspace import Workspace

__all__ = ["INTERPRETED", "KEYWORDS", "FeatureLabels", "clean_features", "feature_labels"]


class FeatureLabels(dict):
    """Feature id -> label, and where the labels come from (`source`: INTERPRETED or KEYWORDS)."""

    def __init__(self, labels: dict[int, str], source: str) -> None:
        super().__init__(labels)
        self.source = source

    @property
    def interpreted(self) -> bool:
        """False for the quick keyword labels of an SAE that `interpret` has not labelled yet."""
        return self.source == INTERPRETED


def feature_labels(ws: Workspace, sae: str | None = None, *, codes: Codes | None = None) -> FeatureLabels:
    """The label of every labelled feature: the interpret stage's labels, or, for an SAE never interpreted,
    quick keyword labels from the titles of each feature's top documents (`source` says which).

    `codes` (the SAE's codes of the workspace's documents) saves loading them for the keyword fallback.
    """
    from .store import stored_labels

    name = ws.resolve_sae(sae)
    labels = stored_labels(ws.sae_file(name, layout.FEATURES_DB))
    if labels:
        return FeatureLabels(labels, INTERPRETED)
    from ..sae.codes import workspace_codes
    from .title_labels import title_keyword_labels

    codes = codes if codes is not None else workspace_codes(ws, name)
    return FeatureLabels(title_keyword_labels(ws.titles(), codes.to_csr().tocsc()), KEYWORDS)


def clean_features(ws: Workspace, sae: str | None = None) -> set[int] | None:
    """Ids of the features that pass the clean-feature filter, or None when the SAE is not interpreted."""
    from .store import stored_clean_ids

    return stored_clean_ids(ws.sae_file(ws.resolve_sae(sae), layout.FEATURES_DB))
