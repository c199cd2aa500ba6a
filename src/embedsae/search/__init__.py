"""Search: exact and approximate dense retrieval, concept-level sparse retrieval over SAE latents (CL-SR),
BM25, hybrid fusion, steering by feature edits, per-hit explanations and IR evaluation.

Every search mode is a registered retriever (`embedsae.search.retriever`): `retriever_names()` lists them.
"""

from __future__ import annotations

from typing import Any

from .concept import ConceptIndex, ConceptSettings
from .hybrid import HybridSettings
from .index import adopt_sae, build_index
from .retriever import Query, Retriever, register_retriever, retriever_names
from .searcher import Searcher, SearchResult
from .steering import Steering

__all__ = [
    "ConceptIndex", "ConceptSettings", "HybridSettings", "Query", "Retriever", "SearchResult", "Searcher", "Steering",
    "adopt_sae", "build_index", "register_retriever", "retriever_names", "search",
]


def __getattr__(name: str) -> Any:
    if name == "MODES":  # the registered modes, read when asked (kept for code written before the registry)
        return retriever_names()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def search(ws, query, mode: str = "dense", top: int = 10, *, sae: str | None = None, steer=None, **kwargs) -> SearchResult:
    """One-off search of a workspace (opens a Searcher; keep a Searcher for many queries)."""
    return Searcher(ws, sae, **kwargs).search(query, mode, top, steer=steer)
