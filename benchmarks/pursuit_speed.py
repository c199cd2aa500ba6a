"""Pursuit encoding speed: the first pursuit (re-solving, kept in tests/pursuit_reference.py), the batched Cholesky
pursuit and the plain top-k encoder of the same SAE, in one run, with the codes' agreement and held-out NMSE.

    python benchmarks/pursuit_speed.py VECTORS.npy [--settings 64:6144 32:3072] [--epochs 10] [--rows 2000]

For each k:latents setting an SAE is trained on 95 % of the vectors (embedsae's trainer, `--epochs`), then
`--rows` held-out-first vectors are encoded by the three encoders, alternated `--rounds` times (medians).
Agreement: share of vectors whose new code has the same latents as the first pursuit's, and the largest
value difference on those. NMSE is on the held-out vectors.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.pursuit_reference import agreement, reference_pursuit  # noqa: E402


def nmse(sae, x: torch.Tensor, code) -> float:
    x_hat = sae.decode_sparse(code[0], code[1])
    return ((x_hat - x).pow(2).sum() / (x - x.mean(0)).pow(2).sum()).item()


@torch.no_grad()
def bench(sae, x: torch.Tensor, rounds: int) -> dict:
    k, m = sae.cfg.k, sae.cfg.pursuit * sae.cfg.k

    def plain():
        top = sae.pre_activations(x).topk(k, dim=1)
        return top.indices, F.relu(top.values)

    def old():
        cand = sae.pre_activations(x).topk(m, dim=1, sorted=False).indices
        return reference_pursuit(sae.W_dec, sae.b_pre, x, cand, k)

    def new():
        return tuple(sae.encode_sparse(x))

    sae._gram_cache = None
    t0 = time.perf_counter()
    sae.decoder_gram()
    gram_s = time.perf_counter() - t0
    times: dict[str, list[float]] = {"old pursuit": [], "new pursuit": [], "plain encoder": []}
    codes = {}
    for _ in range(rounds):
        for name, f in (("plain encoder", plain), ("new pursuit", new), ("old pursuit", old)):
            t0 = time.perf_counter()
            codes[name] = f()
            times[name].append(time.perf_counter() - t0)
    rate = {name: len(x) / statistics.median(t) for name, t in times.items()}
    same, diff = agreement(codes["new pursuit"], codes["old pursuit"])
    return {"rate": rate, "same": same, "diff": diff, "gram_s": gram_s,
            "nmse": {name: nmse(sae, x, c) for name, c in codes.items()}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("vectors")
    ap.add_argument("--settings", nargs="+", default=["64:6144", "32:3072"], help="k:latents pairs")
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--rows", type=int, default=2000, help="vectors encoded per timing (held-out ones first)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, help="torch threads for all three encoders (default: torch's)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    from embedsae.sae import SAEConfig, create_sae
    from embedsae.sae.trainer import TrainConfig, train_on_array

    x_all = np.load(args.vectors).astype(np.float32)
    print(f"{len(x_all)} x {x_all.shape[1]} vectors from {args.vectors}; {torch.get_num_threads()} torch threads")
    for setting in args.settings:
        k, n = (int(v) for v in setting.split(":"))
        torch.manual_seed(0)
        sae = create_sae(SAEConfig(d_in=x_all.shape[1], n_latents=n, k=k))
        sae, _, val = train_on_array(sae, x_all, TrainConfig(epochs=args.epochs, batch_size=1024))
        sae = sae.cpu().eval()
        rest = np.setdiff1d(np.arange(len(x_all)), val)
        rows = np.concatenate([val, rest])[: args.rows]
        r = bench(sae, torch.from_numpy(x_all[rows]), args.rounds)
        held = torch.from_numpy(x_all[val])
        with torch.no_grad():
            pursuit_nmse = nmse(sae, held, tuple(sae.encode_sparse(held)))
            top = sae.pre_activations(held).topk(k, dim=1)
            plain_nmse = nmse(sae, held, (top.indices, F.relu(top.values)))
        rate = r["rate"]
        print(f"k {k}, {n} latents ({len(rows)} vectors, medians of {args.rounds}): "
              + ", ".join(f"{name} {v:,.0f}/s" for name, v in rate.items()))
        print(f"  plain / old pursuit {rate['plain encoder'] / rate['old pursuit']:.1f}x, plain / new pursuit "
              f"{rate['plain encoder'] / rate['new pursuit']:.1f}x, new / old {rate['new pursuit'] / rate['old pursuit']:.1f}x; "
              f"decoder Gram {r['gram_s']:.2f} s once")
        print(f"  agreement new vs old: same latents on {100 * r['same']:.2f} % of vectors, max value difference {r['diff']:.1e}")
        print(f"  held-out NMSE ({len(val)} vectors): pursuit {pursuit_nmse:.4f}, plain encoder {plain_nmse:.4f}")


if __name__ == "__main__":
    main()
