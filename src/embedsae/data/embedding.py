"""The embedding stage at scale: texts embedded shard by shard into the workspace's store, resumable, on one
process, several devices of one machine (sentence-transformers' multi-process pool) or a Ray cluster.

Each shard is embedded and written (temporary name, then rename) before the next one starts, so a killed run
loses at most one shard's work. A run of the same job (same model, normalisation, corpus and shard size)
resumes on its own at the first missing shard and logs how many shards it kept; anything else left in the
partial folder is discarded, and the log says so too.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from ..errors import InputError
from ..progress import ProgressCallback, ProgressEvent, Tracker
from ..settings import Settings, check
from .embedders import Embedder, validate_vectors
from .shards import SHARD_ROWS, ShardedVectors, ShardJob

logger = logging.getLogger(__name__)

POOL_CHUNK = 2048
"""Texts handed to the multi-process pool at a time (each chunk is reported to the progress callback)."""


@dataclass
class EmbedSettings(Settings):
    """How the embedding stage stores its vectors and where it runs."""

    shard_rows: int = SHARD_ROWS
    """Vectors per shard file of the workspace's embedding store; a killed run loses at most one shard's work"""
    devices: list[str] | None = None
    """Devices to embed on at once, one process each (sentence-transformers' multi-process pool), e.g. cuda:0,cuda:1
    or cpu,cpu; default one process on the model's device"""
    engine: Literal["local", "ray"] = "local"
    """Where embedding runs: local (this machine), or ray (a Ray Data job, one model per actor, on a local or an
    existing Ray cluster; needs embedsae[ray])"""
    ray_address: str | None = None
    """Address of an existing Ray cluster for the ray engine (e.g. auto, or ray://head:10001); default: start a
    local one"""
    ray_actors: int = 2
    """Embedding actors of the ray engine, each holding one copy of the model"""
    ray_gpus: float = 0.0
    """GPUs per actor of the ray engine (1 on a GPU cluster; 0 embeds on CPUs)"""

    def validate(self) -> None:
        if self.devices is not None:
            if isinstance(self.devices, str):
                self.devices = [self.devices]
            self.devices = [d.strip() for item in self.devices for d in str(item).split(",") if d.strip()]
        super().validate()
        check(self.shard_rows >= 1, f"setting 'shard_rows' must be at least 1, got {self.shard_rows}")
        check(self.devices is None or len(self.devices) >= 1, "setting 'devices' names no device")
        check(self.ray_actors >= 1, f"setting 'ray_actors' must be at least 1, got {self.ray_actors}")
        check(self.ray_gpus >= 0, f"setting 'ray_gpus' must be 0 or positive, got {self.ray_gpus}")
        check(not (self.devices and self.engine == "ray"),
              "setting 'devices' places processes on this machine's devices and does not apply to the ray engine; "
              "set `ray_actors` and `ray_gpus` instead")


def embed_to_store(
    workspace: str | os.PathLike,
    texts: Sequence[str],
    emb: Embedder,
    job: dict[str, Any],
    settings: EmbedSettings,
    *,
    ids: Sequence[str] | None = None,
    model_options: dict[str, Any] | None = None,
    progress: ProgressCallback | None = None,
) -> ShardedVectors:
    """Embed `texts` into shards in the workspace's partial folder, skipping the shards an equal earlier run wrote.

    `job` names what is embedded (model, normalisation, corpus fingerprint); the rows, dimension and shard size
    are added here. `model_options` are the embedder's `load_embedder` options, which the ray engine's actors
    load the model with. Returns the finished store, still in the partial folder (`shards.install` moves it)."""
    writer = ShardJob(workspace, {**job, "dim": int(emb.dim), "rows": len(texts), "shard_rows": settings.shard_rows})
    todo = writer.missing()
    kept = sum(writer.bounds[i][1] - writer.bounds[i][0] for i in range(len(writer.bounds)) if i not in todo)
    tracker = Tracker(progress, "embed", len(texts), unit="text", initial=kept)

    def write(number: int, vectors: np.ndarray) -> None:
        start, stop = writer.bounds[number]
        vectors = validate_vectors(vectors, None if ids is None else ids[start:stop], expected_rows=stop - start,
                                   expected_dim=emb.dim, source=f"the embeddings of rows {start}-{stop}")
        writer.write(number, vectors)

    if todo and settings.engine == "ray":
        from .ray_engine import embed_with_ray

        embed_with_ray(texts, writer.bounds, todo, emb, settings, write, tracker, model_options or {})
    elif todo:
        _embed_local(texts, writer.bounds, todo, emb, settings, write, tracker)
    tracker.close()
    return writer.finish(emb.dim, emb.model_id)


def _embed_local(texts: Sequence[str], bounds: list[tuple[int, int]], todo: list[int], emb: Embedder,
                 settings: EmbedSettings, write: Any, tracker: Tracker) -> None:
    """Embed the missing shards in this process, or in a multi-process pool over `settings.devices`."""
    pool = None
    if settings.devices:
        start_pool = getattr(emb, "start_pool", None)
        if start_pool is None:
            raise InputError(f"setting 'devices' needs a sentence-transformers model; '{emb.model_id}' embeds elsewhere")
        pool = start_pool(settings.devices)
    try:
        for number in todo:
            start, stop = bounds[number]
            base = tracker.done
            chunk = list(texts[start:stop])
            if pool is None:
                vectors = emb.embed(chunk, progress=_within(tracker, base, stop - start))
            else:
                parts = []
                for lo in range(0, len(chunk), POOL_CHUNK):
                    parts.append(emb.embed_pool(chunk[lo : lo + POOL_CHUNK], pool))  # type: ignore[attr-defined]
                    tracker.update(min(POOL_CHUNK, len(chunk) - lo))
                vectors = np.concatenate(parts) if parts else np.zeros((0, emb.dim), np.float32)
            write(number, vectors)
            tracker.update(base + (stop - start) - tracker.done)
    finally:
        if pool is not None:
            emb.stop_pool(pool)  # type: ignore[attr-defined]


def _within(tracker: Tracker, base: int, size: int) -> ProgressCallback:
    """A callback that reports an embedder's progress through one shard as progress through the whole corpus."""

    def forward(event: ProgressEvent) -> None:
        if event.total:
            tracker.update(base + int(size * min(event.done / event.total, 1.0)) - tracker.done)

    return forward
