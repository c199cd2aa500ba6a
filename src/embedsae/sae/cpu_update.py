"""The whole parameter update of a unit-norm-decoder SAE on CPU in two compiled passes over the weights (numba).

The PyTorch update after backward is four steps (project the decoder gradient off each decoder row, clip the
global gradient norm, Adam, renormalise the decoder rows), about fifteen passes over W_enc and W_dec, their
gradients and Adam moments; at batch 1,024 they cost more than the step's matrix product. Here they are two
passes, each split over rows on `torch.get_num_threads()` threads without the GIL: `_row_stats` reads the
gradients and the decoder once for the projection coefficients and the squared norm of the projected gradient;
`_row_update` reads gradients, weights and moments once, applies clipping, Adam and (for the decoder) the
renormalisation, and writes weights and moments once. The formulas are those of the PyTorch path (and of the
CUDA kernels in fused_update.py), float32 throughout; the state lives in the `torch.optim.Adam` object
(`exp_avg`, `exp_avg_sq`, `step`), so checkpoints are the same whichever update wrote them.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

from .._compiled import Compiled

logger = logging.getLogger(__name__)

_COMPILED = Compiled(lambda: _compile(), "the compiled CPU update", "the PyTorch update")


def available() -> bool:
    """Whether the compiled update can be used (numba imports and compiles)."""
    return _COMPILED.available()


def _kernels():
    return _COMPILED.get()


def _compile():
    import numba

    @numba.njit(nogil=True, cache=True, fastmath={"contract", "reassoc"})
    def row_stats(lo, hi, g_dec, w_dec, g_enc, g_lat, dot_out, sq_out):  # pragma: no cover - compiled
        d = g_dec.shape[1]
        for r in range(lo, hi):
            dot = np.float32(0.0)
            for c in range(d):
                dot += g_dec[r, c] * w_dec[r, c]
            sq = g_lat[r] * g_lat[r]
            for c in range(d):
                gp = g_dec[r, c] - dot * w_dec[r, c]
                ge = g_enc[r, c]
                sq += gp * gp + ge * ge
            dot_out[r] = dot
            sq_out[r] = sq

    @numba.njit(nogil=True, cache=True, fastmath={"contract", "reassoc"})
    def row_update(lo, hi, w_enc, g_enc, m_enc, v_enc, w_dec, g_dec, m_dec, v_dec, b_lat, g_lat, m_lat, v_lat,
                   dot, coef, lr, bc1, bc2_sqrt, beta1, beta2, eps):  # pragma: no cover - compiled
        d = w_enc.shape[1]
        one = np.float32(1.0)
        step = lr / bc1
        for r in range(lo, hi):
            for c in range(d):
                g = g_enc[r, c] * coef
                m = beta1 * m_enc[r, c] + (one - beta1) * g
                v = beta2 * v_enc[r, c] + (one - beta2) * g * g
                m_enc[r, c] = m
                v_enc[r, c] = v
                w_enc[r, c] -= step * m / (np.sqrt(v) / bc2_sqrt + eps)
            nrm = np.float32(0.0)
            for c in range(d):
                w = w_dec[r, c]
                g = (g_dec[r, c] - dot[r] * w) * coef
                m = beta1 * m_dec[r, c] + (one - beta1) * g
                v = beta2 * v_dec[r, c] + (one - beta2) * g * g
                m_dec[r, c] = m
                v_dec[r, c] = v
                w = w - step * m / (np.sqrt(v) / bc2_sqrt + eps)
                w_dec[r, c] = w
                nrm += w * w
            inv = one / max(np.sqrt(nrm), np.float32(1e-8))
            for c in range(d):
                w_dec[r, c] *= inv
            g = g_lat[r] * coef
            m = beta1 * m_lat[r] + (one - beta1) * g
            v = beta2 * v_lat[r] + (one - beta2) * g * g
            m_lat[r] = m
            v_lat[r] = v
            b_lat[r] -= step * m / (np.sqrt(v) / bc2_sqrt + eps)

    return row_stats, row_update


def _state(opt: torch.optim.Optimizer, p: torch.Tensor) -> dict:
    """The Adam state of p, created as torch's Adam creates it when missing."""
    st = opt.state[p]
    if not st:
        st["step"] = torch.zeros((), dtype=torch.float32)
        st["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        st["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
    return st


def _split(n: int, threads: int) -> list[tuple[int, int]]:
    bounds = np.linspace(0, n, max(1, threads) + 1).astype(int)
    return [(int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:]) if b > a]


