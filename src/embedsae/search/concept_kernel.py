"""Exact concept scores of a set of documents from their forward rows, as one compiled loop (numba).

A document's score is ``sum_c qvec[idx[d, c]] * terms[d, c] + offset * factor[d]``: the query's weight of each
latent the document keeps times its term weight (see terms.py), plus a per-document constant (the projection
scoring's ``q . b_pre``, over the reconstruction's norm without the residual sketch), plus, with residual
sketches, their estimate of the query's dot product with what the reconstruction misses (compress.py). The
loop scores the given documents (a first pass's candidates, or every document) and keeps the k best in a heap;
it reads each document's row once, with the query's weights (n_latents floats) in cache. Without numba the
same scores come from NumPy, in blocks.
"""

from __future__ import annotations

import functools

import numpy as np

from .._compiled import Compiled

_COMPILED = Compiled(lambda: _compile(), "the compiled concept scoring", "NumPy")


def available() -> bool:
    """Whether the compiled loop can be used (numba imports and compiles)."""
    return _COMPILED.available()


def _kernel():
    return _COMPILED.get()


@functools.cache
def sift_down_kernel():
    """A compiled sift-down of a min-heap of scores `hs` with rows `hr` (its n first entries), from entry i: what
    the k-best loops here and in prefilter.py call after replacing the heap's smallest entry."""
    import numba

    @numba.njit(nogil=True, cache=True, inline="always")
    def sift_down(hs, hr, n, i):  # pragma: no cover - compiled
        while True:
            lo = i
            a = 2 * i + 1
            b = a + 1
            if a < n and hs[a] < hs[lo]:
                lo = a
            if b < n and hs[b] < hs[lo]:
                lo = b
            if lo == i:
                return
            hs[i], hs[lo] = hs[lo], hs[i]
            hr[i], hr[lo] = hr[lo], hr[i]
            i = lo

    return sift_down


def _compile():
    import numba

    sift_down = sift_down_kernel()

    @numba.njit(nogil=True, cache=True)
    def top_docs(fwd_idx, terms, qvec, offset, factor, rows, k, bits, rscale, lut,
                 total):  # pragma: no cover - compiled
        hs = np.empty(k, np.float32)
        hr = np.empty(k, np.int64)
        n = 0
        width = fwd_idx.shape[1]
        nb = lut.shape[0]
        every = rows.shape[0] == 0
        for p in range(fwd_idx.shape[0] if every else rows.shape[0]):
            d = p if every else rows[p]
            s = np.float32(0.0)
            for j in range(width):
                s += qvec[fwd_idx[d, j]] * terms[d, j]
            s += offset * factor[d]
            if nb > 0:  # the residual sketch's estimate
                t = np.float32(0.0)
                for b in range(nb):
                    t += lut[b, bits[d, b]]
                s += rscale[d] * (np.float32(2.0) * t - total)
            if n < k:  # a min-heap of the k best: sift the new entry up
                i = n
                hs[i] = s
                hr[i] = d
                while i > 0:
                    up = (i - 1) // 2
                    if hs[up] <= hs[i]:
                        break
                    hs[i], hs[up] = hs[up], hs[i]
                    hr[i], hr[up] = hr[up], hr[i]
                    i = up
                n += 1
            elif s > hs[0]:
                hs[0] = s
                hr[0] = d
                sift_down(hs, hr, n, 0)
        out_s = np.empty(n, np.float32)
        out_r = np.empty(n, np.int64)
        size = n
        for j in range(n - 1, -1, -1):  # pop the heap: best last, so fill from the end
            out_s[j] = hs[0]
            out_r[j] = hr[0]
            size -= 1
            hs[0] = hs[size]
            hr[0] = hr[size]
            sift_down(hs, hr, size, 0)
        return out_r, out_s

    return top_docs


def top_docs(
    fwd_idx: np.ndarray, terms: np.ndarray, qvec: np.ndarray, offset: float, factor: np.ndarray, rows: np.ndarray,
    k: int, bits: np.ndarray, rscale: np.ndarray, lut: np.ndarray, total: float,
) -> tuple[np.ndarray, np.ndarray]:
    """The k best of the documents `rows` (every document where `rows` is empty) and their scores, best first.
    With a non-empty `lut`, each score adds its residual sketch's estimate rscale[d] (2 sum_b lut[b, bits[d, b]]
    - total)."""
    qvec = np.ascontiguousarray(qvec, np.float32)
    if k <= 0:
        return np.zeros(0, np.int64), np.zeros(0, np.float32)
    kernel = _kernel()
    args = (fwd_idx, terms, qvec, np.float32(offset), factor, np.ascontiguousarray(rows, np.int64), int(k), bits,
            np.asarray(rscale, np.float32), np.ascontiguousarray(lut, np.float32), np.float32(total))
    return kernel(*args) if kernel is not None else top_docs_numpy(*args)


def top_docs_numpy(fwd_idx, terms, qvec, offset, factor, rows, k, bits, rscale, lut, total):
    """`top_docs` without numba."""
    from .compress import residual_estimate
    from .dense import top_k

    docs = np.arange(len(fwd_idx), dtype=np.int64) if len(rows) == 0 else np.asarray(rows, np.int64)
    if len(docs) == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.float32)
    scores = np.empty(len(docs), np.float32)
    for a in range(0, len(docs), 65536):
        d = docs[a : a + 65536]
        scores[a : a + 65536] = (qvec[fwd_idx[d].astype(np.int64)] * terms[d]).sum(1) + np.float32(offset) * factor[d]
        if len(lut):
            scores[a : a + 65536] += residual_estimate(bits[d], rscale[d], lut, total)
    i, v = top_k(scores[None, :], k)
    return docs[i[0]], v[0]
