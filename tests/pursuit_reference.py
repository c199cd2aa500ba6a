"""The first pursuit encoder (re-solves each round's least squares from scratch): the reference that the
batched Cholesky pursuit in embedsae.sae.pursuit must reproduce. Used by tests and benchmarks only."""

from __future__ import annotations

import torch
from torch import Tensor


@torch.no_grad()
def reference_pursuit(W_dec: Tensor, b_pre: Tensor, x: Tensor, candidates: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """Non-negative OMP of x over the decoder rows in `candidates`: (indices, values), both (batch, k)."""
    b, m = candidates.shape
    chunk = max(1, min(1024, 16_000_000 // (m * (m + W_dec.shape[1]))))
    idx_parts, val_parts = [], []
    for i in range(0, b, chunk):
        idx, vals = _chunk(W_dec, b_pre, x[i : i + chunk], candidates[i : i + chunk], k)
        idx_parts.append(idx)
        val_parts.append(vals)
    return torch.cat(idx_parts), torch.cat(val_parts).to(x.dtype)


def _chunk(W_dec: Tensor, b_pre: Tensor, x: Tensor, cand: Tensor, k: int) -> tuple[Tensor, Tensor]:
    b, m = cand.shape
    dev = x.device
    D = W_dec.float()[cand]
    c0 = torch.bmm(D, (x.float() - b_pre.float()).unsqueeze(2)).squeeze(2)
    G = torch.bmm(D, D.transpose(1, 2))
    del D
    rows = torch.arange(b, device=dev)
    chosen = torch.zeros(b, k, dtype=torch.long, device=dev)
    G_sel = torch.zeros(b, k, m, device=dev)
    taken = torch.zeros(b, m, dtype=torch.bool, device=dev)
    eye = torch.eye(k, device=dev)
    corr = c0
    vals = c0.new_zeros(b, 0)
    for j in range(k):
        pick = corr.masked_fill(taken, float("-inf")).argmax(1)
        chosen[:, j] = pick
        taken[rows, pick] = True
        G_sel[:, j] = G[rows, pick]
        S = chosen[:, : j + 1]
        rows_S = G_sel[:, : j + 1]
        gram = rows_S.gather(2, S.unsqueeze(1).expand(-1, j + 1, -1)) + 1e-6 * eye[: j + 1, : j + 1]
        vals = torch.linalg.solve(gram, c0.gather(1, S)).clamp_min(0)
        corr = c0 - torch.bmm(vals.unsqueeze(1), rows_S).squeeze(1)
    order = vals.argsort(dim=1, descending=True, stable=True)
    idx = cand.gather(1, chosen.gather(1, order))
    return idx, vals.gather(1, order)


def agreement(new: tuple[Tensor, Tensor], ref: tuple[Tensor, Tensor]) -> tuple[float, float]:
    """Share of rows with the same set of latents, and the largest value difference on those rows."""
    a, b = new[0].sort(1), ref[0].sort(1)
    same = (a.values == b.values).all(1)
    diff = (new[1].gather(1, a.indices) - ref[1].gather(1, b.indices))[same].abs()
    return same.float().mean().item(), diff.max().item() if len(diff) else 0.0
