"""The `index` stage of `embedsae run`."""

from __future__ import annotations

from ..workspace import Workspace


def index_stage(ws: Workspace, sae_name: str, progress: bool = True) -> None:
    """Build the dense, concept and BM25 indexes with default settings for the SAE just trained."""
    from .index import build_index

    build_index(ws, sae_name, progress=progress)
