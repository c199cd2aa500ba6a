"""Sparse autoencoders: one file per architecture behind a shared interface."""

from .base import SAE, ForwardOutput, SAEConfig, SparseCode, load_sae, nmse
from .batchtopk import BatchTopKSAE
from .relu import ReLUSAE
from .topk import TopKSAE

ARCHITECTURES: dict[str, type[SAE]] = {"topk": TopKSAE, "batchtopk": BatchTopKSAE, "relu": ReLUSAE}


def create_sae(cfg: SAEConfig) -> SAE:
    """A freshly initialised SAE of the configured architecture."""
    return ARCHITECTURES[cfg.architecture](cfg)


__all__ = [
    "SAE", "SAEConfig", "SparseCode", "ForwardOutput", "TopKSAE", "BatchTopKSAE", "ReLUSAE",
    "ARCHITECTURES", "create_sae", "load_sae", "nmse",
]
