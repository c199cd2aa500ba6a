"""The sparse decode's backward on CPU as compiled loops (numba): gradients touch only the k active latents per row.

`kernels._SparseCodec` decodes x_hat = sum_j relu(pre_sel[:, j]) W_dec[idx[:, j]] and needs, per step, the
gradient of every chosen value (a dot product of the row's output gradient with a decoder row) and, per latent,
the sums of its rows' contributions to W_dec, W_enc and b_lat. Here the first is one loop over the batch's rows and
the second one loop over latents (their entries sorted by latent with a counting sort), each latent writing only its
own rows: no scatter with atomics, no sparse-tensor construction, every gradient row written once (zero for latents
no row chose). Work is split over `torch.get_num_threads()` threads that run the loops without the GIL.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
from torch import Tensor

from .._compiled import Compiled

_COMPILED = Compiled(lambda: _compile(), "the compiled sparse backward", "torch's")
_LOCK = threading.Lock()
_POOL: ThreadPoolExecutor | None = None


def available() -> bool:
    """Whether the compiled loops can be used (numba imports and compiles)."""
    return _COMPILED.available()


def _kernels():
    return _COMPILED.get()


def _compile():
    import numba

    @numba.njit(nogil=True, cache=True, fastmath={"contract", "reassoc"})
    def value_grads(lo, hi, g, w_dec, idx, out):  # pragma: no cover - compiled
        k, d = idx.shape[1], g.shape[1]
        for b in range(lo, hi):
            for j in range(k):
                row = idx[b, j]
                s = np.float32(0.0)
                for c in range(d):
                    s += g[b, c] * w_dec[row, c]
                out[b, j] = s

    @numba.njit(nogil=True, cache=True, fastmath={"contract", "reassoc"})
    def latent_grads(lo, hi, starts, rows, vals, dpre, g, xc, g_dec, g_enc, g_lat):  # pragma: no cover - compiled
        d = g.shape[1]
        for i in range(lo, hi):
            for c in range(d):
                g_dec[i, c] = 0.0
                g_enc[i, c] = 0.0
            acc = np.float32(0.0)
            for e in range(starts[i], starts[i + 1]):
                b = rows[e]
                v = vals[e]
                p = dpre[e]
                acc += p
                if v != 0.0:
                    for c in range(d):
                        g_dec[i, c] += v * g[b, c]
                if p != 0.0:
                    for c in range(d):
                        g_enc[i, c] += p * xc[b, c]
            g_lat[i] = acc

    return value_grads, latent_grads


def _pool(threads: int) -> ThreadPoolExecutor:
    global _POOL
    with _LOCK:
        if _POOL is None or _POOL._max_workers < threads:
            _POOL = ThreadPoolExecutor(threads, thread_name_prefix="embedsae-codec")
    return _POOL


def _run(kernel, bounds: list[tuple[int, int]], args: tuple) -> None:
    if len(bounds) == 1:
        kernel(*bounds[0], *args)
        return
    pool = _pool(len(bounds))
    for job in [pool.submit(kernel, lo, hi, *args) for lo, hi in bounds]:
        job.result()


def _even(n: int, threads: int) -> list[tuple[int, int]]:
    cuts = np.linspace(0, n, threads + 1).astype(np.int64)
    return [(int(a), int(b)) for a, b in zip(cuts[:-1], cuts[1:]) if b > a] or [(0, 0)]


def value_gradients(g: Tensor, W_dec: Tensor, idx: Tensor) -> Tensor:
    """Per row b and slot j: g[b] . W_dec[idx[b, j]] (float32), (batch, k)."""
    value_grads, _ = _kernels()
    out = np.empty(tuple(idx.shape), np.float32)
    threads = max(1, min(torch.get_num_threads(), len(idx) // 64))
    _run(value_grads, _even(len(idx), threads), (g.numpy(), W_dec.detach().numpy(), idx.contiguous().numpy(), out))
    return torch.from_numpy(out)


def latent_gradients(idx: Tensor, vals: Tensor, d_pre: Tensor, g: Tensor, xc: Tensor,
                     n_latents: int) -> tuple[Tensor, Tensor, Tensor]:
    """Gradients of W_dec (sum of vals x g over a latent's rows), W_enc (sum of d_pre x xc) and b_lat (sum of d_pre)
    for the (batch, k) choices `idx`; every row written (zero where no row chose the latent)."""
    _, latent_grads = _kernels()
    col = idx.numpy().reshape(-1)
    order = np.argsort(col.astype(np.int16) if n_latents <= np.iinfo(np.int16).max else col, kind="stable")
    starts = np.zeros(n_latents + 1, np.int64)
    np.cumsum(np.bincount(col, minlength=n_latents), out=starts[1:])
    rows = (order // idx.shape[1]).astype(np.int64)
    vals_t = np.ascontiguousarray(vals.numpy().reshape(-1)[order], dtype=np.float32)
    dpre_t = np.ascontiguousarray(d_pre.numpy().reshape(-1)[order], dtype=np.float32)
    d = g.shape[1]
    g_dec = np.empty((n_latents, d), np.float32)
    g_enc = np.empty((n_latents, d), np.float32)
    g_lat = np.empty(n_latents, np.float32)
    threads = max(1, torch.get_num_threads())
    # equal shares of the entries, not of the latents: a few latents fire far more often than the rest
    cuts = np.minimum(np.searchsorted(starts, np.linspace(0, starts[-1], threads + 1)), n_latents).astype(np.int64)
    cuts[0], cuts[-1] = 0, n_latents
    bounds = [(int(a), int(b)) for a, b in zip(cuts[:-1], cuts[1:]) if b > a] or [(0, n_latents)]
    _run(latent_grads, bounds, (starts, rows, vals_t, dpre_t, g.numpy(), xc.numpy(), g_dec, g_enc, g_lat))
    return torch.from_numpy(g_dec), torch.from_numpy(g_enc), torch.from_numpy(g_lat)
