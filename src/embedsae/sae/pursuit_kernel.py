"""The pursuit rounds on CPU as one compiled loop per vector (numba), run on several threads.

Same algorithm and float32 arithmetic as `pursuit._rounds` (non-negative OMP over the candidates, Cholesky factor
kept as its inverse, values clipped at zero when the residual is updated), but each vector's k rounds run in
registers and L1/L2 cache instead of ~30 batched tensor operations per round: at k 64 with 256 candidates a
vector's whole state (k x m Gram rows, k x k factor) is ~80 KB. Rows are split across `threads` Python threads,
each running the compiled loop without the GIL, so concurrent callers (a web server's searches) are safe.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np

from .._compiled import Compiled

_COMPILED = Compiled(lambda: _compile(), "the compiled pursuit kernel", "the tensor rounds")


def available() -> bool:
    """Whether the compiled kernel can be used (numba imports and compiles)."""
    return _COMPILED.available()


def _kernel():
    return _COMPILED.get()


def _compile():
    import numba

    @numba.njit(nogil=True, cache=True, fastmath={"contract", "reassoc"})  # FMAs, vectorised sums
    def one_row(row_c0, row_cand, gram, k, ridge, corr, blocked, chosen, G_sel, Linv, y, u, vals, w, new_row, gp,
                out_idx, out_val):  # pragma: no cover - compiled
        m = row_c0.shape[0]
        f0 = np.float32(0.0)
        for i in range(m):
            corr[i] = row_c0[i]
            blocked[i] = False
        Linv[:, :] = f0
        u[:] = f0
        for j in range(k):
            p = -1
            best = -np.inf
            for i in range(m):
                if not blocked[i] and (p < 0 or corr[i] > best):
                    best = corr[i]
                    p = i
            blocked[p] = True
            chosen[j] = p
            grow = gram[row_cand[p]]
            for i in range(m):
                G_sel[j, i] = grow[row_cand[i]]
            c_p = row_c0[p]
            diag = G_sel[j, p] + ridge
            if j == 0:
                ell = np.sqrt(diag)
                y_j = c_p / ell
            else:
                for t in range(j):
                    gp[t] = G_sel[j, chosen[t]]  # G[S, p]
                ss = f0
                for i in range(j):  # w = Linv[:j, :j] @ G[S, p] (Linv is lower triangular)
                    s = f0
                    for t in range(i + 1):
                        s += Linv[i, t] * gp[t]
                    w[i] = s
                    ss += s * s
                ell = np.sqrt(max(diag - ss, ridge))
                for t in range(j):
                    new_row[t] = f0
                for i in range(j):  # new row = -(w @ Linv[:j, :j]) / ell, row by row
                    wi = w[i]
                    for t in range(i + 1):
                        new_row[t] += wi * Linv[i, t]
                s = f0
                for i in range(j):
                    s += w[i] * y[i]
                y_j = (c_p - s) / ell
                for t in range(j):
                    nr = -new_row[t] / ell
                    Linv[j, t] = nr
                    u[t] += nr * y_j
            Linv[j, j] = np.float32(1.0) / ell
            y[j] = y_j
            u[j] = y_j / ell
            for i in range(m):
                corr[i] = row_c0[i]
            for t in range(j + 1):
                v = max(u[t], f0)
                vals[t] = v
                if v != f0:
                    g_t = G_sel[t]
                    for i in range(m):
                        corr[i] -= v * g_t[i]
        order = np.argsort(-vals, kind="mergesort")
        for t in range(k):
            out_idx[t] = row_cand[chosen[order[t]]]
            out_val[t] = vals[order[t]]

    @numba.njit(nogil=True, cache=True)
    def buffers(m, k):  # pragma: no cover - compiled
        return (np.empty(m, np.float32), np.zeros(m, np.bool_), np.empty(k, np.int64), np.empty((k, m), np.float32),
                np.zeros((k, k), np.float32), np.zeros(k, np.float32), np.zeros(k, np.float32), np.zeros(k, np.float32),
                np.zeros(k, np.float32), np.zeros(k, np.float32), np.zeros(k, np.float32))

    @numba.njit(nogil=True, cache=True)
    def rounds(c0, cand, gram, k, ridge, out_idx, out_val):  # pragma: no cover - compiled
        b, m = c0.shape
        ridge = np.float32(ridge)
        corr, blocked, chosen, G_sel, Linv, y, u, vals, w, new_row, gp = buffers(m, k)
        for r in range(b):
            one_row(c0[r], cand[r], gram, k, ridge, corr, blocked, chosen, G_sel, Linv, y, u, vals, w, new_row, gp,
                    out_idx[r], out_val[r])

    @numba.njit(nogil=True, cache=True, fastmath={"contract", "reassoc"})
    def correlations(cand, target, W, out):  # pragma: no cover - compiled
        b, m = cand.shape
        d = target.shape[1]
        for r in range(b):  # <target, candidate decoder row>, all rows first: the rounds then keep the cache
            x = target[r]
            for i in range(m):
                wr = W[cand[r, i]]
                s = np.float32(0.0)
                for c in range(d):
                    s += x[c] * wr[c]
                out[r, i] = s

    @numba.njit(nogil=True, cache=True)
    def encode(cand, target, W, gram, k, ridge, out_idx, out_val):  # pragma: no cover - compiled
        c0 = np.empty(cand.shape, np.float32)
        correlations(cand, target, W, c0)
        rounds(c0, cand, gram, k, ridge, out_idx, out_val)

    return rounds, encode


def pursuit_rounds(c0: np.ndarray, cand: np.ndarray, gram: np.ndarray, k: int, ridge: float,
                   threads: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """k rounds of non-negative OMP for each row: c0 (b, m) float32 target correlations of the candidates,
    cand (b, m) int64 latent ids (ascending per row), gram (n, n) float32 decoder Gram matrix. Returns the
    chosen latents (b, k) and their values (b, k), sorted by value, largest first."""
    kernels = _kernel()
    if kernels is None:
        raise RuntimeError("the compiled pursuit kernel is unavailable")
    return _split(kernels[0], c0.shape[0], k, threads, lambda s, e: (c0[s:e], cand[s:e], gram, k, ridge))


def pursuit_encode(pre: np.ndarray, target: np.ndarray, W: np.ndarray, gram: np.ndarray, m: int, k: int,
                   ridge: float, threads: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """The whole pursuit after the encoder's matrix product: per row the `m` largest pre-activations (b, n) as
    candidates (numpy's introselect, ascending ids), then in one compiled loop their correlations with the target
    (b, d: x - b_pre) from the decoder rows W (n, d) and the rounds of `pursuit_rounds`. Same codes as
    `pursuit_rounds` given torch's top-m candidates and the matrix product's correlations (up to float rounding)."""
    kernels = _kernel()
    if kernels is None:
        raise RuntimeError("the compiled pursuit kernel is unavailable")
    n = pre.shape[1]
    encode = kernels[1]

    def rows(start: int, stop: int, out_idx: np.ndarray, out_val: np.ndarray) -> None:
        cand = np.argpartition(pre[start:stop], n - m, axis=1)[:, n - m :]
        cand.sort(axis=1)  # ascending ids: each round's Gram lookups walk one row in order
        encode(cand, target[start:stop], W, gram, k, ridge, out_idx, out_val)

    return _split(rows, pre.shape[0], k, threads, lambda s, e: (s, e))


def _split(kernel, b: int, k: int, threads: int, args) -> tuple[np.ndarray, np.ndarray]:
    """Run `kernel(*args(start, stop), out_idx[start:stop], out_val[start:stop])` over row ranges on threads."""
    out_idx = np.empty((b, k), np.int64)
    out_val = np.empty((b, k), np.float32)
    threads = max(1, min(threads, b // 64 or 1))
    bounds = np.linspace(0, b, threads + 1).astype(int)
    if threads == 1:
        kernel(*args(0, b), out_idx, out_val)
        return out_idx, out_val
    with ThreadPoolExecutor(threads) as pool:
        jobs = [pool.submit(kernel, *args(s, e), out_idx[s:e], out_val[s:e]) for s, e in zip(bounds[:-1], bounds[1:])]
        for job in jobs:
            job.result()
    return out_idx, out_val