def _run(kernel, n: int, args: tuple, threads: int) -> None:
    parts = _split(n, threads)
    if len(parts) == 1:
        kernel(*parts[0], *args)
        return
    with ThreadPoolExecutor(len(parts)) as pool:
        for job in [pool.submit(kernel, lo, hi, *args) for lo, hi in parts]:
            job.result()


@torch.no_grad()
def cpu_update(sae, opt: torch.optim.Adam, max_norm: float, threads: int | None = None) -> None:
    """Projection, global-norm clipping, Adam and decoder renormalisation for W_enc, W_dec, b_lat, b_pre (float32,
    contiguous CPU tensors). Raises RuntimeError when the compiled kernels are unavailable (check `available()`)."""
    kernels = _kernels()
    if kernels is None:
        raise RuntimeError("the compiled CPU update is unavailable")
    row_stats, row_update = kernels
    group = opt.param_groups[0]
    beta1, beta2 = group["betas"]
    eps, lr = group["eps"], float(group["lr"])
    if group.get("weight_decay", 0) or group.get("amsgrad") or group.get("maximize"):
        raise ValueError("the compiled SAE update implements plain Adam only")
    W_enc, W_dec, b_lat, b_pre = sae.W_enc, sae.W_dec, sae.b_lat, sae.b_pre
    n = W_dec.shape[0]
    threads = threads or torch.get_num_threads()
    np_ = lambda t: t.detach().numpy()  # noqa: E731 - views of the tensors' memory
    g_enc, g_dec, g_lat, g_pre = (np_(p.grad) for p in (W_enc, W_dec, b_lat, b_pre))
    dot = np.empty(n, np.float32)
    sq = np.empty(n, np.float32)
    _run(row_stats, n, (g_dec, np_(W_dec), g_enc, g_lat, dot, sq), threads)
    total = float(np.sqrt(sq.astype(np.float64).sum() + float((g_pre.astype(np.float64) ** 2).sum())))
    coef = min(max_norm / (total + 1e-6), 1.0)  # as clip_grad_norm_
    states = [_state(opt, p) for p in (W_enc, W_dec, b_lat, b_pre)]
    for st in states:
        st["step"] += 1
    t = float(states[0]["step"])
    bc1, bc2_sqrt = 1.0 - beta1**t, float(np.sqrt(1.0 - beta2**t))
    se, sd, sl, sp = states
    f32 = np.float32
    _run(row_update, n, (np_(W_enc), g_enc, np_(se["exp_avg"]), np_(se["exp_avg_sq"]), np_(W_dec), g_dec,
                         np_(sd["exp_avg"]), np_(sd["exp_avg_sq"]), np_(b_lat), g_lat, np_(sl["exp_avg"]),
                         np_(sl["exp_avg_sq"]), dot, f32(coef), f32(lr), f32(bc1), f32(bc2_sqrt), f32(beta1),
                         f32(beta2), f32(eps)), threads)
    # b_pre: d numbers, the same formulas
    g = torch.from_numpy(g_pre) * coef
    m, v = sp["exp_avg"], sp["exp_avg_sq"]
    m.mul_(beta1).add_(g, alpha=1 - beta1)
    v.mul_(beta2).addcmul_(g, g, value=1 - beta2)
    b_pre.addcdiv_(m, v.sqrt().div_(bc2_sqrt).add_(eps), value=-lr / bc1)
