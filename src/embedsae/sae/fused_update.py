"""The whole parameter update of a unit-norm-decoder SAE in two Triton kernels (CUDA only).

After backward, the seed recipe does four passes over the weight matrices: project the decoder gradient
off each decoder row, clip the global gradient norm, take an Adam step, renormalise the decoder rows.
Done with PyTorch ops these are about ten passes over W_enc and W_dec and their gradients and Adam
moments. Here they are two: `_row_stats` reads the gradients (and the decoder) once for the projection
coefficients and the squared norm of the projected gradient; `_row_update` reads gradients, weights and
moments once, applies clipping, Adam and (for the decoder) the renormalisation, and writes weights and
moments once. The state lives in the `torch.optim.Adam` object (`exp_avg`, `exp_avg_sq`, `step`), so
checkpoints look exactly like those of the PyTorch path, and the biases are updated with the same
formulas in PyTorch. All reads of the step counter and learning rate happen on the device, so the
update can be captured in a CUDA graph.
"""

from __future__ import annotations

import torch
from torch import Tensor

try:  # Triton ships with CUDA builds of PyTorch; without it the PyTorch update is used
    import triton
    import triton.language as tl
except ImportError:  # pragma: no cover - exercised on machines without Triton
    triton = None


if triton is not None:

    @triton.jit
    def _row_stats(g_dec, w_dec, g_enc, g_lat, g_pre, dot_out, sq_out, d, BLOCK: tl.constexpr):
        """Per latent: the decoder row's gradient along the row, and the squared norm of what is clipped."""
        row = tl.program_id(0)
        cols = tl.arange(0, BLOCK)
        mask = cols < d
        off = row.to(tl.int64) * d + cols
        g = tl.load(g_dec + off, mask=mask, other=0.0)
        w = tl.load(w_dec + off, mask=mask, other=0.0)
        dot = tl.sum(g * w, axis=0)
        gp = g - dot * w
        ge = tl.load(g_enc + off, mask=mask, other=0.0)
        gl = tl.load(g_lat + row)
        sq = tl.sum(gp * gp, axis=0) + tl.sum(ge * ge, axis=0) + gl * gl
        if row == 0:  # b_pre's gradient is counted once
            gb = tl.load(g_pre + cols, mask=mask, other=0.0)
            sq += tl.sum(gb * gb, axis=0)
        tl.store(dot_out + row, dot)
        tl.store(sq_out + row, sq)

    @triton.jit
    def _adam(p, g, m, v, lr, bc1, bc2_sqrt, beta1, beta2, eps):
        m = beta1 * m + (1.0 - beta1) * g
        v = beta2 * v + (1.0 - beta2) * g * g
        p = p - (lr / bc1) * m / (tl.sqrt(v) / bc2_sqrt + eps)
        return p, m, v

    @triton.jit
    def _row_update(
        w_enc, g_enc, m_enc, v_enc, w_dec, g_dec, m_dec, v_dec, b_lat, g_lat, m_lat, v_lat,
        b_pre, g_pre, m_pre, v_pre, s_enc, s_dec, dot_in, total_ptr, max_norm, lr_ptr, step_ptr,
        d, beta1, beta2, eps, BLOCK: tl.constexpr, SHADOW: tl.constexpr,
    ):
        """Per latent: clip, Adam on its encoder row, decoder row (projected, then renormalised) and bias."""
        row = tl.program_id(0)
        cols = tl.arange(0, BLOCK)
        mask = cols < d
        off = row.to(tl.int64) * d + cols
        coef = tl.minimum(max_norm / (tl.sqrt(tl.load(total_ptr)) + 1e-6), 1.0)  # as clip_grad_norm_
        lr = tl.load(lr_ptr)
        step = tl.load(step_ptr)
        bc1 = 1.0 - tl.exp(step * tl.log(beta1))
        bc2_sqrt = tl.sqrt(1.0 - tl.exp(step * tl.log(beta2)))
        p = tl.load(w_enc + off, mask=mask, other=0.0)
        g = tl.load(g_enc + off, mask=mask, other=0.0) * coef
        m = tl.load(m_enc + off, mask=mask, other=0.0)
        v = tl.load(v_enc + off, mask=mask, other=0.0)
        p, m, v = _adam(p, g, m, v, lr, bc1, bc2_sqrt, beta1, beta2, eps)
        tl.store(w_enc + off, p, mask=mask)
        tl.store(m_enc + off, m, mask=mask)
        tl.store(v_enc + off, v, mask=mask)
        if SHADOW:
            tl.store(s_enc + off, p.to(tl.bfloat16), mask=mask)
        w = tl.load(w_dec + off, mask=mask, other=0.0)
        g = (tl.load(g_dec + off, mask=mask, other=0.0) - tl.load(dot_in + row) * w) * coef
        m = tl.load(m_dec + off, mask=mask, other=0.0)
        v = tl.load(v_dec + off, mask=mask, other=0.0)
        w, m, v = _adam(w, g, m, v, lr, bc1, bc2_sqrt, beta1, beta2, eps)
        w = tl.where(mask, w, 0.0)
        w = w / tl.maximum(tl.sqrt(tl.sum(w * w, axis=0)), 1e-8)
        tl.store(w_dec + off, w, mask=mask)
        tl.store(m_dec + off, m, mask=mask)
        tl.store(v_dec + off, v, mask=mask)
        if SHADOW:
            tl.store(s_dec + off, w.to(tl.bfloat16), mask=mask)
        pl, ml, vl = _adam(tl.load(b_lat + row), tl.load(g_lat + row) * coef, tl.load(m_lat + row),
                           tl.load(v_lat + row), lr, bc1, bc2_sqrt, beta1, beta2, eps)
        tl.store(b_lat + row, pl)
        tl.store(m_lat + row, ml)
        tl.store(v_lat + row, vl)
        if row == 0:
            pp, mp, vp = _adam(tl.load(b_pre + cols, mask=mask, other=0.0), tl.load(g_pre + cols, mask=mask, other=0.0) * coef,
                               tl.load(m_pre + cols, mask=mask, other=0.0), tl.load(v_pre + cols, mask=mask, other=0.0),
                               lr, bc1, bc2_sqrt, beta1, beta2, eps)
            tl.store(b_pre + cols, pp, mask=mask)
            tl.store(m_pre + cols, mp, mask=mask)
            tl.store(v_pre + cols, vp, mask=mask)


