"""`embedsae train` as a whole process against a whole-process plain PyTorch top-k loop, same vectors and settings.

    python benchmarks/train_vs_plain.py VECTORS.npy [--rows 5000] [--k 64 --latents 6144 --epochs 10 --batch-size 1024]

The plain process imports torch and numpy, loads the vectors, trains the seed recipe with dense codes
(benchmarks/train_throughput.py's `plain_loop`: same k, latents, epochs, batch size and learning rate), prints
its NMSE and saves its weights: what a research script does. embedsae's process is the CLI command on a
workspace of the same vectors: it trains, evaluates (metrics.json, codes.npz) and writes plots. The two are
alternated, `--rounds` times each; the medians and their ratio are printed. A third, instrumented process
runs the command's steps one by one in Python to give the wall-time breakdown (import, load, train,
write, evaluate, and the interpreter's start and exit).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def plain_process(vectors: str, k: int, latents: int, epochs: int, batch_size: int, lr: float, out: str) -> None:
    """The plain loop's whole job (run in its own process)."""
    import numpy as np
    import torch

    sys.path.insert(0, str(HERE))
    from train_throughput import plain_loop

    x = torch.from_numpy(np.load(vectors).astype(np.float32))
    gen = torch.Generator().manual_seed(0)
    batches = [x[p] for _ in range(epochs) for p in torch.randperm(len(x), generator=gen).split(batch_size)]
    params: list = []
    plain_loop(batches, x.shape[1], latents, k, lr, torch.device("cpu"), params_out=params)
    W_enc, b_lat, W_dec, b_pre = params[0]
    with torch.no_grad():
        top = ((x - b_pre) @ W_enc.T + b_lat).topk(k, dim=1)
        x_hat = torch.zeros(len(x), latents).scatter(1, top.indices, top.values.relu()) @ W_dec + b_pre
        nmse = ((x_hat - x).pow(2).sum() / (x - x.mean(0)).pow(2).sum()).item()
    torch.save({"W_enc": W_enc, "b_lat": b_lat, "W_dec": W_dec, "b_pre": b_pre}, out)
    print(f"plain NMSE {nmse:.4f}")


def breakdown_process(ws: str, k: int, latents: int, epochs: int, batch_size: int) -> None:
    """The steps of `embedsae train` one by one, timed; prints a JSON line (run in its own process)."""
    t = {"start": time.perf_counter()}
    import torch  # noqa: F401

    from embedsae import pipeline
    from embedsae.workspace import Workspace

    t["import"] = time.perf_counter()
    w = Workspace.open(ws)
    _ = w.embeddings[:1]
    t["load"] = time.perf_counter()
    pipeline.train(w, k=k, latents=latents, name="bench", epochs=epochs, batch_size=batch_size, evaluate=False)
    t["train"] = time.perf_counter()
    pipeline.evaluate_sae(w, "bench")
    t["evaluate"] = time.perf_counter()
    marks = list(t.items())
    out = {name: round(v - marks[i - 1][1], 2) for i, (name, v) in enumerate(marks) if i}
    fit = Workspace.open(ws).manifest["stages"]["train:bench"]["seconds"]  # the training loop alone
    out["write"] = round(out["train"] - fit, 2)  # saving the SAE and its training plot
    out["train"] = round(fit, 2)
    print(json.dumps(out))


def timed(cmd: list[str]) -> tuple[float, str]:
    t0 = time.perf_counter()
    res = subprocess.run(cmd, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if res.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{res.stderr[-3000:]}")
    return seconds, res.stdout


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("vectors")
    ap.add_argument("--rows", type=int, default=5000, help="first N rows of the vectors (0 = all)")
    ap.add_argument("--k", type=int, default=64)
    ap.add_argument("--latents", type=int, default=6144)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--batch-size", type=int, default=1024)
    ap.add_argument("--lr", type=float, default=1e-3, help="the plain loop's learning rate (embedsae's default)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--plain-process", nargs=2, metavar=("VECTORS", "OUT"), help=argparse.SUPPRESS)
    ap.add_argument("--breakdown-process", metavar="WS", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.plain_process:
        vectors, out = args.plain_process
        return plain_process(vectors, args.k, args.latents, args.epochs, args.batch_size, args.lr, out)
    if args.breakdown_process:
        return breakdown_process(args.breakdown_process, args.k, args.latents, args.epochs, args.batch_size)

    import numpy as np
    import pandas as pd

    from embedsae import pipeline

    tmp = Path(tempfile.mkdtemp(prefix="train_vs_plain-"))
    x = np.load(args.vectors).astype(np.float32)
    x = x[: args.rows] if args.rows else x
    np.save(tmp / "vectors.npy", x)
    corpus = pd.DataFrame({"id": [str(i) for i in range(len(x))], "text": [f"row {i}" for i in range(len(x))]})
    pipeline.embed(corpus, tmp / "ws", vectors=x)
    settings = ["--k", str(args.k), "--latents", str(args.latents), "--epochs", str(args.epochs), "--batch-size", str(args.batch_size)]
    ours_cmd = [str(Path(sys.executable).with_name("embedsae")), "train", str(tmp / "ws"), *settings, "--quiet"]
    plain_cmd = [sys.executable, __file__, args.vectors, "--plain-process", str(tmp / "vectors.npy"), str(tmp / "plain.pt"), *settings, "--lr", str(args.lr)]
    parts_cmd = [sys.executable, __file__, args.vectors, "--breakdown-process", str(tmp / "ws"), *settings]
    ours, plain, parts = [], [], []
    env_note = f"{len(x)} x {x.shape[1]} vectors, k {args.k}, {args.latents} latents, {args.epochs} epochs, batch {args.batch_size}"
    print(f"{env_note}; {os.cpu_count()} CPUs; {args.rounds} alternated rounds")
    for r in range(args.rounds):
        s, _ = timed(ours_cmd)
        ours.append(s)
        s, out = timed(plain_cmd)
        plain.append(s)
        s, out_parts = timed(parts_cmd)
        parts.append(json.loads(out_parts.strip().splitlines()[-1]) | {"whole": round(s, 2)})
        print(f"round {r + 1}: embedsae train {ours[-1]:.1f} s, plain loop {plain[-1]:.1f} s ({out.strip()}), steps {parts[-1]}")
    mo, mp = statistics.median(ours), statistics.median(plain)
    print(f"median whole process: embedsae train {mo:.1f} s, plain loop {mp:.1f} s; plain / embedsae = {mp / mo:.2f}")
    med = {key: statistics.median(p[key] for p in parts) for key in parts[0]}
    med["start/exit"] = round(max(2 * med["whole"] - sum(med.values()), 0.0), 2)
    share = med["evaluate"] / med["whole"]
    print("breakdown (median, instrumented process): " + ", ".join(f"{key} {v:.1f} s" for key, v in med.items())
          + f"; evaluation {100 * share:.0f} % of the whole (its figure includes writing metrics.json, codes.npz and the density plot)")
    metrics = json.loads((tmp / "ws" / "saes" / f"topk-k{args.k}-n{args.latents}" / "metrics.json").read_text())
    print(f"embedsae held-out NMSE {metrics['nmse']:.4f} (sample: {metrics.get('sample')})")


if __name__ == "__main__":
    main()
