"""Encoding many vectors into sparse codes, and the stored codes of a workspace's documents."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .._io import atomic_path
from .base import SAE


@dataclass
class Codes:
    """Sparse codes of many vectors: per row, `indices` (int32) and `values` (float32), zero-padded."""

    indices: np.ndarray
    values: np.ndarray
    n_latents: int

    def __len__(self) -> int:
        return len(self.indices)

    def to_csr(self):
        """The codes as a scipy CSR matrix (rows x n_latents), zeros dropped (the codes themselves are left unchanged)."""
        import scipy.sparse as sp

        n, k = self.indices.shape
        mat = sp.csr_matrix(
            (self.values.ravel().copy(), self.indices.ravel().astype(np.int64), np.arange(0, n * k + 1, k)),
            shape=(n, self.n_latents),
        )
        mat.eliminate_zeros()
        mat.sort_indices()
        return mat

    def density(self) -> np.ndarray:
        """Share of rows in which each latent fires."""
        active = self.values > 0
        counts = np.bincount(self.indices[active].ravel(), minlength=self.n_latents)
        return counts / max(len(self), 1)

    def save(self, path: str | os.PathLike) -> None:
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as f:
                np.savez(f, indices=self.indices, values=self.values, n_latents=np.int64(self.n_latents))

    @classmethod
    def load(cls, path: str | os.PathLike) -> Codes:
        with np.load(Path(path)) as z:
            return cls(z["indices"], z["values"], int(z["n_latents"]))


@torch.no_grad()
def encode_array(
    sae: SAE, vectors: np.ndarray, *, k: int | None = None, batch_size: int = 4096, progress: bool = False
) -> Codes:
    """Sparse codes of every row of `vectors` (batched, on the SAE's device)."""
    from tqdm.auto import tqdm

    sae.eval()
    idx_parts, val_parts = [], []
    for i in tqdm(range(0, len(vectors), batch_size), disable=not progress, desc="encode", unit="batch"):
        x = torch.from_numpy(np.array(vectors[i : i + batch_size], dtype=np.float32)).to(sae.device)
        code = sae.encode_sparse(x, k)
        idx_parts.append(code.indices.to(torch.int32).cpu().numpy())
        val_parts.append(code.values.float().cpu().numpy())
    kk = k or (idx_parts[0].shape[1] if idx_parts else sae.cfg.k)
    if not idx_parts:
        return Codes(np.zeros((0, kk), np.int32), np.zeros((0, kk), np.float32), sae.cfg.n_latents)
    return Codes(np.concatenate(idx_parts), np.concatenate(val_parts), sae.cfg.n_latents)


@torch.no_grad()
def decode_codes(sae: SAE, codes: Codes, *, batch_size: int = 16384) -> np.ndarray:
    """Reconstructions from stored sparse codes (no encoding)."""
    out = []
    for i in range(0, len(codes), batch_size):
        idx = torch.from_numpy(codes.indices[i : i + batch_size].astype(np.int64)).to(sae.device)
        val = torch.from_numpy(np.asarray(codes.values[i : i + batch_size], dtype=np.float32)).to(sae.device)
        out.append(sae.decode_sparse(idx, val).float().cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, sae.cfg.d_in), np.float32)


def stored_codes(ws, sae: str | None = None) -> Codes | None:
    """The stored codes of all the workspace's documents under an SAE, if they are there and newer than the SAE."""
    folder = ws.sae_dir(ws.resolve_sae(sae))
    path = folder / "codes.npz"
    if path.is_file() and path.stat().st_mtime >= (folder / "sae.safetensors").stat().st_mtime:
        codes = Codes.load(path)
        if len(codes) == ws.n_documents:
            return codes
    return None


def workspace_codes(ws, sae: str | None = None, *, progress: bool = False, model: SAE | None = None) -> Codes:
    """Sparse codes of all the workspace's documents under one of its SAEs, stored as saes/<name>/codes.npz.

    Computed once (with `model` when given, else the stored SAE); recomputed only when the SAE file is newer
    than the stored codes.
    """
    name = ws.resolve_sae(sae)
    codes = stored_codes(ws, name)
    if codes is not None:
        return codes
    codes = encode_array(model or ws.load_sae(name), ws.embeddings, progress=progress)
    codes.save(ws.sae_dir(name) / "codes.npz")
    return codes
