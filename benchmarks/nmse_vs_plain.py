"""Held-out NMSE of embedsae's trainer against a plain PyTorch top-k loop: same vectors, same epochs.

    python benchmarks/nmse_vs_plain.py VECTORS.npy [--k 64 --latents 6144 --epochs 30]

The plain loop (benchmarks/train_throughput.py) runs the seed recipe as research code does: dense codes,
Adam at the seed's lr 1e-4, batch 1024, b_pre = 0. It is also run with embedsae's lr and batch size, so the
gain from the recipe (median b_pre, input noise, schedule) is seen apart from the gain from the settings.
embedsae's SAE is scored twice: with its default pursuit encoding and with the plain top-k encoder.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from embedsae.sae import SAEConfig, create_sae
from embedsae.sae.metrics import nmse_np
from embedsae.sae.trainer import TrainConfig, split_indices, train_on_array
from train_throughput import plain_loop


def plain_nmse(train: np.ndarray, val: np.ndarray, k: int, n: int, epochs: int, lr: float, batch: int) -> tuple[float, float]:
    data = torch.from_numpy(train)
    batches = []
    for epoch in range(epochs):
        perm = torch.randperm(len(data), generator=torch.Generator().manual_seed(epoch))
        batches += [data[perm[i : i + batch]] for i in range(0, len(data) - batch + 1, batch)]
    out: list = []
    seconds = plain_loop(batches, train.shape[1], n, k, lr, torch.device("cpu"), params_out=out)
    W_enc, b_lat, W_dec, b_pre = out[0]
    x = torch.from_numpy(val)
    top = ((x - b_pre) @ W_enc.T + b_lat).topk(k, dim=1)
    z = torch.zeros(len(x), n).scatter(1, top.indices, torch.relu(top.values))
    return nmse_np(val, (z @ W_dec + b_pre).numpy()), seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("vectors")
    ap.add_argument("--k", type=int, default=64)
    ap.add_argument("--latents", type=int, default=6144)
    ap.add_argument("--epochs", type=int, default=30)
    args = ap.parse_args()
    x = np.load(args.vectors).astype(np.float32)
    cfg = TrainConfig(epochs=args.epochs)
    train_idx, val_idx = split_indices(len(x), cfg.val_fraction, cfg.seed)
    print(f"{len(x)} vectors ({len(train_idx)} train, {len(val_idx)} held out), k={args.k}, latents={args.latents}, "
          f"{args.epochs} epochs")
    torch.manual_seed(0)
    t0 = time.perf_counter()
    sae, _, _ = train_on_array(create_sae(SAEConfig(d_in=x.shape[1], n_latents=args.latents, k=args.k)), x, cfg)
    ours_s = time.perf_counter() - t0
    with torch.no_grad():
        ours = nmse_np(x[val_idx], sae.reconstruct(torch.from_numpy(x[val_idx])).numpy())
        pursuit, sae.cfg.pursuit = sae.cfg.pursuit, 0  # the same SAE with the plain top-k encoder
        ours_plain = nmse_np(x[val_idx], sae.reconstruct(torch.from_numpy(x[val_idx])).numpy())
        sae.cfg.pursuit = pursuit
    rows = [("embedsae trainer (defaults)", ours, ours_s), ("embedsae trainer, plain top-k encode", ours_plain, ours_s)]
    for lr, batch in ((1e-4, 1024), (cfg.lr, cfg.batch_size)):
        v, s = plain_nmse(x[train_idx], x[val_idx], args.k, args.latents, args.epochs, lr, batch)
        rows.append((f"plain top-k loop, lr {lr:g}, batch {batch}", v, s))
    print(f"{'run':<42} {'held-out NMSE':>14} {'seconds':>9}")
    for name, v, s in rows:
        print(f"{name:<42} {v:>14.4f} {s:>9.1f}")
    best_plain = min(r[1] for r in rows[2:])
    print(f"ratio plain(best) / embedsae: {best_plain / ours:.2f} (above 1: embedsae reconstructs better); "
          f"with embedsae's plain top-k encode: {best_plain / ours_plain:.2f}")


if __name__ == "__main__":
    main()
