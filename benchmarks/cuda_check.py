"""Checks the CUDA training path against the CPU reference, then times it. Needs a CUDA GPU.

    python benchmarks/cuda_check.py [--vectors arxiv.npy]

1. gradients: one training step's loss and gradients on CUDA (fp32, dense decode)
   against the CPU sparse kernel, for top-k (with and without dead latents), BatchTopK and ReLU;
2. fused update: the Triton update (projection, clipping, Adam, renormalisation) against PyTorch's;
   graphs: training with CUDA-graph replay against eager steps (same seed, bf16), with the aux loss on;
3. schedule: the learning rate a graphed step uses follows warm-up and decay;
4. resume: a run stopped half-way and resumed ends with the metrics of an uninterrupted one;
5. with --vectors: the default k=32 / 3,072-latent training on real vectors (held-out NMSE and time).
Prints one line per check and exits non-zero when any check fails.
"""

from __future__ import annotations

import argparse
import copy
import sys
import tempfile
import time

import numpy as np
import torch

from embedsae.sae import SAEConfig, create_sae
from embedsae.sae.trainer import TrainConfig, Trainer, train_on_array, validation_nmse

FAILED: list[str] = []


def check(name: str, ok: bool, detail: str) -> None:
    print(f"{'PASS' if ok else 'FAIL'}  {name}: {detail}", flush=True)
    if not ok:
        FAILED.append(name)


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.detach().double().cpu(), b.detach().double().cpu()
    return float((a - b).norm() / b.norm().clamp_min(1e-30))


def step_grads(arch: str, device: str, with_dead: bool) -> tuple[float, dict[str, torch.Tensor]]:
    torch.manual_seed(1)
    d, n, k, b = 96, 768, 16, 256
    sae = create_sae(SAEConfig(d_in=d, n_latents=n, k=k, architecture=arch, multik=64 if arch == "topk" else None))
    x = torch.randn(b, d)
    sae.init_from_data(x)
    dead = torch.zeros(n, dtype=torch.bool)
    dead[::3] = True
    sae, x, dead = sae.to(device), x.to(device), dead.to(device)
    out = sae.training_forward(x, dead if with_dead else None)
    out.loss.backward()
    return float(out.loss.detach()), {name: p.grad.detach().cpu() for name, p in sae.named_parameters()}


def check_gradients() -> None:
    for arch in ("topk", "batchtopk", "relu"):
        for with_dead in (False, True):
            ref_loss, ref = step_grads(arch, "cpu", with_dead)
            loss, got = step_grads(arch, "cuda", with_dead)
            worst = max(rel(got[name], ref[name]) for name in ref)
            check(f"gradients {arch} dead={with_dead}", worst < 1e-4 and abs(loss - ref_loss) < 1e-4 * abs(ref_loss) + 1e-7,
                  f"loss {loss:.6f} vs cpu {ref_loss:.6f}, worst grad rel. error {worst:.2e}")


def run_trainer(graphs: bool, steps: int, data: torch.Tensor, n: int, k: int, batch: int, dead_after: int,
                lr_trace: list | None = None, fused: bool = True, bf16: bool = True) -> Trainer:
    torch.manual_seed(0)
    sae = create_sae(SAEConfig(d_in=data.shape[1], n_latents=n, k=k))
    cfg = TrainConfig(device="cuda", cuda_graphs=graphs, warmup_steps=20, decay_fraction=0.3, log_every=5,
                      fused_update=fused, bf16=bf16)
    tr = Trainer(sae, cfg, total_steps=steps, dead_after_steps=dead_after)
    sae.init_from_data(data[:4096])
    batches = list(data.split(batch))[:steps]
    if lr_trace is not None:
        for i in range(steps):
            tr.fit(batches[i : i + 1], skip_done=False)
            lr_trace.append(float(tr.opt.param_groups[0]["lr"]))
    else:
        tr.fit(batches)
    return tr


