"""Search: exact and approximate dense retrieval, concept-level sparse retrieval over SAE latents (CL-SR),
BM25, hybrid fusion, steering by feature edits, per-hit explanations and IR evaluation."""

from __future__ import annotations

from .concept import ConceptIndex, ConceptSettings
from .index import adopt_sae, build_index
from .searcher import MODES, Searcher, SearchResult
from .steering import Steering

__all__ = [
    "MODES", "ConceptIndex", "ConceptSettings", "SearchResult", "Searcher", "Steering", "adopt_sae", "build_index",
    "search",
]


def search(ws, query, mode: str = "dense", top: int = 10, *, sae: str | None = None, steer=None, **kwargs) -> SearchResult:
    """One-off search of a workspace (opens a Searcher; keep a Searcher for many queries)."""
    return Searcher(ws, sae, **kwargs).search(query, mode, top, steer=steer)
