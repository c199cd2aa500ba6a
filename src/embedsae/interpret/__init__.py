"""Feature interpretation: examples, labels and scores per SAE feature, kept in SQLite in the workspace.

The two accessors below are the contract other stages (families, search, the app) rely on; they work
(returning nothing) before `embedsae interpret` has run, and never write.
"""

from __future__ import annotations

from .. import layout
from ..workspace import Workspace


def feature_labels(ws: Workspace, sae: str | None = None) -> dict[int, str]:
    """Feature id -> label for an interpreted SAE; empty when it has not been interpreted."""
    from .store import stored_labels

    return stored_labels(ws.sae_file(ws.resolve_sae(sae), layout.FEATURES_DB))


def clean_features(ws: Workspace, sae: str | None = None) -> set[int] | None:
    """Ids of the features that pass the clean-feature filter, or None when the SAE is not interpreted."""
    from .store import stored_clean_ids

    return stored_clean_ids(ws.sae_file(ws.resolve_sae(sae), layout.FEATURES_DB))
