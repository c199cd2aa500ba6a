"""Peak memory and speed of SAE training as the corpus grows: streamed from shards against in memory.

Writes clustered synthetic 384-d float32 vectors (1,000 unit centres plus noise, not uniform noise) for each
size as one memory-mapped .npy read in shards of 262,144 rows, then trains a top-k SAE (k 32, 3,072 latents)
for a fixed number of steps in a fresh child process per run (reading with positioned reads, see
`FileShards`), which reports its peak RSS (VmHWM), its RSS split into anonymous and file-backed pages at the end, and vectors/s of the
fitting loop after its first WARM_STEPS steps (so the in-memory copy is not counted against that path). The shards are deleted afterwards.

    nice -n 10 python benchmarks/scale_memory.py --sizes 1000000 4000000 --steps 150

Targets (issue 14): streamed peak RSS at the largest size within 10 % of the smallest, and streamed
vectors/s at least 90 % of the in-memory path at the smallest size. The machine may be shared: the ratio
is taken from runs alternated in the same invocation (median of `--repeats`).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

DIM = 384
SHARD_ROWS = 262_144
WARM_STEPS = 10
"""Steps (and, in memory, the copy of the training vectors) left out of the vectors/s figure."""


def generate(path: Path, n: int, seed: int = 0, centres: int = 1000) -> None:
    """n clustered unit vectors written chunk by chunk into a .npy file."""
    rng = np.random.default_rng(seed)
    c = rng.normal(size=(centres, DIM)).astype(np.float32)
    c /= np.linalg.norm(c, axis=1, keepdims=True)
    out = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(n, DIM))
    for start in range(0, n, SHARD_ROWS):
        m = min(SHARD_ROWS, n - start)
        x = c[rng.integers(0, centres, m)] + rng.standard_normal((m, DIM), dtype=np.float32) * (0.6 / DIM**0.5)
        out[start : start + m] = x / np.linalg.norm(x, axis=1, keepdims=True)
    out.flush()
    del out


class FileShards:
    """A .npy file read as shards of SHARD_ROWS rows with positioned reads (no memory map).

    A memory map would count every page it has read in the process's RSS (file-backed, reclaimable, but
    growing with the corpus as the kernel reads ahead); positioned reads make RSS the memory the process owns.
    """

    def __init__(self, path: str) -> None:
        with open(path, "rb") as f:
            major, _ = np.lib.format.read_magic(f)
            read_header = np.lib.format.read_array_header_1_0 if major == 1 else np.lib.format.read_array_header_2_0
            shape, _, _ = read_header(f)
            self.offset = f.tell()
        self.fd = os.open(path, os.O_RDONLY)
        self.shape = (int(shape[0]), int(shape[1]))
        self.row_bytes = self.shape[1] * 4

    def shard_bounds(self) -> list[tuple[int, int]]:
        n = self.shape[0]
        return [(s, min(s + SHARD_ROWS, n)) for s in range(0, n, SHARD_ROWS)]

    def read(self, start: int, stop: int) -> np.ndarray:
        data = os.pread(self.fd, (stop - start) * self.row_bytes, self.offset + start * self.row_bytes)
        return np.frombuffer(data, dtype=np.float32).reshape(stop - start, self.shape[1]).copy()

    def take(self, rows: np.ndarray) -> np.ndarray:
        out = np.empty((len(rows), self.shape[1]), np.float32)
        for i, r in enumerate(np.asarray(rows, dtype=np.int64)):
            out[i] = np.frombuffer(os.pread(self.fd, self.row_bytes, self.offset + int(r) * self.row_bytes), np.float32)
        return out


def child(path: str, mode: str, steps: int, batch: int) -> None:
    """Train in this process and print one JSON line of figures."""
    import resource

    import torch

    from embedsae.sae import SAEConfig, create_sae
    from embedsae.sae.trainer import TrainConfig, fit_prepared, prepare_training

    torch.manual_seed(0)
    source = FileShards(path)
    cfg = TrainConfig(batch_size=batch, epochs=1, log_every=WARM_STEPS, val_every=10**9, device="cpu")
    marks: dict[int, float] = {}

    def clock(event) -> None:  # the time at each log step: the rate is measured after the first WARM_STEPS
        marks[event.done] = time.perf_counter()

    sae = create_sae(SAEConfig(d_in=DIM, k=32, n_latents=3072))
    t0 = time.perf_counter()
    run = prepare_training(sae, source, cfg, in_memory=mode == "memory", progress=clock)
    t1 = time.perf_counter()
    trainer = fit_prepared(run, stop_after=steps)
    t2 = time.perf_counter()
    status = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines() if ":" in line)
    print(json.dumps({
        "rows": source.shape[0], "mode": mode, "steps": trainer.step, "prepare_s": round(t1 - t0, 2),
        "fit_s": round(t2 - t1, 2),
        "vectors_per_s": round((trainer.step - WARM_STEPS) * run.batch_size / (marks[trainer.step] - marks[WARM_STEPS])),
        # VmHWM is this process's own high-water mark; getrusage's ru_maxrss also carries the high-water mark
        # of the parent it was forked from across exec (the parent wrote the vectors), so it is only reported
        "peak_rss_mb": round(int(status["VmHWM"].split()[0]) / 1024),
        "ru_maxrss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "rss_anon_mb": round(int(status["RssAnon"].split()[0]) / 1024),
        "rss_file_mb": round(int(status["RssFile"].split()[0]) / 1024),
        "nmse": round(trainer.log[-1]["nmse"], 4),
    }))


def measure(path: Path, mode: str, steps: int, batch: int) -> dict:
    cmd = [sys.executable, __file__, "--child", str(path), "--mode", mode, "--steps", str(steps), "--batch", str(batch)]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"the {mode} run on {path.name} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[1_000_000, 4_000_000])
    ap.add_argument("--steps", type=int, default=150)
    ap.add_argument("--batch", type=int, default=1024)
    ap.add_argument("--repeats", type=int, default=2, help="alternated stream / in-memory pairs at the smallest size")
    ap.add_argument("--dir", help="where the shards go (default: a temporary folder, deleted afterwards)")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--mode", default="stream", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return child(args.child, args.mode, args.steps, args.batch)

    folder = Path(args.dir or tempfile.mkdtemp(prefix="scale-memory-"))
    folder.mkdir(parents=True, exist_ok=True)
    need = max(args.sizes) * DIM * 4
    free = shutil.disk_usage(folder).free
    if need > 0.8 * free:
        sys.exit(f"{need / 1e9:.1f} GB of vectors do not fit in the {free / 1e9:.1f} GB free under {folder}")
    rows = []
    try:
        small = min(args.sizes)
        for n in sorted(args.sizes):
            path = folder / f"vectors-{n}.npy"
            t = time.perf_counter()
            generate(path, n)
            print(f"wrote {n:,} vectors ({path.stat().st_size / 1e9:.2f} GB) in {time.perf_counter() - t:.0f}s", flush=True)
            pairs = args.repeats if n == small else 1
            for _ in range(pairs):
                for mode in (("stream", "memory") if n == small else ("stream",)):
                    rows.append(measure(path, mode, args.steps, args.batch))
                    print(json.dumps(rows[-1]), flush=True)
            if n != max(args.sizes):
                path.unlink()
    finally:
        shutil.rmtree(folder, ignore_errors=True)

    def median(n: int, mode: str, key: str) -> float:
        return float(np.median([r[key] for r in rows if r["rows"] == n and r["mode"] == mode]))

    small, large = min(args.sizes), max(args.sizes)
    print("\n| rows | path | peak RSS MB | vectors/s |\n| --- | --- | --- | --- |")
    for n in sorted(args.sizes):
        for mode in ("stream", "memory"):
            if any(r["rows"] == n and r["mode"] == mode for r in rows):
                print(f"| {n:,} | {mode} | {median(n, mode, 'peak_rss_mb'):.0f} | {median(n, mode, 'vectors_per_s'):,.0f} |")
    growth = median(large, "stream", "peak_rss_mb") / median(small, "stream", "peak_rss_mb") - 1
    ratio = median(small, "stream", "vectors_per_s") / median(small, "memory", "vectors_per_s")
    print(f"\nstreamed peak RSS, {large:,} vs {small:,} rows: {growth:+.1%} (target within 10 %)")
    print(f"streamed / in-memory vectors/s at {small:,} rows: {ratio:.2f} (target >= 0.90)")


if __name__ == "__main__":
    main()
