"""Training batches streamed from a vector source through a shuffle buffer, for corpora larger than memory.

Each epoch cuts the source into blocks of consecutive rows (never crossing a shard), visits the blocks in an
order shuffled per epoch (so shard order is shuffled too), and fills a shuffle buffer (SAELens' mixing
buffer) of `buffer_rows` training rows from the next blocks; the buffer's rows are permuted and cut into
batches. A background thread reads and shuffles the next buffer while the current one is trained on, so
steps do not wait on disk. Held-out rows are skipped.

Every batch is a pure function of (seed, epoch, batch number): a position `StreamPosition(epoch, batch)`
names the rest of the stream, and a resumed run reads from there (the earlier buffers are never read).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from ..data.vectors import VectorSource

BLOCKS_PER_BUFFER = 16
"""A buffer is filled from this many blocks of consecutive rows in shuffled order (the unit read from disk)."""


@dataclass(frozen=True)
class StreamPosition:
    """Where a stream stands: the epoch and the number of batches of it already given out."""

    epoch: int = 0
    batch: int = 0

    def to_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "batch": self.batch}


class BatchStream:
    """Shuffled training batches of `batch_size` rows from a vector source, epoch after epoch.

    `heldout` are sorted row numbers left out (the validation split). Each epoch yields
    `steps_per_epoch` batches; the last incomplete batch of an epoch is dropped. With `world_size` ranks,
    each reads every buffer's rows but keeps and yields only its contiguous share of each global batch.
    """

    def __init__(
        self, source: VectorSource, batch_size: int, *, heldout: np.ndarray | None = None, seed: int = 0,
        buffer_rows: int = 32768, epochs: int | None = None, rank: int = 0, world_size: int = 1,
        pin_memory: bool = False,
    ) -> None:
        self.source = source
        self.batch_size = batch_size
        self.heldout = np.asarray(heldout if heldout is not None else np.zeros(0, np.int64), dtype=np.int64)
        self.seed = seed
        self.epochs = epochs
        self.rank, self.world_size = rank, world_size
        self.pin_memory = pin_memory
        batches = max(1, buffer_rows // batch_size)
        self.buffer_rows = batches * batch_size
        block_rows = max(1, self.buffer_rows // BLOCKS_PER_BUFFER)
        starts, stops = [], []
        for lo, hi in source.shard_bounds():
            for s in range(lo, hi, block_rows):
                starts.append(s)
                stops.append(min(s + block_rows, hi))
        self.block_start = np.asarray(starts, dtype=np.int64)
        self.block_stop = np.asarray(stops, dtype=np.int64)
        held_before = np.searchsorted(self.heldout, self.block_start)
        held_upto = np.searchsorted(self.heldout, self.block_stop)
        self.block_train = (self.block_stop - self.block_start) - (held_upto - held_before)
        self.n_train = int(self.block_train.sum())
        self.steps_per_epoch = max(1, self.n_train // batch_size) if self.n_train >= batch_size else 1
        self.position = StreamPosition()

    # ------------------------------------------------------------------ index arithmetic (no data read)
    def _rng(self, *key: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, *key])

    def _order(self, epoch: int) -> tuple[np.ndarray, np.ndarray]:
        """The epoch's block order and each visited block's first position in the epoch's row sequence."""
        order = self._rng(epoch).permutation(len(self.block_start))
        ends = np.cumsum(self.block_train[order])
        return order, ends - self.block_train[order]

    def _train_rows(self, block: int) -> np.ndarray:
        """The training rows of a block, ascending."""
        lo, hi = int(self.block_start[block]), int(self.block_stop[block])
        held = self.heldout[np.searchsorted(self.heldout, lo) : np.searchsorted(self.heldout, hi)]
        rows = np.arange(lo, hi, dtype=np.int64)
        return np.setdiff1d(rows, held, assume_unique=True) if len(held) else rows

    def _buffer(self, epoch: int, index: int, order: tuple[np.ndarray, np.ndarray]) -> Tensor:
        """Buffer `index` of an epoch: its rows read block by block, permuted, and (with several ranks) this
        rank's share of each batch kept."""
        blocks, first = order
        a = index * self.buffer_rows
        b = min(a + self.buffer_rows, self.steps_per_epoch * self.batch_size)
        parts = []
        pos = int(np.searchsorted(first, a, side="right")) - 1
        while a < b and pos < len(blocks):
            block = int(blocks[pos])
            rows = self._train_rows(block)[a - int(first[pos]) : b - int(first[pos])]
            if len(rows):
                chunk = self.source.read(int(rows[0]), int(rows[-1]) + 1)  # may be a view of a memory map
                gaps = len(chunk) != len(rows)
                parts.append(torch.from_numpy(chunk[rows - rows[0]] if gaps else np.array(chunk)))
                a += len(rows)
            pos += 1
        data = torch.cat(parts) if len(parts) != 1 else parts[0]
        perm = self._rng(epoch, index, 1).permutation(len(data))
        if self.world_size > 1:  # buffers hold whole batches: keep this rank's columns of the (batch, row) grid
            lo, hi = self._share()
            perm = perm.reshape(-1, self.batch_size)[:, lo:hi].reshape(-1)
        out = data[torch.from_numpy(perm)]
        return out.pin_memory() if self.pin_memory else out

    # ------------------------------------------------------------------ iteration
    def batches(self, start: StreamPosition | None = None) -> Iterator[Tensor]:
        """Batches from `start` (default: the beginning) on; `self.position` follows what was given out.

        With several ranks, each batch is this rank's contiguous share of the global batch.
        """
        start = start or StreamPosition()
        per_buffer = self.buffer_rows // self.batch_size
        epoch_range = range(start.epoch, self.epochs) if self.epochs is not None else _count(start.epoch)
        stop = threading.Event()
        out: queue.Queue = queue.Queue(maxsize=1)  # one buffer ahead of the one being trained on

        def produce() -> None:
            try:
                for epoch in epoch_range:
                    order = self._order(epoch)
                    first = start.batch // per_buffer if epoch == start.epoch else 0
                    for index in range(first, -(-self.steps_per_epoch // per_buffer)):
                        if stop.is_set():
                            return
                        out.put((epoch, index, self._buffer(epoch, index, order)))
                out.put(None)
            except BaseException as exc:  # handed to the consumer, which raises it
                out.put(exc)

        thread = threading.Thread(target=produce, name="embedsae-batch-stream", daemon=True)
        thread.start()
        lo, hi = self._share()
        rows = hi - lo  # of each batch in a buffer
        try:
            while True:
                item = out.get()
                if item is None:
                    return
                if isinstance(item, BaseException):
                    raise item
                epoch, index, data = item
                for j in range(per_buffer):
                    batch = index * per_buffer + j
                    if batch >= self.steps_per_epoch:
                        break
                    if epoch == start.epoch and batch < start.batch:
                        continue
                    self.position = _next(epoch, batch, self.steps_per_epoch)
                    yield data[j * rows : (j + 1) * rows]
        finally:
            stop.set()
            while thread.is_alive():  # unblock a producer waiting to put
                try:
                    out.get(timeout=0.05)
                except queue.Empty:
                    pass
            thread.join()

    def _share(self) -> tuple[int, int]:
        """This rank's row range within a global batch."""
        per = self.batch_size // self.world_size
        return self.rank * per, (self.rank + 1) * per


def _next(epoch: int, batch: int, steps_per_epoch: int) -> StreamPosition:
    return StreamPosition(epoch + 1, 0) if batch + 1 >= steps_per_epoch else StreamPosition(epoch, batch + 1)


def _count(start: int) -> Iterator[int]:
    while True:
        yield start
        start += 1
