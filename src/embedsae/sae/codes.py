"""Encoding many vectors into sparse codes, and the stored codes of a workspace's documents."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .. import layout
from .._io import atomic_path
from ..progress import ProgressCallback, track

if TYPE_CHECKING:
    from ..data.vectors import VectorSource
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

    def save(self, path: str | os.PathLike, *, key: str = "") -> None:
        """Write the codes as .npz (atomically); `key` records what they were computed from (see codes_key)."""
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as f:
                np.savez(f, indices=self.indices, values=self.values, n_latents=np.int64(self.n_latents), key=np.str_(key))

    @classmethod
    def load(cls, path: str | os.PathLike) -> Codes:
        """Codes written by `save` (DamagedFileError when the file is damaged)."""
        from ..integrity import reading

        with reading(path), np.load(Path(path)) as z:
            return cls(*_checked(z["indices"], z["values"]), int(z["n_latents"]))


def encode_array(
    sae: SAE, vectors: VectorSource | np.ndarray, *, k: int | None = None, batch_size: int = 4096,
    progress: ProgressCallback | None = None,
) -> Codes:
    """Sparse codes of every row of `vectors` (read `batch_size` rows at a time, encoded on the SAE's device)."""
    import torch

    from ..data.vectors import as_source, iter_chunks

    source = as_source(vectors)
    n = source.shape[0]
    sae.eval()
    indices = values = None
    total = sum(-(-(hi - lo) // batch_size) for lo, hi in source.shard_bounds())
    for start, block in track(iter_chunks(source, batch_size), progress, "encode", total=total, unit="batch"):
        x = torch.from_numpy(np.array(block, dtype=np.float32)).to(sae.device)  # blocks may be read-only map views
        with torch.no_grad():
            code = sae.encode_sparse(x, k)
        if indices is None:
            indices = np.empty((n, code.indices.shape[1]), np.int32)
            values = np.empty((n, code.indices.shape[1]), np.float32)
        indices[start : start + len(block)] = code.indices.to(torch.int32).cpu().numpy()
        values[start : start + len(block)] = code.values.float().cpu().numpy()
    if indices is None:
        kk = k or sae.cfg.k
        return Codes(np.zeros((0, kk), np.int32), np.zeros((0, kk), np.float32), sae.cfg.n_latents)
    return Codes(indices, values, sae.cfg.n_latents)


def reconstruct_array(sae: SAE, vectors: np.ndarray, *, batch_size: int = 4096) -> np.ndarray:
    """SAE reconstructions of every row of `vectors`."""
    import torch

    out = []
    for i in range(0, len(vectors), batch_size):
        x = torch.from_numpy(np.array(vectors[i : i + batch_size], dtype=np.float32)).to(sae.device)
        with torch.no_grad():
            out.append(sae.reconstruct(x).float().cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, sae.cfg.d_in), np.float32)


def decode_codes(sae: SAE, codes: Codes, *, batch_size: int = 16384) -> np.ndarray:
    """Reconstructions from stored sparse codes (no encoding)."""
    import torch

    out = []
    for i in range(0, len(codes), batch_size):
        idx = torch.from_numpy(codes.indices[i : i + batch_size].astype(np.int64)).to(sae.device)
        val = torch.from_numpy(np.asarray(codes.values[i : i + batch_size], dtype=np.float32)).to(sae.device)
        with torch.no_grad():
            out.append(sae.decode_sparse(idx, val).float().cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, sae.cfg.d_in), np.float32)


def codes_key(ws, name: str, k: int | None = None) -> str:
    """What stored codes depend on: the SAE's weights and config, the encoding k and the workspace's vectors.

    A content hash, so codes copied with the workspace (`cp -r`, another mtime) stay valid, and codes of
    retrained weights do not."""
    folder = ws.sae_dir(name)
    h = hashlib.sha256()
    for file in (layout.SAE_WEIGHTS, layout.SAE_CONFIG):
        with open(folder / file, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    h.update(f"|k={k}|{ws.manifest.get('corpus_fingerprint')}|{ws.n_documents}|{ws.model_id}".encode())
    return h.hexdigest()[:32]


def stored_codes(ws, name: str) -> Codes | None:
    """The stored codes of an SAE when they are present and still match its weights and the vectors, else None."""
    path = ws.sae_file(name, layout.CODES)
    if not path.is_file():
        return None
    from ..integrity import reading

    with reading(path), np.load(path) as z:
        key = str(z["key"]) if "key" in z.files else None
        if key != codes_key(ws, name) or len(z["indices"]) != ws.n_documents:
            return None  # stale: recomputed
        return Codes(*_checked(z["indices"], z["values"]), int(z["n_latents"]))


def _checked(indices: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Stored code arrays as read, or ValueError when they do not fit together."""
    if indices.ndim != 2 or indices.shape != values.shape:
        raise ValueError(f"indices {indices.shape} and values {values.shape} differ")
    return indices, values


def workspace_codes(ws, sae: str | None = None, *, save: bool = False, progress: ProgressCallback | None = None,
                    model: SAE | None = None) -> Codes:
    """Sparse codes of all the workspace's documents under one of its SAEs.

    Stored codes (saes/<name>/codes.npz) are used while they match the SAE's weights; otherwise the codes are
    computed (with `model` when given, else the stored SAE), and written only with `save` (stages save; views
    never write)."""
    name = ws.resolve_sae(sae)
    codes = stored_codes(ws, name)
    if codes is not None:
        return codes
    codes = encode_array(model or ws.load_sae(name), ws.vectors, progress=progress)
    if save:
        codes.save(ws.sae_file(name, layout.CODES), key=codes_key(ws, name))
    return codes