def check_graphs() -> None:
    g = torch.Generator().manual_seed(0)
    data = torch.randn(256 * 120, 256, generator=g).cuda()
    data = data / data.norm(dim=1, keepdim=True)
    # the fused update against PyTorch's (float32 eager steps; later steps drift apart through top-k ties)
    torch_upd = run_trainer(False, 3, data, 2048, 32, 256, dead_after=1000, fused=False, bf16=False)
    fused_upd = run_trainer(False, 3, data, 2048, 32, 256, dead_after=1000, bf16=False)
    dw = max(rel(pg, pe) for pg, pe in zip(fused_upd.sae.parameters(), torch_upd.sae.parameters()))
    check("fused Triton update = PyTorch update (3 steps)", fused_upd.fused and dw < 1e-4,
          f"fused kernel used: {fused_upd.fused}, weights rel. diff {dw:.2e}")
    # a few steps: two eager warm-up steps, the capture, then replays must match eager steps closely
    eager = run_trainer(False, 8, data, 2048, 32, 256, dead_after=1000)
    graph = run_trainer(True, 8, data, 2048, 32, 256, dead_after=1000)
    dw = max(rel(pg, pe) for pg, pe in zip(graph.sae.parameters(), eager.sae.parameters()))
    check("graph replay = eager steps (8 steps)", dw < 1e-4, f"weights rel. diff {dw:.2e}")
    same = [torch.equal(sh, w.detach().bfloat16()) for sh, w in zip(graph.shadows, (graph.sae.W_enc, graph.sae.W_dec))]
    check("bf16 weight copies kept current by the fused update", all(same), f"W_enc, W_dec equal to their bf16 casts: {same}")
    # many latents (16,384) and few activations per step die quickly: the aux-loss graph is captured too
    eager = run_trainer(False, 100, data, 16384, 8, 64, dead_after=3)
    graph = run_trainer(True, 100, data, 16384, 8, 64, dead_after=3)
    aux_rows = sum(1 for r in graph.log if r["aux_loss"] > 0)
    dn = abs(graph.log[-1]["nmse"] - eager.log[-1]["nmse"])
    check("graph replay with aux loss (100 steps)", dn < 2e-3 and aux_rows > 0 and len(graph._graphed_step.graphs) == 2,
          f"final nmse {graph.log[-1]['nmse']:.5f} vs eager {eager.log[-1]['nmse']:.5f}, {aux_rows} log rows with aux "
          f"loss, graphs captured: {len(graph._graphed_step.graphs)}")
    trace: list[float] = []
    run_trainer(True, 40, data, 2048, 32, 256, dead_after=1000, lr_trace=trace)
    ref = [1e-3 * f for f in (Trainer._lr_factor(_Stub(40), s) for s in range(1, 41))]
    err = max(abs(a - b) for a, b in zip(trace, ref))
    check("graphed lr schedule", err < 1e-9, f"max |lr - expected| {err:.1e} (first {trace[0]:.2e}, last {trace[-1]:.2e})")


class _Stub:
    """Enough of a Trainer for _lr_factor."""

    def __init__(self, total: int) -> None:
        self.total_steps = total
        self.cfg = TrainConfig(warmup_steps=20, decay_fraction=0.3)


def check_resume(vectors: np.ndarray) -> None:
    cfg = TrainConfig(device="cuda", epochs=4, checkpoint_every=25)
    with tempfile.TemporaryDirectory() as a, tempfile.TemporaryDirectory() as b:
        torch.manual_seed(0)
        full, _, val_idx = train_on_array(create_sae(SAEConfig(vectors.shape[1], 1024, 32)), vectors, cfg, out_dir=a)
        torch.manual_seed(0)
        train_on_array(create_sae(SAEConfig(vectors.shape[1], 1024, 32)), vectors, cfg, out_dir=b, stop_after=60)
        torch.manual_seed(0)
        resumed, _, _ = train_on_array(create_sae(SAEConfig(vectors.shape[1], 1024, 32)), vectors, cfg, out_dir=b, resume=True)
    val = torch.from_numpy(vectors[val_idx]).cuda()
    na, nb = validation_nmse(full, val), validation_nmse(resumed, val)
    dw = max(rel(p, q) for p, q in zip(resumed.parameters(), full.parameters()))
    check("kill-and-resume on CUDA", abs(na - nb) < 1e-4, f"held-out nmse {nb:.6f} vs uninterrupted {na:.6f}, weights rel. diff {dw:.1e}")


def train_real(vectors: np.ndarray) -> None:
    for graphs in (True, False):
        torch.manual_seed(0)
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        sae, tr, val_idx = train_on_array(create_sae(SAEConfig(vectors.shape[1], 3072, 32)), vectors,
                                          TrainConfig(device="cuda", cuda_graphs=graphs))
        torch.cuda.synchronize()
        dt = time.perf_counter() - t0
        val = torch.from_numpy(vectors[val_idx]).cuda()
        plain = validation_nmse(_with_pursuit(sae, 0), val)
        print(f"INFO  real vectors k32/3072 default settings, graphs={graphs}: {tr.step} steps in {dt:.1f} s, "
              f"held-out nmse {validation_nmse(_with_pursuit(sae, 4), val):.4f} (plain top-k encoder {plain:.4f}), "
              f"dead {tr.log[-1]['dead_fraction']:.2%}", flush=True)
    # the pursuit encoder gives the same codes on CUDA as on CPU
    cpu = copy.deepcopy(sae).cpu()
    a, b = sae.encode_sparse(val), cpu.encode_sparse(val.cpu())
    same = float((a.indices.cpu().sort(1).values == b.indices.sort(1).values).all(1).float().mean())
    nv = abs(validation_nmse(sae, val) - validation_nmse(cpu, val.cpu()))
    check("pursuit encoding on CUDA = on CPU", same > 0.95 and nv < 1e-3,
          f"{same:.1%} of held-out rows pick the same latents; held-out nmse differs by {nv:.1e}")


def _with_pursuit(sae, pursuit: int):
    sae.cfg.pursuit = pursuit
    return sae


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--vectors", help="a .npy of real embeddings for the resume check and the default training run")
    args = ap.parse_args()
    if not torch.cuda.is_available():
        sys.exit("no CUDA device here")
    print(f"device: {torch.cuda.get_device_name()}  torch {torch.__version__}", flush=True)
    check_gradients()
    check_graphs()
    if args.vectors:
        vectors = np.load(args.vectors).astype(np.float32)
        check_resume(vectors)
        train_real(vectors)
    print(f"{len(FAILED)} check(s) failed: {FAILED}" if FAILED else "all checks passed")
    sys.exit(1 if FAILED else 0)


if __name__ == "__main__":
    main()
