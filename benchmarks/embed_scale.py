"""Embedding throughput of the three ways to run the embedding stage, and the cost of resuming a killed run.

    python benchmarks/embed_scale.py [--texts 256] [--rounds 2] [--corpus ../shared/data/arxiv/abstracts.jsonl]

Each engine embeds the same texts into a fresh workspace through `pipeline.embed` (torch backend), the whole
stage timed: loading the model, starting the pool's processes or the Ray instance and its actors, embedding,
writing shards. Engines run in turn, round after round, and the medians are compared with the plain
one-process run of the same rounds:

    plain   one process
    pool2   sentence-transformers' multi-process pool on cpu,cpu (EmbedSettings.devices)
    ray2    a local Ray instance, a Ray Data job with 2 actors (EmbedSettings.engine = "ray")

Resume: a plain run cut into 8 shards, then the same run with the first half of its shards already in the
partial folder (as a killed run leaves them), and with all of them (only the checks and the move into place).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from embedsae import layout, pipeline
from embedsae._io import write_json
from embedsae.data.embedding import EmbedSettings
from embedsae.data.readers import read_corpus
from embedsae.workspace import Workspace

ROOT = Path(__file__).resolve().parents[1]


def timed(table, out: Path, settings: EmbedSettings) -> tuple[float, Workspace]:
    t0 = time.perf_counter()
    ws = pipeline.embed(table, out, backend="torch", settings=settings)
    return time.perf_counter() - t0, ws


def seed_partial(done: Workspace, out: Path, shards: int) -> None:
    """Put the first `shards` shards of a finished run into `out`'s partial folder, as a killed run leaves them."""
    index = done.vectors.index
    partial = out / layout.SHARDS_PARTIAL
    partial.mkdir(parents=True)
    write_json(partial / layout.EMBED_JOB, {
        "model": done.model_id, "normalized": True, "corpus_fingerprint": done.manifest["corpus_fingerprint"],
        "dim": done.dim, "rows": done.n_documents, "shard_rows": index["shard_rows"]})
    for entry in index["shards"][:shards]:
        shutil.copy2(done.path / layout.SHARDS / entry["file"], partial / entry["file"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", default=str(ROOT.parent / "shared" / "data" / "arxiv" / "abstracts.jsonl"))
    ap.add_argument("--texts", type=int, default=256)
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    table = read_corpus(args.corpus, limit=args.texts)
    engines = {
        "plain": EmbedSettings(),
        "pool2": EmbedSettings(devices=["cpu", "cpu"]),
        "ray2": EmbedSettings(engine="ray", ray_actors=2),
    }
    shard_rows = -(-len(table) // 8)
    times: dict[str, list[float]] = {k: [] for k in [*engines, "full8", "resume_half", "resume_all"]}
    vectors: dict[str, np.ndarray] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            for name, settings in engines.items():
                seconds, ws = timed(table, Path(tmp) / f"{name}-{r}", settings)
                times[name].append(seconds)
                vectors[name] = np.asarray(ws.embeddings)
                print(f"round {r + 1} {name:6s} {seconds:7.1f} s", flush=True)
            seconds, full = timed(table, Path(tmp) / f"full-{r}", EmbedSettings(shard_rows=shard_rows))
            times["full8"].append(seconds)
            for label, count in (("resume_half", 4), ("resume_all", 8)):
                out = Path(tmp) / f"{label}-{r}"
                seed_partial(full, out, count)
                seconds, _ = timed(table, out, EmbedSettings(shard_rows=shard_rows))
                times[label].append(seconds)
            print(f"round {r + 1} resume  full {times['full8'][-1]:.1f} s, half {times['resume_half'][-1]:.1f} s, "
                  f"all {times['resume_all'][-1]:.1f} s", flush=True)
    med = {k: statistics.median(v) for k, v in times.items()}
    n = len(table)
    print(f"\n{n} texts, torch backend, medians of {args.rounds} alternated rounds (whole stage, start-up included)")
    print(f"{'engine':8s} {'seconds':>8s} {'texts/s':>8s} {'vs plain':>9s} {'min cosine to plain':>20s}")
    for name in engines:
        a, b = vectors[name], vectors["plain"]
        cos = float(((a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)).min())
        print(f"{name:8s} {med[name]:8.1f} {n / med[name]:8.1f} {med['plain'] / med[name]:8.2f}x {cos:20.7f}")
    print(f"\nresume ({shard_rows} rows per shard, 8 shards): uninterrupted {med['full8']:.1f} s; with 4 of 8 shards "
          f"present {med['resume_half']:.1f} s ({med['resume_half'] / med['full8']:.2f}x); with all 8 present "
          f"{med['resume_all']:.1f} s ({med['resume_all'] / med['full8']:.2f}x: loading the model, checking and "
          "moving the shards)")


if __name__ == "__main__":
    main()
