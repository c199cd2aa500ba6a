"""The first pass of a large concept index: a one-bit code of each document's score vector, read by a compiled
popcount scan, picks the candidates that the exact concept score then ranks.

The projection score of a document is the query's dot product with one vector per document, t = reconstruction
+ b_pre (+ the residual sketch's part; without it, t is the unit reconstruction). The first pass keeps t's signs
(one bit per dimension) and c = |t|^2 / |t|_1, so that q . t ~ c q . sign(t) (the asymmetric one-bit estimate of
RaBitQ, Gao & Long 2024, as compress.py's residual sketch). With the query quantised to 4 bits per dimension,
q . sign(t) is a few popcounts per 64 dimensions: the scan reads 50 bytes per document, in document order, on
up to two threads. The `candidates` documents with the largest estimates are then scored exactly
(concept_kernel.py); the exact top k is theirs whenever every document of it is among them (measured in
benchmarks/concept_scale.py: 1,024 candidates hold it on >= 99 % of queries at a million documents).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np

from .._compiled import Compiled
from ..progress import ProgressCallback, Tracker

BLOCK = 16384
PLANES = 4  # bits per query dimension (the compiled scan reads four planes)
_SPLIT_DOCS = 200_000  # a scan of more documents than this runs on two threads
_POOL: ThreadPoolExecutor | None = None
_BYTE_ONES = np.array([bin(i).count("1") for i in range(256)], np.uint8)


def bit_counts(words: np.ndarray) -> np.ndarray:
    """The number of set bits of each uint64 (np.bitwise_count, or a byte table before NumPy 2)."""
    if hasattr(np, "bitwise_count"):
        return np.bitwise_count(words)
    words = np.ascontiguousarray(words, np.uint64)
    return _BYTE_ONES[words.view(np.uint8)].reshape(*words.shape, 8).sum(-1, dtype=np.uint8)


def _pool() -> ThreadPoolExecutor:
    global _POOL
    if _POOL is None:
        _POOL = ThreadPoolExecutor(2, thread_name_prefix="embedsae-prefilter")
    return _POOL


class SignCodes:
    """Every document's one-bit code: `words` (ceil(d / 64) x docs uint64, dimension-major, so the scan reads
    one word of every document in turn), the popcount of each code and the scale c = |t|^2 / |t|_1 (float16)."""

    def __init__(self, words: np.ndarray, scale: np.ndarray) -> None:
        self.words = np.ascontiguousarray(words, np.uint64)
        self.scale = np.asarray(scale, np.float16)
        self._scale32 = self.scale.astype(np.float32)
        self.ones = bit_counts(self.words).sum(0, dtype=np.uint16)

    @property
    def n_docs(self) -> int:
        return self.words.shape[1]

    @property
    def nbytes(self) -> int:
        """Bytes stored: the codes and their scales (the popcounts are recomputed when loaded)."""
        return int(self.words.nbytes + self.scale.nbytes)

    @classmethod
    def build(cls, n_docs: int, targets, progress: ProgressCallback | None = None) -> SignCodes:
        """Codes of the vectors that `targets(rows)` returns for slices of the documents (block by block)."""
        words, scale = None, np.empty(n_docs, np.float16)
        tracker = Tracker(progress, "first-pass codes", n_docs, unit="doc")
        for start in range(0, n_docs, BLOCK):
            rows = slice(start, min(start + BLOCK, n_docs))
            t = np.asarray(targets(rows), np.float32)
            if words is None:
                words = np.zeros((-(-t.shape[1] // 64), n_docs), np.uint64)
            packed = np.zeros((len(t), words.shape[0] * 8), np.uint8)
            packed[:, : -(-t.shape[1] // 8)] = np.packbits(t > 0, axis=1, bitorder="little")
            words[:, rows] = packed.view(np.uint64).T
            scale[rows] = (np.square(t).sum(1) / np.maximum(np.abs(t).sum(1), 1e-12)).astype(np.float16)
            tracker.update(len(t))
        tracker.close()
        return cls(words if words is not None else np.zeros((0, 0), np.uint64), scale)

    def query(self, q: np.ndarray) -> tuple[np.ndarray, float, float, float]:
        """The query's bit planes (PLANES x words) and (minimum, step, sum): q_j ~ minimum + step x u_j with u_j
        the 4-bit value whose bits the planes hold."""
        q = np.asarray(q, np.float32).reshape(-1)
        lo, hi = float(q.min()), float(q.max())
        step = (hi - lo) / (2**PLANES - 1) or 1.0
        u = np.clip(np.rint((q - lo) / step), 0, 2**PLANES - 1).astype(np.uint8)
        planes = np.zeros((PLANES, self.words.shape[0] * 64), np.uint8)
        for p in range(PLANES):
            planes[p, : len(q)] = (u >> p) & 1
        packed = np.packbits(planes, axis=1, bitorder="little").view(np.uint64)
        return np.ascontiguousarray(packed), lo, step, float(q.sum())

    def estimates(self, q: np.ndarray) -> np.ndarray:
        """Every document's estimate c (2 q' . bits - sum q) of q . t, with q' the quantised query (NumPy)."""
        planes, lo, step, total = self.query(q)
        acc = np.zeros(self.n_docs, np.float64)
        for p in range(PLANES):
            acc += (1 << p) * bit_counts(self.words & planes[p][:, None]).sum(0, dtype=np.int64)
        dots = lo * self.ones.astype(np.float64) + step * acc
        return (self._scale32 * (2 * dots - total)).astype(np.float32)

    def candidates(self, q: np.ndarray, n: int) -> np.ndarray:
        """The n documents with the largest estimates (ascending row order; all when n >= the documents)."""
        if n >= self.n_docs:
            return np.arange(self.n_docs, dtype=np.int64)
        kernel = _COMPILED.get()
        if kernel is None:
            est = self.estimates(q)
            return np.sort(np.argpartition(-est, n - 1)[:n]).astype(np.int64)
        planes, lo, step, total = self.query(q)
        args = (self.words, self.ones, self._scale32, planes, np.float32(lo), np.float32(step), np.float32(total))
        if self.n_docs <= _SPLIT_DOCS:
            rows, _ = kernel(*args, 0, self.n_docs, n)
        else:
            half = self.n_docs // 2
            parts = [_pool().submit(kernel, *args, a, b, n) for a, b in ((0, half), (half, self.n_docs))]
            found = [f.result() for f in parts]
            rows, est = np.concatenate([r for r, _ in found]), np.concatenate([e for _, e in found])
            rows = rows[np.argpartition(-est, n - 1)[:n]]
        return np.sort(rows[rows >= 0]).astype(np.int64)


