"""The `index` stage of `embedsae run`."""

from __future__ import annotations

from ..progress import ProgressCallback
from ..workspace import Workspace


def index_stage(ws: Workspace, sae_name: str, progress: ProgressCallback | None = None) -> None:
    """Build every registered index with default settings for the SAE just trained."""
    from .index import build_index

    build_index(ws, sae_name, progress=progress)