def _state(opt: torch.optim.Optimizer, p: Tensor) -> dict:
    """The Adam state of p, created as torch's capturable Adam creates it when missing."""
    st = opt.state[p]
    if not st:
        st["step"] = torch.zeros((), dtype=torch.float32, device=p.device)
        st["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        st["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
    return st


def make_shadows(sae) -> tuple[Tensor, Tensor]:
    """bf16 copies of W_enc and W_dec that the fused update keeps current (saves a cast per use)."""
    return sae.W_enc.detach().to(torch.bfloat16), sae.W_dec.detach().to(torch.bfloat16)


def fused_update(sae, opt: torch.optim.Adam, max_norm: float, shadows: tuple[Tensor, Tensor] | None = None) -> None:
    """Projection, global-norm clipping, Adam and decoder renormalisation for W_enc, W_dec, b_lat, b_pre.

    With `shadows` (from `make_shadows`), their bf16 copies of the new weights are written too.
    """
    group = opt.param_groups[0]
    beta1, beta2 = group["betas"]
    eps, lr = group["eps"], group["lr"]
    if group.get("weight_decay", 0) or group.get("amsgrad") or group.get("maximize"):
        raise ValueError("the fused SAE update implements plain Adam only")
    params = (sae.W_enc, sae.W_dec, sae.b_lat, sae.b_pre)
    W_enc, W_dec, b_lat, b_pre = params
    n, d = W_dec.shape
    block = triton.next_power_of_2(d)
    warps = 4 if block <= 1024 else 8
    dot = torch.empty(n, dtype=torch.float32, device=W_dec.device)
    sq = torch.empty(n, dtype=torch.float32, device=W_dec.device)
    _row_stats[(n,)](W_dec.grad, W_dec, W_enc.grad, b_lat.grad, b_pre.grad, dot, sq, d, BLOCK=block, num_warps=warps)
    states = [_state(opt, p) for p in params]
    torch._foreach_add_([st["step"] for st in states], 1.0)
    lr_t = lr if isinstance(lr, Tensor) else torch.tensor(lr, dtype=torch.float32, device=W_dec.device)
    se, sd, sl, sp = states
    s_enc, s_dec = shadows if shadows is not None else (W_enc, W_dec)
    _row_update[(n,)](
        W_enc, W_enc.grad, se["exp_avg"], se["exp_avg_sq"], W_dec, W_dec.grad, sd["exp_avg"], sd["exp_avg_sq"],
        b_lat, b_lat.grad, sl["exp_avg"], sl["exp_avg_sq"], b_pre, b_pre.grad, sp["exp_avg"], sp["exp_avg_sq"],
        s_enc, s_dec, dot, sq.sum(), float(max_norm), lr_t, se["step"], d, beta1, beta2, eps,
        BLOCK=block, SHADOW=shadows is not None, num_warps=warps,
    )


__all__ = ["fused_update", "make_shadows"]
