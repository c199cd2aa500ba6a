"""Sparse autoencoders: one file per architecture behind a shared interface.

An architecture is a subclass of `SAE` in its own module, registered with `@register_architecture`; the
built-in ones are listed in `embedsae.registry.ARCHITECTURES` (a plugin may register from anywhere before use).
Importing this package does not import torch: its names load on first use.
"""

from __future__ import annotations

from typing import Any

_EXPORTS = {
    "SAE": "base", "SAEConfig": "config", "TrainConfig": "config", "SparseCode": "base", "ForwardOutput": "base", "load_sae": "base",
    "nmse": "base", "register_architecture": "base", "create_sae": "base",
    "TopKSAE": "topk", "BatchTopKSAE": "batchtopk", "ReLUSAE": "relu",
}

__all__ = [*_EXPORTS, "ARCHITECTURES"]


def __getattr__(name: str) -> Any:
    import importlib

    if name == "ARCHITECTURES":
        from ..registry import ARCHITECTURES

        return ARCHITECTURES
    if name in _EXPORTS:
        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
