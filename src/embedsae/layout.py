"""The workspace's on-disk layout: the name of every file and folder a stage writes, in one place.

    WS/manifest.json            package version, embedding model, counts, stages run with their settings
    WS/.manifest.lock           lock file: manifest updates are read-modify-write under it
    WS/.lock-<stage>-<sae>      lock files of running writers (a second writer of the same part is refused)
    WS/corpus.parquet           id, text and metadata columns
    WS/texts/                   texts, display titles and ids again, for reading one document by row: <name>.bin
                                (UTF-8, back to back) and <name>.offsets.npy (byte offsets), memory-mapped
    WS/embeddings/              the document vectors as float32 .npy shards, opened memory-mapped:
        shards.json             index: dim, dtype, model id, rows per shard, and each shard's file, rows, bytes, sha256
        shard-00000.npy ...     consecutive row blocks (documents x dim), in corpus order
    WS/.partial-embeddings/     an unfinished embedding run (job.json and the shards written so far; resumable)
    WS/embeddings.npy           float32 (documents x dim): the single-file store of older workspaces (still read)
    WS/saes/<name>/             one trained SAE (files below)
    WS/saes/.partial-<name>/    an unfinished training run (checkpoints; resumable)
    WS/index/                   index.json, bm25/, dense.usearch (search indexes shared by the SAEs)
    WS/map/                     cached UMAP coordinates
    WS/sweep/                   sweep.md, sweep.csv, sweep.png
"""

from __future__ import annotations

import os
from pathlib import Path

# ------------------------------------------------------------------ workspace root
MANIFEST = "manifest.json"
MANIFEST_LOCK = ".manifest.lock"
STAGE_LOCK_PREFIX = ".lock-"
CORPUS = "corpus.parquet"
TEXTS = "texts"
EMBEDDINGS = "embeddings.npy"
SHARDS = "embeddings"
SHARDS_INDEX = "shards.json"
SHARDS_PARTIAL = ".partial-embeddings"
EMBED_JOB = "job.json"
SAES = "saes"
INDEX = "index"
MAP = "map"
SWEEP = "sweep"
PARTIAL_PREFIX = ".partial-"

# ------------------------------------------------------------------ one SAE: saes/<name>/
SAE_CONFIG = "cfg.json"
SAE_WEIGHTS = "sae.safetensors"
TRAIN_CONFIG = "train_config.json"
TRAIN_LOG = "train_log.jsonl"
TRAIN_LOG_PNG = "train_log.png"
CHECKPOINT = "checkpoint.pt"
VAL_INDICES = "val_indices.npy"
METRICS = "metrics.json"
DENSITY_PNG = "density.png"
CODES = "codes.npz"
ACTIVATIONS = "activations.npz"
COOCCURRENCE = "cooccurrence.npz"
FEATURES_DB = "features.db"
FAMILIES_JSON = "families.json"
FAMILIES_HTML = "families.html"
FAMILIES_PNG = "families.png"
CONCEPT_INDEX = "concept_index.npz"
ORIGIN = "origin.json"

# ------------------------------------------------------------------ search indexes: index/
INDEX_JSON = "index.json"
BM25 = "bm25"
ANN = "dense.usearch"

# ------------------------------------------------------------------ sweep/
SWEEP_MD = "sweep.md"
SWEEP_CSV = "sweep.csv"
SWEEP_PNG = "sweep.png"


def shard_file(number: int) -> str:
    """The file name of the embedding shard with this number (0-based)."""
    return f"shard-{number:05d}.npy"


def sae_folder(root: str | os.PathLike, name: str) -> Path:
    """The folder of a trained SAE."""
    return Path(root) / SAES / name


def partial_folder(root: str | os.PathLike, name: str) -> Path:
    """The working folder of an unfinished training run."""
    return Path(root) / SAES / f"{PARTIAL_PREFIX}{name}"
