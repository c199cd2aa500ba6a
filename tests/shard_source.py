"""A vector source over several .npy shard files (memory-mapped), as a sharded workspace stores them."""

from __future__ import annotations

from pathlib import Path

import numpy as np


class NpyShards:
    """Rows of several memory-mapped .npy files read as one `VectorSource`."""

    def __init__(self, files: list[Path]) -> None:
        self.parts = [np.load(f, mmap_mode="r") for f in files]
        self.starts = np.cumsum([0] + [len(p) for p in self.parts])

    @classmethod
    def write(cls, folder: Path, array: np.ndarray, sizes: list[int]) -> NpyShards:
        """Cut `array` into shards of the given row counts under `folder`."""
        assert sum(sizes) == len(array)
        folder.mkdir(parents=True, exist_ok=True)
        files, start = [], 0
        for i, size in enumerate(sizes):
            files.append(folder / f"shard-{i:05d}.npy")
            np.save(files[-1], np.ascontiguousarray(array[start : start + size], dtype=np.float32))
            start += size
        return cls(files)

    @property
    def shape(self) -> tuple[int, int]:
        return int(self.starts[-1]), int(self.parts[0].shape[1])

    def shard_bounds(self) -> list[tuple[int, int]]:
        return [(int(a), int(b)) for a, b in zip(self.starts[:-1], self.starts[1:])]

    def read(self, start: int, stop: int) -> np.ndarray:
        out = []
        for i, (a, b) in enumerate(self.shard_bounds()):
            lo, hi = max(start, a), min(stop, b)
            if lo < hi:
                out.append(np.asarray(self.parts[i][lo - a : hi - a], dtype=np.float32))
        return np.concatenate(out) if len(out) != 1 else out[0]

    def take(self, rows: np.ndarray) -> np.ndarray:
        rows = np.asarray(rows, dtype=np.int64)
        out = np.empty((len(rows), self.shape[1]), np.float32)
        shard = np.searchsorted(self.starts, rows, side="right") - 1
        for i in np.unique(shard):
            sel = shard == i
            out[sel] = self.parts[i][rows[sel] - self.starts[i]]
        return out
