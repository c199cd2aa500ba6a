"""Document clusters of a large concept index: spherical k-means over the documents' unit SAE reconstructions.

A concept query scores documents exactly from their forward rows (the latents each keeps). Up to
`ConceptSettings.exact_docs` documents it scores every one; above, the index groups the documents into about
2 sqrt(n) clusters at build time, and a query scores only the documents of the clusters whose centres are most
similar to it (`probe`, a share of the documents), best centre first. The centres are k-means centres of
the very vectors the concept score compares the query with (each document's unit reconstruction), trained on
a sample of at most 64 documents per cluster and then assigned to every document.
"""

from __future__ import annotations

import numpy as np

from ..progress import ProgressCallback, Tracker

BLOCK = 16384
ITERATIONS = 10
SAMPLE_PER_CLUSTER = 64


def n_clusters(n_docs: int) -> int:
    """How many clusters an index of n_docs documents gets: 2 sqrt(n)."""
    return max(1, int(round(2 * np.sqrt(n_docs))))


def unit_reconstructions(indices: np.ndarray, values: np.ndarray, W_dec: np.ndarray, b_pre: np.ndarray,
                         rows: np.ndarray | slice) -> np.ndarray:
    """Unit SAE reconstructions of some documents from their forward rows."""
    from scipy.sparse import csr_matrix

    idx = np.asarray(indices[rows], np.int64)
    val = np.asarray(values[rows], np.float32)
    n, k = idx.shape
    codes = csr_matrix((val.ravel(), idx.ravel(), np.arange(0, n * k + 1, k)), shape=(n, len(W_dec)))
    r = np.asarray(codes @ W_dec, np.float32) + b_pre
    r /= np.maximum(np.linalg.norm(r, axis=1, keepdims=True), 1e-12)
    return r


def cluster_documents(
    indices: np.ndarray, values: np.ndarray, W_dec: np.ndarray, b_pre: np.ndarray, *, clusters: int | None = None,
    seed: int = 0, progress: ProgressCallback | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(centres (c x d float32), pointers (c + 1), members (n, int32 document rows grouped by cluster))."""
    from scipy.sparse import csr_matrix

    n = len(indices)
    c = min(clusters or n_clusters(n), n)
    rng = np.random.default_rng(seed)
    sample = np.sort(rng.choice(n, size=min(n, c * SAMPLE_PER_CLUSTER), replace=False))
    blocks = -(-n // BLOCK)
    tracker = Tracker(progress, "clusters", ITERATIONS + blocks, unit="step")
    x = unit_reconstructions(indices, values, W_dec, b_pre, sample)
    centres = x[rng.choice(len(x), size=c, replace=False)].copy()
    for _ in range(ITERATIONS):
        label = _assign(x, centres)
        sums = np.asarray(csr_matrix((np.ones(len(x), np.float32), (label, np.arange(len(x)))), shape=(c, len(x))) @ x)
        counts = np.bincount(label, minlength=c)
        empty = np.flatnonzero(counts == 0)
        sums[empty] = x[rng.choice(len(x), size=len(empty), replace=False)]  # re-seed an empty cluster
        centres = sums / np.maximum(np.linalg.norm(sums, axis=1, keepdims=True), 1e-12)
        tracker.update()
    labels = np.empty(n, np.int64)
    for a in range(0, n, BLOCK):
        labels[a : a + BLOCK] = _assign(unit_reconstructions(indices, values, W_dec, b_pre, slice(a, a + BLOCK)),
                                        centres)
        tracker.update()
    tracker.close()
    members = np.argsort(labels, kind="stable").astype(np.int32)
    ptr = np.zeros(c + 1, np.int64)
    np.cumsum(np.bincount(labels, minlength=c), out=ptr[1:])
    return centres.astype(np.float32), ptr, members


def _assign(x: np.ndarray, centres: np.ndarray) -> np.ndarray:
    out = np.empty(len(x), np.int64)
    for a in range(0, len(x), BLOCK):
        out[a : a + BLOCK] = np.argmax(x[a : a + BLOCK] @ centres.T, axis=1)
    return out
