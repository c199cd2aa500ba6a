"""Encoder-guided pursuit: choose a vector's k active latents by matching pursuit over the encoder's candidates.

A top-k SAE's linear encoder is an amortised guess at the sparse code. On small corpora (thousands of
vectors) it generalises worse than the decoder: on 6,276 arXiv abstracts (k = 32, 3,072 latents) the
plain top-k code reaches held-out NMSE 0.35, while the same decoder, with the k latents chosen by
orthogonal matching pursuit among the encoder's 4k strongest candidates, reaches 0.23 (the
"amortisation gap" of O'Neill et al. 2024, arXiv 2411.13117). This module is that inference step:

1. candidates: the `m` latents with the highest encoder pre-activations;
2. k rounds of non-negative orthogonal matching pursuit among them: pick the candidate whose decoder
   row correlates best (positively) with the residual, refit all chosen values by least squares on
   their decoder rows (Gram matrix + 1e-6 I), clip negatives to zero, update the residual;
3. return the k latents sorted by value (largest first), like `topk`.

The least-squares refit extends a Cholesky factor (kept as its inverse) by one row instead of solving again,
and the Gram rows of the chosen latents come from the decoder's full Gram matrix (`decoder_gram`, computed
once per set of weights) when it fits in memory. On CPU the rounds run as one compiled loop per vector
(`pursuit_kernel`, numba); elsewhere, or without the full Gram matrix, every round is a handful of batched
tensor operations over a chunk of vectors. float32 throughout.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from ..threads import torch_single_thread
from . import pursuit_kernel

GRAM_MAX_BYTES = 512 * 2**20
"""Largest full decoder Gram matrix (n_latents^2 float32) `decoder_gram` builds; above it (more than ~11,500
latents) each chunk computes its candidates' Gram matrix instead (slower, same codes)."""
RIDGE = 1e-6
"""Added to the Gram matrix's diagonal in every least-squares refit."""


@torch.no_grad()
def decoder_gram(W_dec: Tensor) -> Tensor | None:
    """The decoder rows' Gram matrix (n_latents, n_latents) in float32, or None when it exceeds GRAM_MAX_BYTES."""
    n = W_dec.shape[0]
    if n * n * 4 > GRAM_MAX_BYTES:
        return None
    w = W_dec.float()
    return w @ w.T


