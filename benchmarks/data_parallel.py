"""One process against two (torchrun, gloo on CPU): training time and how far apart the trained weights are.

    nice -n 10 python benchmarks/data_parallel.py WS --k 8 --latents 512 --epochs 4 --batch-size 256

Each run trains the same SAE into a copy of the workspace (`embedsae train` with the given settings; two
processes under `torchrun --standalone --nproc_per_node 2`, each with half of `--cores` threads), alternated `--repeats` times; it prints the
median wall time of each (process start-up included) and the largest relative difference (Frobenius norm of
the difference over the norm) between the weights the two trained.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def train(ws: Path, name: str, processes: int, settings: list[str], cores: int) -> float:
    runner = ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(processes)] if processes > 1 else []
    cmd = [sys.executable, *runner, "-m", "embedsae", "train", str(ws), "--name", name, "--quiet", *settings]
    t = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True, env={**os.environ, "OMP_NUM_THREADS": str(max(1, cores // processes))})
    return time.perf_counter() - t


def difference(ws: Path, a: str, b: str) -> float:
    import torch
    from safetensors.torch import load_file

    wa = load_file(str(ws / "saes" / a / "sae.safetensors"))
    wb = load_file(str(ws / "saes" / b / "sae.safetensors"))
    return max(float(torch.linalg.norm(wa[k] - wb[k]) / torch.linalg.norm(wa[k]).clamp_min(1e-12)) for k in wa)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("workspace")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--cores", type=int, default=2, help="threads in all: one process gets them all, two share them")
    args, settings = ap.parse_known_args()
    with tempfile.TemporaryDirectory() as tmp:
        ws = Path(tmp) / "ws"
        shutil.copytree(args.workspace, ws, ignore=shutil.ignore_patterns("saes"))
        times: dict[int, list[float]] = {1: [], 2: []}
        for r in range(args.repeats):
            for processes in (1, 2):
                times[processes].append(train(ws, f"p{processes}-{r}", processes, settings, args.cores))
                print(f"{processes} process(es): {times[processes][-1]:.1f}s", flush=True)
        diff = max(difference(ws, f"p1-{r}", f"p2-{r}") for r in range(args.repeats))
    one, two = statistics.median(times[1]), statistics.median(times[2])
    print(f"\nmedian wall time: 1 process {one:.1f}s, 2 processes {two:.1f}s (ratio {two / one:.2f})")
    print(f"largest relative weight difference, 2 processes against 1: {diff:.1e}")


if __name__ == "__main__":
    main()
