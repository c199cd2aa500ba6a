"""Training: any iterator of tensors in, a trained SAE out; checkpoints and exact resume.

The hot loop stays on the device: no `.item()` per step. Metrics are pulled to the host only every
`log_every` steps, for the progress bar and the training log.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
from collections.abc import Callable, Iterable, Iterator
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor

from .. import layout
from .._io import atomic_path, write_bytes
from ..data.vectors import VectorSource, as_source
from ..errors import InputError
from ..progress import ProgressCallback, Tracker
from . import distributed
from .base import SAE
from .config import TrainConfig

if TYPE_CHECKING:
    from .stream import StreamPosition


def resolve_device(device: str = "auto") -> torch.device:
    """The torch device for a name; 'auto' picks CUDA when it is available."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise InputError(f"device '{device}' was asked for but CUDA is not available here; set `device` to cpu")
    return torch.device(device)


class Trainer:
    """Trains an SAE on batches from any iterable of (batch, d_in) tensors."""

    def __init__(
        self,
        sae: SAE,
        cfg: TrainConfig,
        total_steps: int,
        *,
        checkpoint_dir: str | os.PathLike | None = None,
        dead_after_steps: int = 100,
        val_data: Tensor | None = None,
        progress: ProgressCallback | None = None,
        on_log: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        self.cfg = cfg
        self.device = resolve_device(cfg.device)
        self.sae = sae.to(self.device)
        self.total_steps = max(1, total_steps)
        self.checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir else None
        self.dead_after_steps = max(1, dead_after_steps)
        self.val_data = val_data.to(self.device) if val_data is not None else None
        self.lead = distributed.rank() == 0  # in data-parallel training, the process that reports and writes
        self.progress = progress if self.lead else None
        self.on_log = on_log if self.lead else None
        cuda = self.device.type == "cuda"
        self.graphed = cuda and cfg.cuda_graphs
        # a graphed optimizer step reads the learning rate from a device tensor that the scheduler refills
        lr: float | Tensor = torch.tensor(cfg.lr, device=self.device) if self.graphed else cfg.lr
        # torch's fused Adam on CPU too: its for-each and per-tensor steps cost ~30x more there
        self.opt = torch.optim.Adam(sae.parameters(), lr=lr, fused=self.device.type in ("cpu", "cuda"),
                                    capturable=self.graphed)
        self.sched = torch.optim.lr_scheduler.LambdaLR(self.opt, self._lr_factor)
        self.step = 0
        self.noise_scale = 0.0
        self.noise_gen = torch.Generator(device=self.device).manual_seed(cfg.seed + 7)
        self.steps_since_fired = torch.zeros(sae.cfg.n_latents, dtype=torch.long, device=self.device)
        self.any_dead = False  # nothing is dead at the start; refreshed at each log step (aux loss skipped while False)
        self.log: list[dict[str, Any]] = []
        self.loss_names = type(sae).loss_names
        # per loss term its sum since the last log row, then the number of steps summed
        self.acc = torch.zeros(len(self.loss_names) + 1, device=self.device)
        self._graphed_step = None
        self.fused = cfg.fused_update and sae.unit_norm_decoder and cuda and importlib.util.find_spec("triton") is not None
        self.cpu_fused = cfg.fused_update and sae.unit_norm_decoder and self.device.type == "cpu" and _cpu_update_ok(sae)
        self.shadows: tuple[Tensor, Tensor] | None = None  # bf16 weight copies the fused update keeps current
        self.stream = None  # the BatchStream being trained on, whose position checkpoints record
        self.resolved: dict[str, int] = {}  # the batch size, epochs and steps of the run (defaults chosen from the corpus)
        self.resumed_position: dict[str, int] | None = None

    def _lr_factor(self, step: int) -> float:
        warm = min(self.cfg.warmup_steps, max(1, int(0.05 * self.total_steps)))
        if step < warm:
            return (step + 1) / warm
        decay_start = int(self.total_steps * (1 - self.cfg.decay_fraction))
        if step >= decay_start and self.cfg.decay_fraction > 0:
            return max(0.0, (self.total_steps - step) / max(1, self.total_steps - decay_start))
        return 1.0

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "sae": self.sae.state_dict(),
            "opt": self.opt.state_dict(),
            "sched": self.sched.state_dict(),
            "steps_since_fired": self.steps_since_fired.cpu(),
            "noise_gen": self.noise_gen.get_state(),
            "any_dead": self.any_dead,
            "log": self.log,
            **({"stream": self.stream.position.to_dict()} if self.stream is not None else {}),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.step = int(state["step"])
        self.sae.load_state_dict(state["sae"])
        self.opt.load_state_dict(state["opt"])
        for group in self.opt.param_groups:  # a checkpoint may come from the other kind of step (graphed or not)
            lr = float(group["lr"])
            group["lr"] = torch.tensor(lr, device=self.device) if self.graphed else lr
        self.sched.load_state_dict(state["sched"])
        self.steps_since_fired.copy_(state["steps_since_fired"])  # in place: a captured graph holds this tensor
        self.noise_gen.set_state(state["noise_gen"].cpu())  # RNG states are CPU byte tensors, whatever the device
        self.any_dead = bool(state["any_dead"])
        self.log = list(state["log"])
        if "acc" in state:  # the loss sums since the last log row (checkpoints before them restart the sums)
            self.acc.copy_(state["acc"])
            if not self.lead:  # the stored sums are those of all processes: rank 0 carries them on
                self.acc[:-1].zero_()
        self.resumed_position = state.get("stream")

    def stream_start(self, steps_per_epoch: int) -> StreamPosition:
        """Where a streamed run continues: the checkpoint's stream position, else the one the step count implies."""
        from .stream import StreamPosition

        if self.resumed_position is not None:
            return StreamPosition(**self.resumed_position)
        return StreamPosition(self.step // steps_per_epoch, self.step % steps_per_epoch)

    def save_checkpoint(self) -> None:
        if self.checkpoint_dir is None:
            return
        acc = self._global_acc()  # collective: every process takes part, rank 0 writes
        if not self.lead:
            return
        import io

        buffer = io.BytesIO()  # serialised in memory, so a full disk is an OSError (ENOSPC), not torch's message
        torch.save({**self.state_dict(), "acc": acc.cpu()}, buffer)
        write_bytes(self.checkpoint_dir / layout.CHECKPOINT, buffer.getvalue())

    def try_resume(self) -> bool:
        """Load the checkpoint in checkpoint_dir if there is one; True when it was loaded."""
        if self.checkpoint_dir is None or not (self.checkpoint_dir / layout.CHECKPOINT).is_file():
            return False
        state = torch.load(self.checkpoint_dir / layout.CHECKPOINT, map_location=self.device, weights_only=False)
        self.load_state_dict(state)
        return True

    # ------------------------------------------------------------------ the loop
    def fit(self, batches: Iterable[Tensor], *, skip_done: bool = True, checkpoint_at: Iterable[int] = ()) -> SAE:
        """Train on the batches; after a resume, the first `self.step` batches are skipped when skip_done."""
        sae, cfg, dev = self.sae, self.cfg, self.device
        sae.train()
        ckpt_steps = set(checkpoint_at)
        it: Iterator[Tensor] = iter(batches)
        if skip_done:
            for _ in range(self.step):
                next(it, None)
        step_fn = self._step_function()
        if self.fused and cfg.bf16:
            from .fused_update import make_shadows

            if self.shadows is None:
                self.shadows = make_shadows(sae)
            else:  # refreshed in place: captured graphs hold these tensors
                for s, w in zip(self.shadows, (sae.W_enc, sae.W_dec)):
                    s.copy_(w.detach())
            sae.train_shadows = self.shadows
        bar = Tracker(self.progress, "train", self.total_steps, unit="step", initial=self.step)
        try:
            for x in it:
                if self.step >= self.total_steps:
                    break
                x = x.to(dev, non_blocking=True, dtype=torch.float32)
                if self.noise_scale > 0:
                    x = x + self.noise_scale * self._noise(x)
                step_fn(x, self.any_dead)
                self.sched.step()
                self.step += 1
                if self.step % cfg.log_every == 0 or self.step == self.total_steps:
                    self._write_log(self.acc, bar)
                    self.acc.zero_()
                every = cfg.checkpoint_every
                if (every and self.step % every == 0) or self.step in ckpt_steps:
                    self.save_checkpoint()
        finally:
            sae.train_shadows = None
        sae.eval()
        return sae

    def _step_function(self) -> Callable[[Tensor, bool], None]:
        """The per-step callable: the eager step, or its CUDA-graph replay."""
        if not self.graphed:
            return self._eager_step
        if self._graphed_step is None:
            from .graphs import GraphedStep

            self._graphed_step = GraphedStep(self._step_body, lambda: self.opt.zero_grad(set_to_none=True))
        return self._graphed_step

    def _eager_step(self, x: Tensor, use_aux: bool) -> None:
        self.opt.zero_grad(set_to_none=True)
        self._step_body(x, use_aux)

    def _step_body(self, x: Tensor, use_aux: bool) -> None:
        """One optimisation step on batch x, entirely on the device (no host syncs; graph-capturable)."""
        sae, cfg, dev = self.sae, self.cfg, self.device
        dead = self.steps_since_fired > self.dead_after_steps if use_aux else None
        # the autocast weight cache must stay off while a CUDA graph is captured
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=dev.type == "cuda" and cfg.bf16, cache_enabled=False):
            out = sae.training_forward(x, dead)
        out.loss.backward()
        if distributed.active():  # each loss is this process's share of the global one: gradients add up
            for p in sae.parameters():
                if p.grad is not None:
                    distributed.all_sum(p.grad)
        self._update()
        fired = torch.zeros_like(self.steps_since_fired).scatter_add_(
            0, out.code.indices.flatten(), (out.code.values > 0).flatten().long()
        )
        distributed.all_sum(fired)
        self.steps_since_fired.add_(1).masked_fill_(fired > 0, 0)
        self.acc += torch.stack([*(out.losses[n].float() for n in self.loss_names), torch.ones((), device=dev)])

    def _update(self) -> None:
        """The parameter update after backward: decoder-gradient projection, clipping, Adam, renormalisation."""
        if self.fused or self.cpu_fused:
            if self.fused:
                from .fused_update import fused_update

                fused_update(self.sae, self.opt, self.cfg.grad_clip, self.shadows)
            else:
                from .cpu_update import cpu_update

                cpu_update(self.sae, self.opt, self.cfg.grad_clip)
            self.opt._opt_called = True  # the scheduler checks that the optimizer stepped before it does
            return
        self.sae.remove_parallel_gradient()
        torch.nn.utils.clip_grad_norm_(self.sae.parameters(), self.cfg.grad_clip, foreach=True)
        self.opt.step()
        self.sae.normalise_decoder()

    def _noise(self, x: Tensor) -> Tensor:
        """Input noise for batch x; in data-parallel training this process's rows of the global batch's noise."""
        n, w = len(x), distributed.world_size()
        if w == 1:
            return torch.randn(x.shape, device=x.device, generator=self.noise_gen)
        r = distributed.rank()
        return torch.randn((n * w, x.shape[1]), device=x.device, generator=self.noise_gen)[r * n : (r + 1) * n]

    def _global_acc(self) -> Tensor:
        """The loss sums since the last log row, over all processes (the step count is everyone's)."""
        acc = self.acc.clone()
        distributed.all_sum(acc[:-1])
        return acc

    def _write_log(self, acc: Tensor, bar: Tracker) -> None:
        a = self._global_acc().tolist()
        row: dict[str, Any] = {
            "step": self.step,
            "lr": float(self.sched.get_last_lr()[0]),
            **{("nmse" if n == "nmse" else f"{n}_loss"): a[i] / max(a[-1], 1) for i, n in enumerate(self.loss_names)},
            "dead_fraction": float((self.steps_since_fired > self.dead_after_steps).float().mean()),
        }
        self.any_dead = row["dead_fraction"] > 0
        due = self.step == self.total_steps or self.step % max(self.cfg.val_every, 1) < self.cfg.log_every
        if due and self.val_data is not None and len(self.val_data):
            row["val_nmse"] = validation_nmse(self.sae, self.val_data)
        self.log.append(row)
        bar.update(self.step - bar.done, f"nmse={row['nmse']:.4f}, dead={row['dead_fraction']:.1%}")
        if self.on_log:
            self.on_log(row)


def _cpu_update_ok(sae: SAE) -> bool:
    """Whether the compiled CPU update applies: float32 weights and biases, and numba available."""
    from . import cpu_update

    params = (sae.W_enc, sae.W_dec, sae.b_lat, sae.b_pre)
    return all(p.dtype == torch.float32 and p.is_contiguous() for p in params) and cpu_update.available()


@torch.no_grad()
def validation_nmse(sae: SAE, x: Tensor, batch: int = 8192) -> float:
    """NMSE of the reconstruction of x by the SAE's plain encoder, the one being trained (against the mean of x).

    Cheap enough for every log step at any corpus size: one matrix product per batch, no pursuit (an SAE's own
    held-out NMSE, with its pursuit encoder, is what `metrics.evaluate_sae` reports)."""
    was_training = sae.training
    sae.eval()
    mu = x.mean(0)
    num = x.new_zeros(())
    den = x.new_zeros(())
    for i in range(0, len(x), batch):
        xb = x[i : i + batch]
        code = sae.encode_plain(xb)
        num += (sae.decode_sparse(code.indices, code.values) - xb).pow(2).sum()
        den += (xb - mu).pow(2).sum()
    sae.train(was_training)
    return float(num / den.clamp_min(1e-12))


# ---------------------------------------------------------------------- arrays -> batches
def split_indices(n: int, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded train / validation split of n rows: (training rows, held-out rows as int64), both ascending."""
    if n < 2:
        raise InputError(f"need at least 2 vectors to train an SAE, got {n}")
    # the same permutation as permutation(n), in half the memory while row numbers fit in 32 bits
    perm = np.arange(n, dtype=np.int32 if n < 2**31 else np.int64)
    np.random.default_rng(seed).shuffle(perm)
    n_val = int(round(n * val_fraction)) if val_fraction > 0 else 0
    n_val = min(max(n_val, 1 if val_fraction > 0 else 0), n - 1)
    return np.sort(perm[n_val:]), np.sort(perm[:n_val]).astype(np.int64)


def epoch_batches(data: Tensor, batch_size: int, epochs: int, seed: int) -> Iterator[Tensor]:
    """Shuffled batches, epoch after epoch; each epoch's order depends only on (seed, epoch)."""
    n = len(data)
    for epoch in range(epochs):
        g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
        perm = torch.randperm(n, generator=g).to(data.device)
        for i in range(0, n - batch_size + 1 if n >= batch_size else 1, batch_size):
            yield data[perm[i : i + batch_size]]


def steps_per_epoch(n: int, batch_size: int) -> int:
    return max(1, n // batch_size) if n >= batch_size else 1


LARGE_BATCH_FROM = 50_000
"""Training vectors from which the default batch is 1,024 instead of 256 (TrainConfig.batch_size)."""
DEFAULT_EPOCHS = 30


def default_batch_size(n_train: int) -> int:
    """The default batch for a corpus of `n_train` training vectors (see TrainConfig.batch_size)."""
    return 256 if n_train < LARGE_BATCH_FROM else 1024


def default_epochs(n_train: int, steps: int, cfg: TrainConfig) -> int:
    """The default passes (see TrainConfig.epochs): 30, more when that is fewer than `min_steps` steps, fewer when
    30 passes would show more than `budget_vectors` vectors."""
    if n_train * DEFAULT_EPOCHS > cfg.budget_vectors:
        return max(1, round(cfg.budget_vectors / n_train))
    return max(DEFAULT_EPOCHS, math.ceil(cfg.min_steps / steps))


INIT_SAMPLE = 65536
"""Training vectors the initialisation looks at (median for b_pre, starting points for latents)."""
VAL_LOG_ROWS = 16384
"""Held-out vectors the training log's validation NMSE uses (a seeded sample when there are more)."""


@dataclass
class Prepared:
    """A training run ready to fit: the trainer (initialised or resumed) and how the data is cut."""

    trainer: Trainer
    source: VectorSource
    train_idx: np.ndarray
    val_idx: np.ndarray
    batch_size: int
    steps_per_epoch: int
    epochs: int
    in_memory: bool


def fits_in_memory(n_rows: int, dim: int, cfg: TrainConfig) -> bool:
    """Whether the training vectors are copied into (device) memory rather than streamed (`in_memory_bytes`)."""
    return n_rows * dim * 4 <= cfg.in_memory_bytes


def prepare_training(
    sae: SAE, vectors: VectorSource | np.ndarray, cfg: TrainConfig, *, out_dir: str | os.PathLike | None = None,
    resume: bool = False, progress: ProgressCallback | None = None, in_memory: bool | None = None,
) -> Prepared:
    """Split the rows, size the run, set the noise scale and initialise the SAE (or load its checkpoint).

    Reads only a bounded sample of the vectors (`INIT_SAMPLE` training rows, and the held-out rows the
    training log evaluates on); `in_memory` (default: `fits_in_memory`) chooses how `fit_prepared` reads them.
    """
    source = as_source(vectors)
    n, dim = source.shape
    if n == 0:
        raise InputError("no vectors to train on: the corpus is empty")
    data_init = cfg.init == "data" or (cfg.init == "auto" and sae.default_init == "data")
    torch.manual_seed(cfg.seed)
    device = resolve_device(cfg.device)
    train_idx, val_idx = split_indices(n, cfg.val_fraction, cfg.seed)
    n_train = len(train_idx)
    in_memory = fits_in_memory(n_train, dim, cfg) if in_memory is None else in_memory
    batch_size = min(default_batch_size(n_train) if cfg.batch_size is None else cfg.batch_size, n_train)
    world = distributed.world_size()
    if batch_size % world:
        raise InputError(f"the batch of {batch_size} vectors does not split evenly over {world} processes; set "
                         f"`batch_size` to a multiple of {world}")
    spe = steps_per_epoch(n_train, batch_size)
    epochs = cfg.epochs if cfg.epochs is not None else default_epochs(n_train, spe, cfg)
    dead_vectors = cfg.dead_after or min(n_train, 10_000_000)
    val_rows = val_idx
    if len(val_idx) > VAL_LOG_ROWS:
        val_rows = np.sort(np.random.default_rng(cfg.seed + 1).choice(val_idx, VAL_LOG_ROWS, replace=False))
    val = torch.from_numpy(source.take(val_rows)) if len(val_rows) else None
    trainer = Trainer(
        sae, cfg, spe * epochs, checkpoint_dir=out_dir, dead_after_steps=math.ceil(dead_vectors / batch_size),
        val_data=val, progress=progress,
    )
    trainer.resolved = {"batch_size": batch_size, "epochs": epochs, "steps": spe * epochs}
    if cfg.noise > 0:
        head = torch.from_numpy(source.take(train_idx[:INIT_SAMPLE])).to(device)
        trainer.noise_scale = cfg.noise * float(head.norm(dim=1).mean()) / math.sqrt(dim)
        del head
    if not (resume and trainer.try_resume()):
        rows = train_idx
        if n_train > INIT_SAMPLE:  # a seeded random subset, not the first rows (corpora may be sorted by topic)
            rows = train_idx[np.sort(np.random.default_rng(cfg.seed).choice(n_train, INIT_SAMPLE, replace=False))]
        sample = torch.from_numpy(source.take(rows)).to(device)
        sae.to(device).init_from_data(sample, rows=data_init, seed=cfg.seed)
    return Prepared(trainer, source, train_idx, val_idx, batch_size, spe, epochs, in_memory)


def fit_prepared(run: Prepared, *, stop_after: int | None = None) -> Trainer:
    """Fit a prepared run: from an in-memory copy of the training rows, or streamed from the source."""
    trainer, cfg = run.trainer, run.trainer.cfg
    total = run.steps_per_epoch * run.epochs
    if run.in_memory:
        data = torch.from_numpy(run.source.take(run.train_idx)).to(trainer.device)
        batches: Iterator[Tensor] = epoch_batches(data, run.batch_size, run.epochs, cfg.seed)
        if distributed.active():  # this process's share of each global batch
            per, r = run.batch_size // distributed.world_size(), distributed.rank()
            batches = (b[r * per : (r + 1) * per] for b in batches)
        skip = True
    else:
        from .stream import BatchStream

        trainer.stream = BatchStream(run.source, run.batch_size, heldout=run.val_idx, seed=cfg.seed,
                                     buffer_rows=cfg.shuffle_buffer, epochs=run.epochs,
                                     rank=distributed.rank(), world_size=distributed.world_size(),
                                     pin_memory=trainer.device.type == "cuda")
        batches = trainer.stream.batches(trainer.stream_start(run.steps_per_epoch))
        skip = False
    if stop_after is not None:
        batches = _take(batches, stop_after)
    with closing(batches):
        trainer.fit(batches, skip_done=skip,
                    checkpoint_at=range(run.steps_per_epoch, total + 1, run.steps_per_epoch) if trainer.checkpoint_dir else ())
    return trainer


def train_on_array(
    sae: SAE,
    vectors: VectorSource | np.ndarray,
    cfg: TrainConfig,
    *,
    out_dir: str | os.PathLike | None = None,
    resume: bool = False,
    progress: ProgressCallback | None = None,
    stop_after: int | None = None,
    in_memory: bool | None = None,
) -> tuple[SAE, Trainer, np.ndarray]:
    """Train on an array or vector source with a held-out split; returns (sae, trainer, validation indices).

    Training rows up to `cfg.in_memory_bytes` are copied into memory and shuffled there; larger ones are
    streamed from the source through a shuffle buffer (see stream.py), with memory bounded by the buffer.
    `in_memory` overrides the choice. With `out_dir`, checkpoints go there (every `checkpoint_every` steps and
    at each epoch's end) and the training log is written as `train_log.jsonl`. `stop_after` ends early after
    that many steps (as if killed).
    """
    run = prepare_training(sae, vectors, cfg, out_dir=out_dir, resume=resume, progress=progress, in_memory=in_memory)
    trainer = fit_prepared(run, stop_after=stop_after)
    if out_dir is not None and trainer.lead:
        write_log(Path(out_dir) / layout.TRAIN_LOG, trainer.log)
    return trainer.sae, trainer, run.val_idx


def _take(it: Iterator[Tensor], n: int) -> Iterator[Tensor]:
    try:
        for i, x in enumerate(it):
            if i >= n:
                return
            yield x
    finally:
        close = getattr(it, "close", None)
        if close is not None:
            close()


def write_log(path: Path, rows: list[dict[str, Any]]) -> None:
    """Write the per-step training log as JSON lines."""
    with atomic_path(path) as tmp:
        tmp.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


def config_dict(cfg: TrainConfig) -> dict[str, Any]:
    return cfg.to_dict()