def available() -> bool:
    """Whether the compiled scan can be used (numba imports and compiles)."""
    return _COMPILED.available()


def _compile():
    import numba
    from numba import types
    from numba.extending import intrinsic

    from .concept_kernel import sift_down_kernel

    sift_down = sift_down_kernel()

    @intrinsic
    def popcount(typingctx, x):  # pragma: no cover - compiled
        if x != types.uint64:
            return None

        def codegen(context, builder, sig, args):
            return builder.ctpop(args[0])

        return types.uint64(types.uint64), codegen

    @numba.njit(nogil=True, cache=True, inline="always")
    def weighted(x, planes, w):  # pragma: no cover - compiled
        """sum_p 2^p popcount(x & plane p): the 4-bit query's dot product with 64 bits of a code."""
        return (popcount(x & planes[0, w]) + (popcount(x & planes[1, w]) << np.uint64(1))
                + (popcount(x & planes[2, w]) << np.uint64(2)) + (popcount(x & planes[3, w]) << np.uint64(3)))

    @numba.njit(nogil=True, cache=True)
    def block_sums(words, planes, a, b, acc):  # pragma: no cover - compiled
        """acc[i] = the quantised query's dot product with the bits of document a + i, for a <= a + i < b:
        six words (384 dimensions) at a time in registers, the rest word by word."""
        m = b - a
        for i in range(m):
            acc[i] = 0
        nw = words.shape[0]
        six = nw - nw % 6
        for w in range(0, six, 6):
            r0, r1, r2, r3, r4, r5 = words[w], words[w + 1], words[w + 2], words[w + 3], words[w + 4], words[w + 5]
            for i in range(m):
                d = a + i
                acc[i] += (weighted(r0[d], planes, w) + weighted(r1[d], planes, w + 1)
                           + weighted(r2[d], planes, w + 2) + weighted(r3[d], planes, w + 3)
                           + weighted(r4[d], planes, w + 4) + weighted(r5[d], planes, w + 5))
        for w in range(six, nw):
            row = words[w]
            for i in range(m):
                acc[i] += weighted(row[a + i], planes, w)

    @numba.njit(nogil=True, cache=True)
    def scan(words, ones, scale, planes, lo, step, total, first, last, n):  # pragma: no cover - compiled
        hs = np.full(n, -np.inf, np.float32)  # a min-heap of the n best estimates
        hr = np.full(n, -1, np.int64)
        acc = np.empty(4096, np.uint64)
        for a in range(first, last, 4096):
            b = min(a + 4096, last)
            block_sums(words, planes, a, b, acc)
            for i in range(b - a):
                d = a + i
                est = scale[d] * (np.float32(2.0) * (lo * np.float32(ones[d]) + step * np.float32(acc[i])) - total)
                if est > hs[0]:
                    hs[0] = est
                    hr[0] = d
                    sift_down(hs, hr, n, 0)
        return hr, hs

    return scan


_COMPILED = Compiled(_compile, "the compiled first-pass scan", "NumPy")
