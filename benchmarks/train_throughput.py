"""Training throughput: embedsae's trainer against a plain PyTorch top-k training loop, same run, same data.

Both do the seed recipe per step (top-k encode, decode, NMSE + aux-k loss on dead latents, Adam, grad clip,
decoder gradient projection and renormalisation). The plain loop forms dense codes and decodes with a dense
matmul, as most research code does; ours gathers only the k active rows in training and in backward.

    python benchmarks/train_throughput.py                         # CPU, d=384, 3,072 latents, k=32
    python benchmarks/train_throughput.py --device cuda --d 1536 --latents 9216 --k 64 --steps 300  # the seed's setting

On CUDA it also times a bf16 plain loop and our partial paths (eager steps with dense decode,
CUDA graphs with PyTorch's update) beside the default (CUDA graphs, dense bf16 decode, fused Triton
update). "vectors/s" is a whole fresh run (warm-up steps and graph capture included); "steady" is a
second pass over the same batches with the same trainer.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F


def plain_loop(batches: list[torch.Tensor], d: int, n: int, k: int, lr: float, device: torch.device,
               params_out: list | None = None, bf16: bool = False) -> float:
    """A straightforward dense top-k SAE training loop; returns seconds for all batches.

    With `params_out`, the trained (W_enc, b_lat, W_dec, b_pre) are appended to it. With `bf16`, the
    forward pass runs under bf16 autocast (CUDA), as ours does there.
    """
    torch.manual_seed(0)
    w = torch.randn(n, d, device=device)
    w = w / w.norm(dim=1, keepdim=True)
    W_dec = torch.nn.Parameter(w.clone())
    W_enc = torch.nn.Parameter(w.clone())
    b_lat = torch.nn.Parameter(torch.zeros(n, device=device))
    b_pre = torch.nn.Parameter(torch.zeros(d, device=device))
    params = [W_enc, b_lat, W_dec, b_pre]
    opt = torch.optim.Adam(params, lr=lr)
    since = torch.zeros(n, device=device)
    sync(device)
    t0 = time.perf_counter()
    for x in batches:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            pre = (x - b_pre) @ W_enc.T + b_lat
            top = pre.topk(k, dim=1)
            z = torch.zeros_like(pre).scatter(1, top.indices, F.relu(top.values))
            x_hat = z @ W_dec + b_pre
            loss = (x_hat - x).pow(2).sum() / (x - x.mean(0)).pow(2).sum()
            dead = since > 50
            aux_top = pre.masked_fill(~dead, float("-inf")).topk(2 * k, dim=1)
            z_aux = torch.zeros_like(pre).scatter(1, aux_top.indices, F.relu(aux_top.values).nan_to_num(0.0) * dead[aux_top.indices])
            e = (x - x_hat).detach()
            aux = ((z_aux @ W_dec - e).pow(2).sum() / (e - e.mean(0)).pow(2).sum()).nan_to_num(0.0)
        (loss + aux / 32).backward()
        with torch.no_grad():
            W_dec.grad -= (W_dec.grad * W_dec).sum(1, keepdim=True) * W_dec
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        with torch.no_grad():
            W_dec /= W_dec.norm(dim=1, keepdim=True)
            fired = (z > 0).any(0)
            since = torch.where(fired, 0, since + 1)
    sync(device)
    if params_out is not None:
        params_out.append([p.detach() for p in params])
    return time.perf_counter() - t0


def embedsae_loop(batches: list[torch.Tensor], d: int, n: int, k: int, lr: float, device: torch.device,
                  graphs: bool = True, fused: bool = True) -> tuple[float, float]:
    """embedsae's Trainer on the same batches, twice over; returns seconds for the first and the second pass.

    The first pass includes everything a real run pays once (on CUDA: the warm-up steps and the graph
    capture); the second is the steady state.
    """
    from embedsae.sae import SAEConfig, create_sae
    from embedsae.sae.trainer import TrainConfig, Trainer

    torch.manual_seed(0)
    sae = create_sae(SAEConfig(d_in=d, n_latents=n, k=k))
    cfg = TrainConfig(lr=lr, device=str(device), log_every=10, warmup_steps=0, decay_fraction=0.0, cuda_graphs=graphs,
                      fused_update=fused)
    trainer = Trainer(sae, cfg, total_steps=2 * len(batches), dead_after_steps=50)
    times = []
    for _ in range(2):
        sync(device)
        t0 = time.perf_counter()
        trainer.fit(batches, skip_done=False)
        sync(device)
        times.append(time.perf_counter() - t0)
    return times[0], times[1]


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--d", type=int, default=384)
    ap.add_argument("--latents", type=int, default=3072)
    ap.add_argument("--k", type=int, default=32)
    ap.add_argument("--batch", type=int, default=1024)
    ap.add_argument("--steps", type=int, default=20, help="timed steps per repeat")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--lr", type=float, default=1e-4)
    args = ap.parse_args()
    device = torch.device(args.device)
    shape = (args.d, args.latents, args.k, args.lr)
    g = torch.Generator().manual_seed(0)
    data = torch.randn(args.steps * args.batch, args.d, generator=g)
    data = (data / data.norm(dim=1, keepdim=True)).to(device)
    batches = list(data.split(args.batch))
    print(f"device={device} threads={torch.get_num_threads()} d={args.d} latents={args.latents} k={args.k} "
          f"batch={args.batch} steps={args.steps} repeats={args.repeats}")
    if device.type == "cuda":
        print(f"gpu={torch.cuda.get_device_name()} torch={torch.__version__}")
        variants = {
            "plain PyTorch top-k loop (fp32)": lambda: plain_loop(batches, *shape, device),
            "plain PyTorch top-k loop (bf16 autocast)": lambda: plain_loop(batches, *shape, device, bf16=True),
            "embedsae, eager, dense decode, torch update": lambda: embedsae_loop(batches, *shape, device, graphs=False, fused=False),
            "embedsae, graphs, dense decode, torch update": lambda: embedsae_loop(batches, *shape, device, fused=False),
            "embedsae default (graphs, dense, fused update)": lambda: embedsae_loop(batches, *shape, device),
        }
    else:
        variants = {
            "plain PyTorch top-k loop": lambda: plain_loop(batches, *shape, device),
            "embedsae trainer": lambda: embedsae_loop(batches, *shape, device),
        }
    # warm-up (allocator, kernels), then alternate the variants to share any drift fairly
    for fn in variants.values():
        fn()
    rates: dict[str, list[float]] = {name: [] for name in variants}
    steady: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(args.repeats):
        for name, fn in variants.items():
            t = fn()
            first, second = t if isinstance(t, tuple) else (t, t)
            rates[name].append(len(data) / first)
            steady[name].append(len(data) / second)
    base = statistics.median(rates[next(iter(variants))])
    print(f"{'variant':48s} {'vectors/s':>12s} {'steady':>12s} {'vs plain':>9s}   (medians of {args.repeats})")
    for name in variants:
        m = statistics.median(rates[name])
        print(f"{name:48s} {m:12,.0f} {statistics.median(steady[name]):12,.0f} {m / base:8.2f}x")


if __name__ == "__main__":
    main()
