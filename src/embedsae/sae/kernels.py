"""Sparse training kernels: the top-k decode and its backward without ever forming dense codes.

On CPU the backward pass of a top-k SAE is dominated by dense (batch x latents) matrix products whose
left factor is almost all zeros. `sparse_codec` computes the same gradients with CSR products that touch
only the k active latents per row. On other devices `eager_codec` (plain autograd over a gather and an
embedding-bag decode) is used; both return identical values.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor


class _SparseCodec(torch.autograd.Function):
    """x_hat = sum_j relu(pre_sel[:, j]) * W_dec[idx[:, j]] (+ b_pre); grads for W_enc, b_lat, W_dec, b_pre."""

    @staticmethod
    def forward(ctx, x: Tensor, W_enc: Tensor, b_lat: Tensor, W_dec: Tensor, b_pre: Tensor,
                idx: Tensor, pre_sel: Tensor, add_bias: bool) -> tuple[Tensor, Tensor]:
        vals = F.relu(pre_sel)
        x_hat = F.embedding_bag(idx, W_dec, per_sample_weights=vals, mode="sum")
        if add_bias:
            x_hat = x_hat + b_pre
        ctx.save_for_backward(x, W_enc, W_dec, b_pre, idx, vals)
        ctx.add_bias = add_bias
        return x_hat, vals

    @staticmethod
    def backward(ctx, g_xhat: Tensor, g_vals: Tensor | None):
        # The patterns below are valid by construction; skip torch's invariant checks (and their warning).
        with torch.sparse.check_sparse_tensor_invariants(enable=False), warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
            return _SparseCodec._backward(ctx, g_xhat, g_vals)

    @staticmethod
    def _backward(ctx, g_xhat: Tensor, g_vals: Tensor | None):
        x, W_enc, W_dec, b_pre, idx, vals = ctx.saved_tensors
        b, k = idx.shape
        n = W_dec.shape[0]
        g_xhat = g_xhat.contiguous()
        crow = torch.arange(0, b * k + 1, k, device=idx.device)
        col = idx.reshape(-1)
        pattern = torch.sparse_csr_tensor(crow, col, torch.zeros(b * k, dtype=g_xhat.dtype, device=idx.device), (b, n))
        # d loss / d vals = <W_dec[idx], g> at the active pattern only (sampled dense-dense product)
        d_vals = torch.sparse.sampled_addmm(pattern, g_xhat, W_dec.t(), beta=0.0).values().view(b, k)
        if g_vals is not None:
            d_vals = d_vals + g_vals
        d_pre = d_vals * (vals > 0)
        # the transposed pattern (latents x batch), built once and used for both weight gradients
        order = _argsort_small_ints(col, n)
        rows_t = order.div(k, rounding_mode="floor")
        crow_t = torch.zeros(n + 1, dtype=torch.long, device=col.device)
        crow_t[1:] = torch.bincount(col, minlength=n).cumsum(0)
        g_W_dec = torch.sparse_csr_tensor(crow_t, rows_t, vals.reshape(-1)[order], (n, b)) @ g_xhat
        g_W_enc = torch.sparse_csr_tensor(crow_t, rows_t, d_pre.reshape(-1)[order], (n, b)) @ (x - b_pre)
        g_b_lat = torch.zeros(n, dtype=d_pre.dtype, device=d_pre.device).index_add_(0, col, d_pre.reshape(-1))
        g_b_pre = -(g_b_lat @ W_enc)
        if ctx.add_bias:
            g_b_pre = g_b_pre + g_xhat.sum(0)
        return None, g_W_enc, g_b_lat, g_W_dec, g_b_pre, None, None, None


def _argsort_small_ints(values: Tensor, upper: int) -> Tensor:
    """Stable argsort of non-negative ints below `upper` (a radix sort through numpy when they fit in int16)."""
    if values.device.type == "cpu" and upper <= np.iinfo(np.int16).max:
        return torch.from_numpy(np.argsort(values.numpy().astype(np.int16), kind="stable"))
    return torch.sort(values, stable=True).indices


def sparse_codec(x: Tensor, W_enc: Tensor, b_lat: Tensor, W_dec: Tensor, b_pre: Tensor, idx: Tensor,
                 pre_sel: Tensor, add_bias: bool = True) -> tuple[Tensor, Tensor]:
    """Decode chosen latents (pre-activations `pre_sel` at `idx`, computed without grad); sparse backward."""
    return _SparseCodec.apply(x, W_enc, b_lat, W_dec, b_pre, idx, pre_sel, add_bias)


def eager_codec(W_dec: Tensor, b_pre: Tensor, idx: Tensor, pre_sel: Tensor, add_bias: bool = True) -> tuple[Tensor, Tensor]:
    """The same decode with autograd through `pre_sel` (which carries the encoder's graph)."""
    vals = F.relu(pre_sel)
    x_hat = F.embedding_bag(idx, W_dec, per_sample_weights=vals.to(W_dec.dtype), mode="sum")
    return (x_hat + b_pre if add_bias else x_hat), vals
