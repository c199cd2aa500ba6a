"""Structure among an SAE's features: families (co-occurrence trees), neighbours, and matching across SAE sizes.

Public API::

    build_families(ws, sae=None, settings=FamilySettings()) -> FamiliesResult
    families_stage(ws, sae_name)            # the `run` stage: build, write families.json/.html/.png
    load_families(ws, sae=None) -> dict | None
    feature_neighbours(ws, feature, sae=None) -> dict
    match_saes(ws, from_sae, to_sae) -> dict
"""

from __future__ import annotations

from .families import Family, FamilySettings
from .matching import match_saes
from .neighbours import feature_neighbours
from .stage import FamiliesResult, build_families, families_stage, load_families

__all__ = [
    "Family", "FamilySettings", "FamiliesResult", "build_families", "families_stage", "load_families",
    "feature_neighbours", "match_saes",
]
