"""embedsae: interpretable, steerable sparse concepts for dense embeddings."""

from __future__ import annotations

import os as _os

from ._version import __version__

# The compiled CPU loops (training kernels, pursuit) run on Python threads beside torch's OpenMP threads; OpenMP
# workers that spin between parallel regions take those threads' cores (on 2 cores training ran 3.4x slower with
# spinning workers, 1,900 against 6,400 vectors/s) and the CPU of whatever else runs on the machine. Passive
# waiting is set here, before torch loads OpenMP, unless the environment already says otherwise.
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

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
