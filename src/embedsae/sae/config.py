"""The settings of an SAE (shape, architecture, encoding) and of its training, without torch.

Front ends read these to build their options (field docstrings are the help text); the model and the trainer
consume them.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from ..errors import InputError
from ..registry import ARCHITECTURES
from ..settings import OneOf, Range, Settings, check


@dataclass
class SAEConfig(Settings):
    """Shape and kind of an SAE."""

    d_in: int
    """Dimension of the input vectors."""
    n_latents: Annotated[int, Range(ge=1, le=2**20)] = 3072
    """Number of latent features (dictionary size)."""
    k: Annotated[int, Range(ge=1, le=4096)] = 32
    """Active latents per vector (top-k / BatchTopK); for ReLU, the cap used by encode_sparse."""
    architecture: Annotated[str, OneOf(ARCHITECTURES)] = "topk"
    """The SAE architecture (a name registered in embedsae.registry.ARCHITECTURES)."""
    aux_k: int | None = None
    """Dead latents used by the auxiliary loss (default 2k)."""
    aux_coef: float = 1 / 32
    """Weight of the auxiliary dead-latent loss."""
    multik: int | None = None
    """If set, also train the reconstruction at this larger k (e.g. 4k)."""
    multik_coef: float = 1 / 8
    """Weight of the multi-k loss."""
    l1_coef: float = 5e-3
    """L1 penalty (ReLU SAE only)."""
    pursuit: Annotated[int, Range(ge=0)] = 4
    """Top-k only: encode by non-negative orthogonal matching pursuit over the encoder's `pursuit` x k
    strongest latents (values refit by least squares on the decoder; 0 = the plain top-k and ReLU encoder).
    Training is unchanged; every encode (codes, search, evaluation) uses it. Set to 0 for other
    architectures; SAEs saved without this field load with 0."""
    model_id: str | None = None
    """Embedding model whose vectors the SAE was trained on (checked when applying it to a workspace)."""
    extra: dict[str, Any] = field(default_factory=dict)
    """Provenance kept with the SAE, e.g. where an imported SAE came from (format, source file)."""

    def validate(self) -> None:
        if self.d_in <= 0 or self.n_latents <= 0:
            raise InputError(f"d_in and n_latents must be positive (got {self.d_in}, {self.n_latents})")
        if self.k <= 0 or self.k > self.n_latents:
            raise InputError(f"k must be between 1 and the number of latents ({self.n_latents}); got {self.k}")
        ARCHITECTURES.check(self.architecture)
        super().validate()
        if not ARCHITECTURES.info(self.architecture).get("supports_pursuit", False):
            self.pursuit = 0

    @property
    def effective_aux_k(self) -> int:
        return min(self.aux_k or 2 * self.k, self.n_latents)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SAEConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        # SAEs saved before the pursuit encoder existed were evaluated with plain top-k: keep that
        return cls(**{"pursuit": 0, **{k: v for k, v in d.items() if k in known}})


@dataclass
class TrainConfig(Settings):
    """Optimisation settings (the seed recipe's defaults, with a learning rate suited to small corpora)."""

    lr: Annotated[float, Range(gt=0, what="the learning rate")] = 1e-3
    """Adam learning rate."""
    batch_size: Annotated[int, Range(ge=1, le=2**20, what="the batch size")] = 256
    """Vectors per step (the seed used 1024 on millions of vectors; smaller batches suit corpora of thousands)."""
    epochs: Annotated[int, Range(ge=1, le=100_000)] | None = None
    """Passes over the training vectors (train_on_array only); default 30, more for small corpora (see min_steps)."""
    min_steps: int = 500
    """With the default epochs, train at least this many steps (small corpora need more passes)."""
    warmup_steps: int = 50
    """Linear learning-rate warm-up (capped at 5% of the steps)."""
    decay_fraction: float = 0.2
    """Share of the final steps over which the learning rate decays linearly to zero."""
    grad_clip: float = 1.0
    """Global gradient-norm clip."""
    seed: Annotated[int, Range(ge=0)] = 0
    """Seed for initialisation and shuffling."""
    val_fraction: float = 0.05
    """Share of vectors held out for validation (train_on_array only)."""
    dead_after: int | None = None
    """A latent not fired for this many vectors is dead (default: one epoch, at most 10M)."""
    log_every: int = 10
    """Steps between host-side metric reads (progress bar and log)."""
    val_every: int = 100
    """Steps between held-out NMSE evaluations in the log (rounded up to a log step; always at the end)."""
    checkpoint_every: Annotated[int, Range(ge=0)] = 0
    """Steps between checkpoints (0 = only at the end of each epoch when a folder is given)."""
    noise: Annotated[float, Range(ge=0)] = 0.3
    """Gaussian input noise while training, as a share of the mean vector norm (regularises small corpora)."""
    init: Literal["auto", "data", "random"] = "auto"
    """Where latents start. 'data': each at a different training vector (centred, unit norm); 'random': at a
    random direction, as in the seed; 'auto': data for top-k and BatchTopK, random for ReLU. On the 6,276 arXiv
    abstracts (k 32, 3,072 latents) data starts give top-k features that are easier to name (mean label AUC
    0.81 -> 0.92) and a lower held-out NMSE (0.235 -> 0.225; BatchTopK 0.377 -> 0.334); a ReLU SAE keeps more
    latents alive from data starts (100 % vs 81 %) but reconstructs held-out vectors worse (0.074 vs 0.050)."""
    in_memory_bytes: int = 2 * 1024**3
    """Training vectors up to this many bytes (rows x dimension x 4) are copied into memory (on the training
    device) and shuffled there, with no transfer per step on a GPU; larger training sets stream from the vector source through a
    shuffle buffer with bounded memory (see sae/stream.py). 0 always streams."""
    shuffle_buffer: int = 32768
    """When streaming: vectors per shuffle buffer (rounded down to whole batches), read from 16 blocks of
    consecutive rows in an order shuffled every epoch; two buffers are held at a time."""
    device: str = "auto"
    """'auto' (CUDA when present, else CPU), 'cpu', 'cuda', 'cuda:1', ..."""
    bf16: bool = True
    """bf16 autocast on CUDA."""
    cuda_graphs: bool = True
    """On CUDA, capture each training step once and replay it as a CUDA graph (see sae/graphs.py)."""
    fused_update: bool = True
    """On CUDA with Triton, do projection, clipping, Adam and renormalisation in two kernels (sae/fused_update.py)."""

    def validate(self) -> None:
        super().validate()
        check(self.min_steps >= 1, f"min_steps must be at least 1, got {self.min_steps}")
        check(self.warmup_steps >= 0, f"warmup_steps must be 0 or more, got {self.warmup_steps}")
        check(0 <= self.decay_fraction <= 1, f"decay_fraction must lie in [0, 1], got {self.decay_fraction}")
        check(self.grad_clip > 0, f"grad_clip must be positive, got {self.grad_clip}")
        check(0 <= self.val_fraction < 1, f"val_fraction must lie in [0, 1), got {self.val_fraction}")
        check(self.dead_after is None or self.dead_after >= 1, f"dead_after must be at least 1, got {self.dead_after}")
        check(self.log_every >= 1 and self.val_every >= 1, "log_every and val_every must be at least 1")
        check(self.in_memory_bytes >= 0, f"in_memory_bytes must be 0 or more, got {self.in_memory_bytes}")
        check(self.shuffle_buffer >= 1, f"shuffle_buffer must be at least 1, got {self.shuffle_buffer}")
        check(self.device == "auto" or self.device == "cpu" or self.device.startswith(("cuda", "mps")),
              f"unknown device '{self.device}': use auto, cpu, cuda or cuda:N")
