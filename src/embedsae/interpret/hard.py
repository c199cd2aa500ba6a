"""Per-document hard negatives: for a document a feature fires on, the nearest document (cosine of the unit
vectors) that the feature does not fire on.

Each document's `k` nearest documents are found once, the first time a feature asks about it, and kept; a
document's hard negative for a feature is then the first of them outside the feature's excluded documents (those
it fires on, and any the caller keeps apart), and only when all `k` are excluded is the whole search pool
scanned for that document. The search pool is every document of a corpus up to `pool` documents, and a seeded
sample of `pool` documents of a larger one, held in memory (pool x dimension floats): the cost of a run is
about (documents asked about) x (pool) dot products, whatever the corpus size, and its memory the pool's
vectors, 8 bytes per corpus document (where each one's neighbours are) and 4k bytes per document asked about.
"""

from __future__ import annotations

import numpy as np

from ..data.vectors import UnitRows

QUERY_CHUNK = 512
"""Documents whose neighbours are searched together (a QUERY_CHUNK x pool block of similarities)."""


class NearestDocuments:
    """Nearest documents of any document among a search pool, computed on demand and cached.

    `docs` are the unit document vectors (an array or `UnitRows`); `pool` bounds the documents searched (see the
    module docstring); `k` neighbours are kept per document asked about."""

    def __init__(self, docs: np.ndarray | UnitRows, *, k: int = 32, pool: int | None = 50_000, seed: int = 0) -> None:
        self.docs = docs
        n = docs.shape[0]
        if pool is None or pool >= n:
            self.pool_rows = np.arange(n, dtype=np.int64)
        else:
            rng = np.random.default_rng([seed, 7])
            self.pool_rows = np.sort(rng.choice(n, pool, replace=False)).astype(np.int64)
        self.pool_vecs = np.asarray(docs[self.pool_rows], dtype=np.float32)
        self.k = min(k, len(self.pool_rows))
        self._slot = np.full(n, -1, np.int64)  # row -> its line in _nbrs (-1: not searched yet)
        self._nbrs = np.zeros((0, self.k), np.int32)  # k neighbours of each document searched (4 bytes each)
        self.fallbacks = 0
        """How many look-ups needed a scan of the whole pool (all `k` neighbours were excluded)."""

    def _ensure(self, rows: np.ndarray) -> None:
        rows = np.unique(rows)
        new = rows[self._slot[rows] < 0]
        if not len(new) or not self.k:
            return
        found = []
        for s in range(0, len(new), QUERY_CHUNK):
            q = np.asarray(self.docs[new[s : s + QUERY_CHUNK]], dtype=np.float32)
            sims = q @ self.pool_vecs.T
            top = np.argpartition(-sims, self.k - 1, axis=1)[:, : self.k]
            order = np.argsort(-np.take_along_axis(sims, top, 1), axis=1, kind="stable")
            found.append(self.pool_rows[np.take_along_axis(top, order, 1)].astype(np.int32))
        base = len(self._nbrs)
        self._nbrs = np.concatenate([self._nbrs, *found])
        self._slot[new] = np.arange(base, base + len(new))

    def neighbours(self, rows: np.ndarray) -> np.ndarray:
        """The `k` nearest pool documents of each row, nearest first (a row in the pool is its own nearest)."""
        rows = np.asarray(rows, dtype=np.int64)
        self._ensure(rows)
        return self._nbrs[self._slot[rows]].astype(np.int64) if len(rows) else np.zeros((0, self.k), np.int64)

    def nearest_outside(self, rows: np.ndarray, excluded: np.ndarray) -> np.ndarray:
        """For each of `rows`, its nearest pool document not in `excluded` (sorted row numbers; -1 where every pool
        document is excluded)."""
        rows = np.asarray(rows, dtype=np.int64)
        out = np.full(len(rows), -1, np.int64)
        if not len(rows):
            return out
        nb = self.neighbours(rows)
        pos = np.searchsorted(excluded, nb)
        hit = (pos < len(excluded)) & (excluded[np.minimum(pos, max(len(excluded) - 1, 0))] == nb) if len(excluded) \
            else np.zeros(nb.shape, bool)
        ok = ~hit
        first = ok.argmax(1)
        has = ok[np.arange(len(rows)), first]
        out[has] = nb[has, first[has]]
        missing = np.flatnonzero(~has)
        if len(missing):
            self.fallbacks += len(missing)
            allowed = ~np.isin(self.pool_rows, excluded)
            if allowed.any():
                q = np.asarray(self.docs[rows[missing]], dtype=np.float32)
                sims = q @ self.pool_vecs[allowed].T
                out[missing] = self.pool_rows[allowed][sims.argmax(1)]
        return out
