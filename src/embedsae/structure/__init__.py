"""Structure among an SAE's features: families (co-occurrence trees), neighbours, and matching across SAE sizes.

Public API::

    build_families(ws, sae=None, settings=FamilySettings()) -> FamiliesResult
    families_stage(ws, sae_name)            # the `run` stage: build, write families.json/.html/.png
    load_families(ws, sae=None) -> dict | None
    feature_neighbours(ws, feature, sae=None) -> dict
    match_saes(ws, from_sae, to_sae) -> dict
"""

from __future__ import annotations

from typing import Any

_EXPORTS = {
    "Family": "families", "FamilySettings": "settings", "match_saes": "matching",
    "feature_neighbours": "neighbours", "FamiliesResult": "stage", "build_families": "stage",
    "families_stage": "stage", "load_families": "stage",
}
__all__ = list(_EXPORTS)


def __getattr__(name: str) -> Any:
    # lazy, so that the command line can read FamilySettings without importing pandas
    import importlib

    if name in _EXPORTS:
        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
