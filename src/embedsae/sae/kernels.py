"""Sparse training kernels: the top-k decode and its backward without ever forming dense codes.

On CPU the backward pass of a top-k SAE is dominated by dense (batch x latents) matrix products whose
left factor is almost all zeros. `sparse_codec` computes the same gradients with CSR products that touch
only the k active latents per row. On a GPU the opposite holds: matrix units make a dense (bf16) decode
of the scattered codes cheaper than gathering k decoder rows per vector and scattering their gradients
back with atomics, so `dense_codec` is used there. `eager_codec` (plain autograd over an embedding-bag
decode) serves everything else. All three return the same values up to rounding.
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
        if _compiled(g_xhat, W_dec, W_enc, x):
            from . import cpu_codec

            d_vals = cpu_codec.value_gradients(g_xhat, W_dec, idx)
            if g_vals is not None:
                d_vals = d_vals + g_vals
            d_pre = d_vals * (vals > 0)
            g_W_dec, g_W_enc, g_b_lat = cpu_codec.latent_gradients(idx, vals.contiguous(), d_pre,
                                                                  g_xhat, (x - b_pre).contiguous(), n)
            g_b_pre = -(g_b_lat @ W_enc)
            if ctx.add_bias:
                g_b_pre = g_b_pre + g_xhat.sum(0)
            return None, g_W_enc, g_b_lat, g_W_dec, g_b_pre, None, None, None
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


def _compiled(*tensors: Tensor) -> bool:
    """Whether the compiled CPU backward (cpu_codec) applies: float32 CPU tensors and numba available."""
    if not all(t.device.type == "cpu" and t.dtype == torch.float32 for t in tensors):
        return False
    from . import cpu_codec

    return cpu_codec.available()


def _argsort_small_ints(values: Tensor, upper: int) -> Tensor:
    """Stable argsort of non-negative ints below `upper` (a radix sort through numpy when they fit in int16)."""
    if values.device.type == "cpu" and upper <= np.iinfo(np.int16).max:
        return torch.from_numpy(np.argsort(values.numpy().astype(np.int16), kind="stable"))
    return torch.sort(values, stable=True).indices


def sparse_codec(x: Tensor, W_enc: Tensor, b_lat: Tensor, W_dec: Tensor, b_pre: Tensor, idx: Tensor,
                 pre_sel: Tensor, add_bias: bool = True) -> tuple[Tensor, Tensor]:
    """Decode chosen latents (pre-activations `pre_sel` at `idx`, computed without grad); sparse backward."""
    return _SparseCodec.apply(x, W_enc, b_lat, W_dec, b_pre, idx, pre_sel, add_bias)


_MM_OUT_DTYPE: bool | None = None  # whether torch.mm(..., out_dtype=) works here (found out on first use)


def _mm_f32(a: Tensor, b: Tensor) -> Tensor:
    """a @ b, as float32 for half-precision operands (on CUDA written so directly, no separate cast pass)."""
    global _MM_OUT_DTYPE
    if a.dtype not in (torch.bfloat16, torch.float16):
        return a @ b
    if not a.is_cuda:
        return (a @ b).float()
    if _MM_OUT_DTYPE is None:
        try:
            torch.mm(a[:1, :1], b[:1, :1], out_dtype=torch.float32)
            _MM_OUT_DTYPE = True
        except (RuntimeError, TypeError):
            _MM_OUT_DTYPE = False
    return torch.mm(a, b, out_dtype=torch.float32) if _MM_OUT_DTYPE else (a @ b).float()


def _compute_dtype(t: Tensor, like: Tensor) -> torch.dtype:
    dev = t.device.type
    return torch.get_autocast_dtype(dev) if torch.is_autocast_enabled(dev) else like.dtype


class _Encoder(torch.autograd.Function):
    """pre = (x - b_pre) W_enc^T + b_lat in the autocast dtype; backward without a gradient for x.

    Autograd would get b_pre's gradient from a full (batch x d_in) product with W_enc; it is the row
    sum of the pre-activation gradient times W_enc, one matrix-vector product.
    """

    @staticmethod
    def forward(ctx, x: Tensor, W_enc: Tensor, b_lat: Tensor, b_pre: Tensor, w_lowp: Tensor | None) -> Tensor:
        dt = _compute_dtype(x, W_enc)
        xc = (x - b_pre).to(dt)
        w = w_lowp if w_lowp is not None and w_lowp.dtype == dt else W_enc.to(dt)
        with torch.autocast(x.device.type, enabled=False):
            pre = torch.addmm(b_lat.to(dt), xc, w.t())
        ctx.save_for_backward(xc, w)
        return pre

    @staticmethod
    def backward(ctx, g: Tensor):
        xc, w = ctx.saved_tensors
        g = g.to(w.dtype)
        g_lat = g.sum(0, dtype=torch.promote_types(g.dtype, torch.float32))
        g_W = _mm_f32(g.t(), xc)
        g_b_pre = -(g_lat.to(w.dtype) @ w)
        return None, g_W, g_lat, g_b_pre, None


def encoder_pre(x: Tensor, W_enc: Tensor, b_lat: Tensor, b_pre: Tensor, w_lowp: Tensor | None = None) -> Tensor:
    """Encoder pre-activations with a lean backward (weights and biases only); used for GPU training.

    `w_lowp` is an up-to-date copy of W_enc in the autocast dtype, used instead of casting W_enc.
    """
    return _Encoder.apply(x, W_enc, b_lat, b_pre, w_lowp)


class _DenseDecode(torch.autograd.Function):
    """x_hat = scatter(relu(pre_sel) at idx) @ W_dec (+ b_pre): products in the autocast dtype, x_hat float32."""

    @staticmethod
    def forward(ctx, W_dec: Tensor, b_pre: Tensor, idx: Tensor, pre_sel: Tensor, add_bias: bool,
                w_lowp: Tensor | None) -> tuple[Tensor, Tensor]:
        dt = _compute_dtype(pre_sel, W_dec)
        vals = F.relu(pre_sel)
        z = torch.zeros(idx.shape[0], W_dec.shape[0], dtype=dt, device=idx.device).scatter_(1, idx, vals.to(dt))
        w = w_lowp if w_lowp is not None and w_lowp.dtype == dt else W_dec.to(dt)
        with torch.autocast(idx.device.type, enabled=False):
            x_hat = _mm_f32(z, w)
        if add_bias:
            x_hat = x_hat + b_pre
        ctx.save_for_backward(z, w, idx, vals)
        ctx.add_bias = add_bias
        ctx.mark_non_differentiable(vals)
        return x_hat, vals

    @staticmethod
    def backward(ctx, g: Tensor, _g_vals: Tensor | None):
        z, w, idx, vals = ctx.saved_tensors
        gd = g.to(w.dtype)
        g_W = _mm_f32(z.t(), gd)
        d_sel = (gd @ w.t()).gather(1, idx).to(vals.dtype) * (vals > 0)
        g_b_pre = g.sum(0) if ctx.add_bias else None
        return g_W, g_b_pre, None, d_sel, None, None


def dense_codec(W_dec: Tensor, b_pre: Tensor, idx: Tensor, pre_sel: Tensor, add_bias: bool = True,
                w_lowp: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """The same decode as a dense matrix product of the scattered codes (gradient through `pre_sel`).

    `w_lowp` is an up-to-date copy of W_dec in the autocast dtype, used instead of casting W_dec.
    """
    return _DenseDecode.apply(W_dec, b_pre, idx, pre_sel, add_bias, w_lowp)


def eager_codec(W_dec: Tensor, b_pre: Tensor, idx: Tensor, pre_sel: Tensor, add_bias: bool = True) -> tuple[Tensor, Tensor]:
    """The same decode with autograd through `pre_sel` (which carries the encoder's graph)."""
    vals = F.relu(pre_sel)
    x_hat = F.embedding_bag(idx, W_dec, per_sample_weights=vals.to(W_dec.dtype), mode="sum")
    return (x_hat + b_pre if add_bias else x_hat), vals