@torch.no_grad()
def candidate_pursuit(
    W_dec: Tensor, b_pre: Tensor, x: Tensor, candidates: Tensor, k: int, *,
    gram: Tensor | None = None, chunk: int | None = None,
) -> tuple[Tensor, Tensor]:
    """Non-negative orthogonal matching pursuit of x over the decoder rows listed in `candidates`.

    W_dec: (n_latents, d) decoder rows; b_pre: (d,); x: (batch, d); candidates: (batch, m) latent
    indices, m >= k; gram: optional `decoder_gram(W_dec)` (faster when given). Returns (indices, values),
    both (batch, k), values >= 0 and sorted descending. Rows are processed `chunk` at a time.
    """
    b, m = candidates.shape
    if k > m:
        raise ValueError(f"pursuit needs at least k={k} candidates per row, got {m}")
    compiled = gram is not None and x.device.type == "cpu" and pursuit_kernel.available()
    if chunk is None:  # per row: the chosen latents' Gram rows (k x m), or the candidates' Gram (m x m) and rows (m x d)
        if compiled:
            per_row, most = W_dec.shape[0], 8192  # the kernel keeps no per-chunk buffer: only c0 (n_latents per row)
        else:
            per_row, most = (k * m if gram is not None else m * (m + W_dec.shape[1])), 1024
        chunk = max(1, min(most, 4_000_000 // per_row))
    if b == 0:
        return candidates.new_zeros((0, k)), x.new_zeros((0, k))
    idx_parts, val_parts = [], []
    with torch.autocast(x.device.type, enabled=False):  # the least-squares refits need float32
        W = W_dec.float()
        target = x.float() - b_pre.float()
        for i in range(0, b, chunk):
            idx, vals = _pursuit_chunk(W, target[i : i + chunk], candidates[i : i + chunk], k, gram, compiled)
            idx_parts.append(idx)
            val_parts.append(vals)
    return torch.cat(idx_parts), torch.cat(val_parts).to(x.dtype)


@torch.no_grad()
def pursuit_from_pre(W_dec: Tensor, b_pre: Tensor, x: Tensor, pre: Tensor, k: int, m: int, *,
                     gram: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """`candidate_pursuit` over each row's `m` largest encoder pre-activations `pre` (batch, n_latents). On CPU with
    the full Gram matrix, the candidate choice, their correlations with the target and the rounds run as one
    compiled loop per row (`pursuit_kernel.pursuit_encode`: no top-k pass, no second matrix product)."""
    if gram is not None and x.device.type == "cpu" and pursuit_kernel.available() and len(x):
        with torch.autocast(x.device.type, enabled=False):
            target = (x.float() - b_pre.float()).contiguous().numpy()
            idx, vals = pursuit_kernel.pursuit_encode(pre.float().contiguous().numpy(), target,
                                                      W_dec.float().contiguous().numpy(), gram.contiguous().numpy(),
                                                      m, k, RIDGE, torch.get_num_threads())
        return torch.from_numpy(idx), torch.from_numpy(vals).to(x.dtype)
    cand = pre.topk(m, dim=1, sorted=False).indices
    return candidate_pursuit(W_dec, b_pre, x, cand, k, gram=gram)


def _pursuit_chunk(W: Tensor, target: Tensor, cand: Tensor, k: int, gram: Tensor | None,
                   compiled: bool) -> tuple[Tensor, Tensor]:
    """One chunk's codes: the compiled rounds (CPU, full Gram: `compiled`) or the tensor rounds."""
    b, m = cand.shape
    dev = target.device
    if gram is not None:
        cand = cand.sort(dim=1).values  # ascending latent ids: each round's Gram lookups walk one row in order
        c0 = (target @ W.T).gather(1, cand)  # (b, m) <target, candidate row>: one GEMM, then a gather
        if compiled:  # one compiled loop per vector, rows over torch's thread count
            idx, vals = pursuit_kernel.pursuit_rounds(c0.contiguous().numpy(), cand.contiguous().numpy(),
                                                      gram.contiguous().numpy(), k, RIDGE, torch.get_num_threads())
            return torch.from_numpy(idx), torch.from_numpy(vals)
        n = gram.shape[0]

        def gram_row(pick: Tensor) -> Tensor:  # Gram entries of each row's picked candidate with all its candidates
            return gram.take(cand.gather(1, pick) * n + cand)
    else:
        D = W[cand]  # (b, m, d) candidate decoder rows
        c0 = torch.bmm(D, target.unsqueeze(2)).squeeze(2)
        G = torch.bmm(D, D.transpose(1, 2))  # (b, m, m)
        del D

        def gram_row(pick: Tensor) -> Tensor:
            return G.gather(1, pick.unsqueeze(2).expand(-1, 1, m)).squeeze(1)

    if dev.type != "cpu":
        return _rounds(c0, cand, k, gram_row)
    # The rounds' small batched operations lose more to thread hand-offs than they gain (k 64, 6,144 latents on a
    # busy 2-core machine: 242 vectors/s on one thread, 12 on two); the limit is safe under concurrent callers.
    with torch_single_thread():
        return _rounds(c0, cand, k, gram_row)


def _rounds(c0: Tensor, cand: Tensor, k: int, gram_row: Callable[[Tensor], Tensor]) -> tuple[Tensor, Tensor]:
    """k rounds of non-negative OMP given the candidates' target correlations c0 (b, m) and a Gram-row lookup."""
    b, m = cand.shape
    dev = c0.device
    chosen = torch.zeros(b, k, dtype=torch.long, device=dev)  # positions within cand
    G_sel = torch.zeros(b, k, m, device=dev)  # Gram rows of the chosen candidates
    Linv = torch.zeros(b, k, k, device=dev)  # inverse of the Cholesky factor of the chosen Gram block + RIDGE I
    y = torch.zeros(b, k, device=dev)  # Linv @ c0[chosen]
    u = torch.zeros(b, k, device=dev)  # the unclipped least-squares values, Linv^T y
    blocked = torch.zeros(b, m, device=dev)  # -inf where already chosen
    corr = c0
    for j in range(k):
        pick = (corr + blocked).argmax(1, keepdim=True)  # (b, 1)
        blocked.scatter_(1, pick, float("-inf"))
        chosen[:, j : j + 1] = pick
        g = gram_row(pick)
        G_sel[:, j] = g
        c_p = c0.gather(1, pick).squeeze(1)
        diag = g.gather(1, pick).squeeze(1) + RIDGE
        if j == 0:
            ell = diag.sqrt()
            y_j = c_p / ell
        else:
            L_prev = Linv[:, :j, :j]
            w = torch.einsum("bij,bj->bi", L_prev, g.gather(1, chosen[:, :j]))  # solves L w = G[S, p]
            ell = (diag - (w * w).sum(1)).clamp_min_(RIDGE).sqrt_()  # the Schur complement is >= RIDGE exactly
            new_row = torch.einsum("bi,bij->bj", w, L_prev).div_(-ell.unsqueeze(1))
            Linv[:, j, :j] = new_row
            y_j = (c_p - (w * y[:, :j]).sum(1)) / ell
            u[:, :j].addcmul_(new_row, y_j.unsqueeze(1))
        Linv[:, j, j] = 1 / ell
        y[:, j] = y_j
        u[:, j] = y_j / ell
        vals = u[:, : j + 1].clamp_min(0)
        corr = c0 - torch.einsum("bj,bjm->bm", vals, G_sel[:, : j + 1])
    order = vals.argsort(dim=1, descending=True, stable=True)
    idx = cand.gather(1, chosen.gather(1, order))
    return idx, vals.gather(1, order)
