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
        rows = np.asarray(rows, dtype=np.int64)
        order = np.argsort(rows, kind="stable")  # memory maps read fastest in ascending order
        out = np.empty((len(rows), self.shape[1]), dtype=np.float32)
        out[order] = self.array[rows[order]]
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
