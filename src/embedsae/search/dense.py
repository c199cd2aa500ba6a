"""Dense retrieval: exact cosine search with batched matrix products, and an optional usearch ANN index."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .._io import atomic_path
from ..data.embedders import l2_normalise
from ..data.vectors import VectorSource, as_source, blocks, iter_chunks
from ..errors import InputError, WorkspaceError, require
from .retriever import BuildContext, Query, Retriever


def top_k(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices and values of the k largest entries of each row (sorted, best first)."""
    import torch  # torch.topk is ~5x faster than numpy's argpartition on 100k scores

    scores = np.ascontiguousarray(np.atleast_2d(scores))
    k = min(k, scores.shape[1])
    if k <= 0:
        return np.zeros((len(scores), 0), np.int64), np.zeros((len(scores), 0), scores.dtype)
    vals, idx = torch.topk(torch.from_numpy(scores), k, dim=1, sorted=True)
    return idx.numpy(), vals.numpy()


class DenseIndex:
    """Exact cosine search over (docs x dim) float32 vectors: an array, or a vector source read block by block.

    A source of up to `in_memory_bytes` is read into memory once it serves a second search (a long-lived searcher
    then scans memory, not the files, per query); a single search, as the command line makes, streams the blocks
    and never holds them all."""

    def __init__(
        self, vectors: np.ndarray | VectorSource, *, normalized: bool = True, chunk_rows: int = 65536,
        in_memory_bytes: int = 2**31,
    ) -> None:
        import threading

        self.source = as_source(vectors)
        n, dim = self.source.shape
        self.vectors: np.ndarray | None = None
        if isinstance(vectors, np.ndarray) and not isinstance(vectors, np.memmap) and vectors.flags.c_contiguous:
            self.vectors = vectors
        self._keep = n * dim * 4 <= in_memory_bytes
        self._searches = 0
        self._lock = threading.Lock()
        self.shape = (n, dim)
        self.normalized = normalized
        self.chunk_rows = chunk_rows
        self._inv_norms = None
        if not normalized:
            norms = np.concatenate([np.linalg.norm(b, axis=1) for _, b in self._blocks()] or [np.zeros(0, np.float32)])
            self._inv_norms = 1.0 / np.maximum(norms, 1e-12)

    def __len__(self) -> int:
        return self.shape[0]

    def _blocks(self):
        """(start row, float32 block) over every document."""
        self._searches += 1
        if self.vectors is None and self._keep and self._searches > 1:
            with self._lock:  # read once, by the first of concurrent searches
                if self.vectors is None:
                    self.vectors = self.source.read(0, self.shape[0])
        if self.vectors is None:
            yield from iter_chunks(self.source, self.chunk_rows)
        else:
            yield from blocks(self.vectors, self.chunk_rows)

    def scores(self, queries: np.ndarray) -> np.ndarray:
        """Cosine of each query with every document, (queries x docs)."""
        q = l2_normalise(np.atleast_2d(queries))
        self._check_dim(q)
        out = np.empty((len(q), len(self)), np.float32)
        for a, block in self._blocks():
            out[:, a : a + len(block)] = q @ block.T
        if self._inv_norms is not None:
            out *= self._inv_norms
        return out

    def search(self, queries: np.ndarray, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """Top-k document rows and cosines per query (exact), keeping only k per chunk in memory."""
        q = l2_normalise(np.atleast_2d(queries))
        self._check_dim(q)
        best_i = np.zeros((len(q), 0), np.int64)
        best_s = np.zeros((len(q), 0), np.float32)
        for a, block in self._blocks():
            s = q @ block.T
            if self._inv_norms is not None:
                s *= self._inv_norms[a : a + len(block)]
            i, v = top_k(s, k)
            best_i = np.concatenate([best_i, i + a], 1)
            best_s = np.concatenate([best_s, v], 1)
            j, best_s = top_k(best_s, k)
            best_i = np.take_along_axis(best_i, j, 1)
        return best_i, best_s

    def _check_dim(self, q: np.ndarray) -> None:
        if q.shape[1] != self.shape[1]:
            raise InputError(f"query vectors are {q.shape[1]}-d but the index holds {self.shape[1]}-d vectors")


class AnnIndex:
    """Approximate cosine search with usearch (optional extra 'ann')."""

    def __init__(self, index) -> None:
        self.index = index

    @classmethod
    def build(cls, vectors: np.ndarray | VectorSource, *, connectivity: int = 16, dtype: str = "f16") -> AnnIndex:
        """Build an HNSW index over the rows of `vectors` (keys = row numbers), added block by block."""
        usearch_index = require("usearch.index", "the approximate dense index", "ann")
        source = as_source(vectors)
        index = usearch_index.Index(ndim=source.shape[1], metric="cos", dtype=dtype, connectivity=connectivity)
        for start, block in iter_chunks(source, 65536):
            index.add(np.arange(start, start + len(block), dtype=np.uint64), np.ascontiguousarray(block, np.float32))
        return cls(index)

    def save(self, path: str | os.PathLike) -> None:
        with atomic_path(path) as tmp:
            self.index.save(str(tmp))

    @classmethod
    def load(cls, path: str | os.PathLike) -> AnnIndex:
        usearch_index = require("usearch.index", "the approximate dense index", "ann")
        if not Path(path).is_file():
            raise WorkspaceError(f"no approximate index at {path}; build the index with the approximate dense index "
                                 "on: setting `ann`")
        return cls(usearch_index.Index.restore(str(path)))

    def search(self, queries: np.ndarray, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """Approximate top-k rows and cosines per query."""
        q = l2_normalise(np.atleast_2d(queries))
        res = self.index.search(q, k)
        keys = np.atleast_2d(np.asarray(res.keys)).astype(np.int64)
        dist = np.atleast_2d(np.asarray(res.distances)).astype(np.float32)
        return keys, 1.0 - dist


class DenseRetriever(Retriever):
    """Exact cosine search over the workspace's embeddings (or the usearch index when the Searcher has `ann`)."""

    name = "dense"

    @classmethod
    def build(cls, ctx: BuildContext) -> dict:
        return ctx.store.write_dense(ctx)

    def load(self) -> None:
        if not self.available():
            raise WorkspaceError(f"the index of {self.searcher.ws.path} was built without the dense part; rebuild it "
                                 "with dense search on to search by dense vectors")
        self.index, self._bytes = self.searcher.storage.dense(self.searcher.ann)

    def rank(self, query: Query, k: int) -> tuple[np.ndarray, np.ndarray]:
        i, s = self.index.search(query.vector[None, :], k)
        return i[0], s[0]

    def size(self) -> int:
        return self._bytes

    def available(self) -> bool:
        return self.searcher.storage.part_built("dense") is not False
