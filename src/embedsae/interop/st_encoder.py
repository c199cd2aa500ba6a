"""An SAE with its embedding model as one sentence-transformers `SparseEncoder`: text in, sparse codes out.

Plain top-k SAEs use sentence-transformers' own `SparseAutoEncoder` module (same encoder: subtract
`pre_bias`, `encoder` + `latent_bias`, top-k, ReLU), so the folder loads without embedsae and without
`trust_remote_code`. Other encoders (matching pursuit, BatchTopK, ReLU) use `EmbedSAEModule`, which wraps
embedsae's SAE; loading such a folder needs embedsae installed and (sentence-transformers 6) `trust_remote_code=True`,
since the class lies outside the `sentence_transformers` package. Needs sentence-transformers >= 5.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from ..errors import InputError, MissingDependencyError, WorkspaceError, require
from ..sae import SAE, SAEConfig, create_sae


def _st_modules():
    """sentence-transformers' SparseEncoder, SparseAutoEncoder, Normalize and Module base (5.x and 6.x layouts)."""
    st = require("sentence_transformers", "Exporting a SparseEncoder")
    if not hasattr(st, "SparseEncoder"):
        raise MissingDependencyError(
            f"a SparseEncoder needs sentence-transformers >= 5 (installed: {st.__version__}); "
            "upgrade it with: pip install -U 'sentence-transformers>=5'"
        )
    try:
        from sentence_transformers.base.modules.module import Module
        from sentence_transformers.sparse_encoder.modules import SparseAutoEncoder
    except ImportError:  # sentence-transformers 5.x
        from sentence_transformers.models import Module
        from sentence_transformers.sparse_encoder.models import SparseAutoEncoder
    from sentence_transformers.models import Normalize

    return st.SparseEncoder, SparseAutoEncoder, Normalize, Module


def _module_base():
    try:
        return _st_modules()[3]
    except (MissingDependencyError, ImportError):
        return torch.nn.Module


class EmbedSAEModule(_module_base()):
    """A sentence-transformers module that encodes `sentence_embedding` with an embedsae SAE (any encoder)."""

    config_keys = ["sae_config"]
    forward_kwargs = {"max_active_dims"}

    def __init__(self, sae_config: dict[str, Any]) -> None:
        super().__init__()
        self.sae_config = dict(sae_config)
        self.sae = create_sae(SAEConfig.from_dict(self.sae_config))

    @classmethod
    def from_sae(cls, sae: SAE) -> EmbedSAEModule:
        """A module holding a copy of `sae`'s weights and configuration."""
        module = cls(sae.cfg.to_dict())
        module.sae.load_state_dict(sae.state_dict())
        return module

    def forward(self, features: dict[str, torch.Tensor], max_active_dims: int | None = None) -> dict[str, torch.Tensor]:
        x = features["sentence_embedding"]
        features["sentence_embedding"] = self.sae.encode(x, k=max_active_dims).to(x.dtype)
        return features

    def get_embedding_dimension(self) -> int:
        return self.sae.cfg.n_latents

    def save(self, output_path: str, *args: Any, safe_serialization: bool = True, **kwargs: Any) -> None:
        self.save_config(output_path)
        self.save_torch_weights(output_path, safe_serialization=safe_serialization)

    @classmethod
    def load(cls, model_name_or_path: str, subfolder: str = "", token: bool | str | None = None,
             cache_folder: str | None = None, revision: str | None = None, local_files_only: bool = False,
             **kwargs: Any) -> EmbedSAEModule:
        hub = {"subfolder": subfolder, "token": token, "cache_folder": cache_folder, "revision": revision,
               "local_files_only": local_files_only}
        model = cls(**cls.load_config(model_name_or_path=model_name_or_path, **hub))
        return cls.load_torch_weights(model_name_or_path=model_name_or_path, model=model, **hub)


def sae_module(sae: SAE) -> torch.nn.Module:
    """The sentence-transformers module that encodes like `sae`: the built-in one for plain top-k, else ours."""
    _, SparseAutoEncoder, _, _ = _st_modules()
    cfg = sae.cfg
    if cfg.architecture != "topk" or cfg.pursuit:
        return EmbedSAEModule.from_sae(sae)
    module = SparseAutoEncoder(input_dim=cfg.d_in, hidden_dim=cfg.n_latents, k=cfg.k, k_aux=cfg.effective_aux_k,
                               normalize=False)
    with torch.no_grad():
        module.encoder.weight.copy_(sae.W_enc.detach().cpu())
        module.latent_bias.copy_(sae.b_lat.detach().cpu())
        module.pre_bias.copy_(sae.b_pre.detach().cpu())
    return module


def export_sparse_encoder(ws, sae: SAE, out: str | os.PathLike) -> Path:
    """Save the workspace's embedding model followed by `sae` as a SparseEncoder folder (SparseEncoder(out) loads it)."""
    from ..data.embedders import SentenceTransformerEmbedder

    SparseEncoder, _, Normalize, _ = _st_modules()
    try:
        embedder = ws.embedder()
    except WorkspaceError as exc:
        raise InputError(f"a SparseEncoder needs the workspace's embedding model: {exc}") from exc
    if not isinstance(embedder, SentenceTransformerEmbedder):
        raise InputError(
            f"workspace {ws.path} was embedded with '{ws.model_id}', not a sentence-transformers model; a SparseEncoder "
            "can only wrap a sentence-transformers model"
        )
    modules = list(embedder._model)
    if embedder.normalize and not any(isinstance(m, Normalize) for m in modules):
        modules.append(Normalize())
    model = SparseEncoder(modules=[*modules, sae_module(sae.cpu())], device="cpu")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    model.save(str(out))
    return out
