"""Settings of the structure stages (kept apart from the maths, so front ends read them without numpy)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal

from ..settings import Range, Settings, check


@dataclass
class FamilySettings(Settings):
    """Parameters of family finding (defaults: the seed's values)."""

    threshold: Annotated[float, Range(ge=0, lt=1)] = 0.1
    """Normalised co-occurrence below which an edge is dropped before the spanning tree (seed: 0.1)."""
    normalisation: Literal["sqrt", "min", "max"] = "sqrt"
    """Edge weight: co-occurrence / "sqrt" (sqrt(n_i n_j); ours, keeps very general features from swallowing
    the tree), "min" (min(n_i, n_j): P(denser | sparser)) or "max" (max(n_i, n_j): P(sparser | denser))."""
    rounds: int = 4
    """Passes over the tree: the first, then one more per removal of the parents found (seed: 1 + 3)."""
    min_root_children: int = 3
    """Direct children a root needs to start a family (seed: more than two)."""
    min_children: int = 4
    """Children (all descendants) a family needs to be kept (seed: more than three)."""
    max_jaccard: float = 0.6
    """Families whose children overlap more than this (Jaccard) are near-duplicates; the larger one stays."""
    max_density: Annotated[float, Range(gt=0, le=1)] = 0.2
    """Features firing in more than this share of documents are left out (seed: 0.2)."""
    random_permutations: int = 10
    """Random feature orders averaged for `block_ratio_random`."""
    seed: int = 0
    """Seed of those random orders."""

    def validate(self) -> None:
        super().validate()
        check(0 <= self.threshold < 1, f"threshold must be in [0, 1), got {self.threshold}")
        check(self.rounds >= 1, f"rounds must be at least 1, got {self.rounds}")
        check(self.min_root_children >= 1 and self.min_children >= 1,
              "min_root_children and min_children must be at least 1")
        check(0 < self.max_jaccard <= 1, f"max_jaccard must be in (0, 1], got {self.max_jaccard}")
        check(0 < self.max_density <= 1, f"max_density must be in (0, 1], got {self.max_density}")
