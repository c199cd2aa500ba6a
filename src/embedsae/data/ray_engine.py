"""The ray engine of the embedding stage: a Ray Data job whose actor pool holds one model per actor.

The driver (the process running `embed`) hands the texts of the missing shards to Ray as blocks, the actors
embed them batch by batch, and the driver writes each shard as soon as all its rows are back, so the
workspace gets exactly the shards the local engine writes, and a killed job resumes the same way. Without
`ray_address` a local Ray instance is started (and stopped afterwards); with it the job runs on that
cluster, whose nodes need embedsae and the model installed (the packaged all-MiniLM-L6-v2, or a model path
that exists on every node).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import require
from ..progress import Tracker

if TYPE_CHECKING:
    from .embedders import Embedder
    from .embedding import EmbedSettings

logger = logging.getLogger(__name__)

BLOCK_ROWS = 1024
"""Texts per Ray block and per actor batch (smaller when the corpus would give each actor fewer than 4 blocks)."""


class EmbedActor:
    """One Ray actor: loads the model once, then embeds the batches it is given."""

    def __init__(self, model: str, options: dict[str, Any]) -> None:
        from .embedders import load_embedder

        self.embedder = load_embedder(model, **options)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        vectors = self.embedder.embed([str(t) for t in batch["text"]])
        return {"row": np.asarray(batch["row"], np.int64), "vector": np.asarray(vectors, np.float32)}


def embed_with_ray(texts: Sequence[str], bounds: list[tuple[int, int]], todo: list[int], emb: Embedder,
                   settings: EmbedSettings, write: Callable[[int, np.ndarray], None], tracker: Tracker,
                   options: dict[str, Any]) -> None:
    """Embed the shards numbered `todo` on Ray and `write` each one as soon as all its rows are back."""
    ray = require("ray", "The ray embedding engine", extra="ray")
    require("ray.data", "The ray embedding engine", extra="ray")
    import pandas as pd

    started = False
    if not ray.is_initialized():
        if settings.ray_address:
            logger.info("connecting to the Ray cluster at %s", settings.ray_address)
            ray.init(address=settings.ray_address, logging_level=logging.WARNING, log_to_driver=False)
        else:
            cpus = max(os.cpu_count() or 1, settings.ray_actors + 1)
            logger.info("starting a local Ray instance (%d CPUs)", cpus)
            ray.init(num_cpus=cpus, include_dashboard=False, logging_level=logging.WARNING, log_to_driver=False)
        started = True
    try:
        total = sum(bounds[i][1] - bounds[i][0] for i in todo)
        block = max(1, min(BLOCK_ROWS, -(-total // (4 * settings.ray_actors))))
        frames = [pd.DataFrame({"row": np.arange(lo, min(lo + block, bounds[i][1]), dtype=np.int64),
                                "text": list(texts[lo : min(lo + block, bounds[i][1])])})
                  for i in todo for lo in range(bounds[i][0], bounds[i][1], block)]
        context = ray.data.DataContext.get_current()
        context.execution_options.preserve_order = True
        context.enable_progress_bars = False  # progress goes to the callback; Ray's own bars would print
        ds = ray.data.from_pandas(frames).map_batches(
            EmbedActor, fn_constructor_kwargs={"model": emb.model_id, "options": options}, batch_size=block,
            batch_format="numpy", concurrency=settings.ray_actors, num_gpus=settings.ray_gpus or None)
        logger.info("embedding %d texts of %d shards on Ray with %d actors", total, len(todo), settings.ray_actors)
        starts = np.array([b[0] for b in bounds], dtype=np.int64)
        pending: dict[int, tuple[np.ndarray, int]] = {}
        for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):
            rows, vectors = np.asarray(batch["row"], np.int64), np.asarray(batch["vector"], np.float32)
            shard_of = np.searchsorted(starts, rows, side="right") - 1
            for number in np.unique(shard_of):
                number = int(number)
                lo, hi = bounds[number]
                buf, filled = pending.get(number) or (np.zeros((hi - lo, emb.dim), np.float32), 0)
                sel = shard_of == number
                buf[rows[sel] - lo] = vectors[sel]
                filled += int(sel.sum())
                if filled == hi - lo:
                    write(number, buf)
                    pending.pop(number, None)
                else:
                    pending[number] = (buf, filled)
            tracker.update(len(rows))
        if pending:
            raise RuntimeError(f"the Ray job returned too few rows for shards {sorted(pending)}")
    finally:
        if started:
            ray.shutdown()
