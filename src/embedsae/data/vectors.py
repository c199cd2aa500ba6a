"""Document vectors as row blocks (shards) that stages read piece by piece, never the whole corpus at once.

Every stage that may meet a corpus larger than memory reads vectors through a `VectorSource`: its shape,
the row ranges of its shards (the unit worth reading contiguously from disk) and reads of a row range or
of chosen rows. A workspace's single `embeddings.npy` is one shard; sharded workspaces have many.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol, runtime_checkable

import numpy as np

from ..errors import InputError


@runtime_checkable
class VectorSource(Protocol):
    """Rows of float32 vectors, stored in shards."""

    @property
    def shape(self) -> tuple[int, int]:
        """(rows, dimension)."""
        ...

    def shard_bounds(self) -> list[tuple[int, int]]:
        """The [start, stop) row range of every shard, in order, covering all rows."""
        ...

    def read(self, start: int, stop: int) -> np.ndarray:
        """Rows [start, stop) as a float32 array (may cross shard boundaries)."""
        ...

    def take(self, rows: np.ndarray) -> np.ndarray:
        """The given rows (any order, repeats allowed) as a float32 array in that order."""
        ...


class ArraySource:
    """An in-memory or memory-mapped 2-D array as a vector source, cut into shards of `shard_rows` rows."""

    def __init__(self, array: np.ndarray, shard_rows: int | None = None) -> None:
        if array.ndim != 2:
            raise InputError(f"vectors must be a 2-D array (rows x dimension), got shape {array.shape}")
        if shard_rows is not None and shard_rows < 1:
            raise InputError(f"shard_rows must be at least 1, got {shard_rows}")
        self.array = array
        self.shard_rows = shard_rows or max(1, len(array))

    @property
    def shape(self) -> tuple[int, int]:
        return (int(self.array.shape[0]), int(self.array.shape[1]))

    def __len__(self) -> int:
        return self.shape[0]

    def shard_bounds(self) -> list[tuple[int, int]]:
        n = self.shape[0]
        return [(s, min(s + self.shard_rows, n)) for s in range(0, n, self.shard_rows)] or [(0, 0)]

    def read(self, start: int, stop: int) -> np.ndarray:
        return np.asarray(self.array[start:stop], dtype=np.float32)

    def take(self, rows: np.ndarray) -> np.ndarray:
        return gather_rows(self.array, np.asarray(rows, dtype=np.int64))


class RowView:
    """A vector source read like a read-only 2-D array: `view[i]`, `view[a:b]`, `view[[3, 7]]` read just those
    rows; `np.asarray(view)` reads every row (the one operation that copies the whole source into memory)."""

    ndim = 2
    dtype = np.dtype(np.float32)

    def __init__(self, source: VectorSource) -> None:
        self.source = source

    @property
    def shape(self) -> tuple[int, int]:
        return self.source.shape

    def __len__(self) -> int:
        return self.source.shape[0]

    def __getitem__(self, key):
        cols = None
        if isinstance(key, tuple):
            key, cols = key[0], key[1:]
        if isinstance(key, slice):
            start, stop, step = key.indices(len(self))
            out = self.source.read(start, stop) if step == 1 else self.source.take(np.arange(start, stop, step))
        elif np.ndim(key) == 0:
            row = int(key) + (len(self) if int(key) < 0 else 0)
            if not 0 <= row < len(self):
                raise IndexError(f"row {key} out of range 0..{len(self) - 1}")
            out = self.source.read(row, row + 1)[0]
        else:
            rows = np.asarray(key)
            rows = np.flatnonzero(rows) if rows.dtype == bool else rows.astype(np.int64)
            rows = np.where(rows < 0, rows + len(self), rows)
            out = self.source.take(rows.reshape(-1)).reshape(*rows.shape, self.shape[1])
        return out[(slice(None), *cols)] if cols and out.ndim == 2 else (out[cols] if cols else out)

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        out = self.source.read(0, len(self))
        return out if dtype is None else out.astype(dtype, copy=False)

    def __matmul__(self, other):
        return np.asarray(self) @ other


def gather_rows(array: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """array[rows] as float32, read in ascending row order (memory maps read fastest so), returned in the given order."""
    order = np.argsort(rows, kind="stable")
    out = np.empty((len(rows), array.shape[1]), dtype=np.float32)
    out[order] = array[rows[order]]
    return out


def as_source(vectors: VectorSource | np.ndarray) -> VectorSource:
    """A vector source for an array, or the source itself."""
    return vectors if isinstance(vectors, VectorSource) else ArraySource(vectors)


def iter_chunks(source: VectorSource, rows: int) -> Iterator[tuple[int, np.ndarray]]:
    """(start row, block) for consecutive blocks of at most `rows` rows, never crossing a shard boundary."""
    if rows < 1:
        raise InputError(f"chunk rows must be at least 1, got {rows}")
    for lo, hi in source.shard_bounds():
        for start in range(lo, hi, rows):
            yield start, source.read(start, min(start + rows, hi))


IN_MEMORY_BYTES = 2 * 1024**3
"""Unit document vectors up to this many bytes are normalised into memory at once; larger sets are read on demand."""


class UnitRows:
    """The rows of a vector source scaled to unit length, read when asked for (never the whole corpus at once).

    Indexing with row numbers (or a slice, or one row) reads and normalises just those rows; `chunks()` walks
    every row block by block, for whole-corpus passes (a covariance, a nearest-document search).
    """

    def __init__(self, source: VectorSource, chunk_rows: int = 65536) -> None:
        self.source = source
        self.chunk_rows = chunk_rows

    @property
    def shape(self) -> tuple[int, int]:
        return self.source.shape

    def __len__(self) -> int:
        return self.source.shape[0]

    def __getitem__(self, rows) -> np.ndarray:
        if isinstance(rows, slice):
            start, stop, step = rows.indices(len(self))
            return unit(self.source.read(start, stop)[::step] if step != 1 else self.source.read(start, stop))
        if np.isscalar(rows):
            return unit(self.source.take(np.array([int(rows)])))[0]
        rows = np.asarray(rows)
        if rows.dtype == bool:
            rows = np.flatnonzero(rows)
        return unit(self.source.take(rows.reshape(-1))).reshape(*rows.shape, self.shape[1])

    def chunks(self) -> Iterator[tuple[int, np.ndarray]]:
        """(start row, unit block) over every row, in order."""
        for start, block in iter_chunks(self.source, self.chunk_rows):
            yield start, unit(block)


def unit(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm as float32 (zero rows stay zero)."""
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def unit_rows(vectors: VectorSource | np.ndarray, in_memory_bytes: int = IN_MEMORY_BYTES) -> np.ndarray | UnitRows:
    """Unit document vectors: normalised into one array when they fit in `in_memory_bytes`, else read on demand."""
    source = as_source(vectors)
    n, dim = source.shape
    if n * dim * 4 <= in_memory_bytes:
        return unit(source.read(0, n))
    return UnitRows(source)


def blocks(vectors: np.ndarray | UnitRows, rows: int = 65536) -> Iterator[tuple[int, np.ndarray]]:
    """(start row, block) over every row of an array or of `UnitRows`."""
    if isinstance(vectors, UnitRows):
        yield from vectors.chunks()
        return
    for start in range(0, len(vectors), rows):
        yield start, np.asarray(vectors[start : start + rows], dtype=np.float32)
