"""embedsae: interpretable, steerable sparse concepts for dense embeddings."""

from __future__ import annotations

from ._version import __version__

__all__ = ["__version__", "open", "Project", "Workspace", "load_sae", "TopKSAE", "BatchTopKSAE", "ReLUSAE",
           "EmbedSAEError"]


def __getattr__(name: str):
    # Lazy: importing embedsae must not import torch or sentence-transformers.
    if name in ("open", "Project"):
        from . import project

        return getattr(project, name)
    if name == "Workspace":
        from .workspace import Workspace

        return Workspace
    if name in ("load_sae", "TopKSAE", "BatchTopKSAE", "ReLUSAE"):
        from . import sae

        return getattr(sae, name)
    if name == "EmbedSAEError":
        from .errors import EmbedSAEError

        return EmbedSAEError
    raise AttributeError(f"module 'embedsae' has no attribute {name!r}")
