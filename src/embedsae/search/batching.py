"""Query embedding shared by concurrent callers: one worker thread embeds, in one forward pass, every query text
that is waiting when it becomes free (micro-batching).

A threaded server embeds one short query per search. Alone, each pays the model's whole per-call overhead; at
once, they contend for the same cores (and OpenVINO's compiled model takes one call at a time per infer
request). Batched, the texts waiting at one moment share one call: with all-MiniLM-L6-v2 on OpenVINO, 16
five-word queries in one call took 2.3 to 5 times one query's time, not 16 times (benchmarks/search_breakdown.py,
shared 2-core machine). A caller alone waits for no one: the worker takes what is there and starts at once.
Vectors equal the unbatched ones to float rounding (padding is masked out).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import Any

import numpy as np

MAX_BATCH = 64
"""Most texts one forward pass takes (later callers wait for the next pass)."""
IDLE_SECONDS = 30.0
"""The worker thread ends after this long without work (it starts again with the next call)."""


class BatchingEmbedder:
    """Embeds texts for many threads at once, with the embedder `make()` returns (`embed(texts)`), made on first
    use in the worker thread (so a caller never waits for a model to load while holding anything else).

    `submit` returns a future of the caller's vectors; `embed` waits for them. A batch's error goes to each of its
    callers.
    """

    def __init__(self, make: Callable[[], Any], max_batch: int = MAX_BATCH, idle_seconds: float = IDLE_SECONDS) -> None:
        self._make = make
        self.embedder: Any = None
        self.max_batch = max_batch
        self.idle_seconds = idle_seconds
        self._queue: queue.SimpleQueue[tuple[list[str], Future]] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._worker: threading.Thread | None = None
        self.batches = 0
        """Forward passes made so far (each may hold several callers' texts)."""

    def submit(self, texts: Sequence[str]) -> Future:
        """A future of the float32 vectors of `texts` (one row per text), made in a pass shared with others."""
        done: Future = Future()
        self._queue.put((list(texts), done))
        self._ensure_worker()
        return done

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """The vectors of `texts`, waiting for them."""
        return self.submit(texts).result()

    def _ensure_worker(self) -> None:
        with self._lock:
            if self._worker is None or not self._worker.is_alive():
                self._worker = threading.Thread(target=self._run, name="embedsae-query-embedder", daemon=True)
                self._worker.start()

    def _run(self) -> None:
        while True:
            try:
                first = self._queue.get(timeout=self.idle_seconds)
            except queue.Empty:
                with self._lock:  # a caller that queued after the timeout starts a new worker (is_alive is false)
                    if self._queue.empty():
                        self._worker = None
                        return
                continue
            batch, n = [first], len(first[0])
            while n < self.max_batch:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                batch.append(item)
                n += len(item[0])
            self._embed_batch(batch)

    def _embed_batch(self, batch: list[tuple[list[str], Future]]) -> None:
        texts = [t for item, _ in batch for t in item]
        try:
            if self.embedder is None:
                self.embedder = self._make()
            vecs = np.asarray(self.embedder.embed(texts), np.float32)
        except BaseException as exc:  # every caller of the batch gets the error
            for _, done in batch:
                done.set_exception(exc)
            return
        self.batches += 1
        start = 0
        for item, done in batch:
            done.set_result(vecs[start : start + len(item)])
            start += len(item)
