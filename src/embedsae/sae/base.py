"""The interface every SAE architecture shares, its config, and its on-disk form (cfg.json + safetensors)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import ClassVar, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .. import layout
from .._io import write_bytes, write_json
from ..errors import InputError, WorkspaceError
from ..registry import ARCHITECTURES
from .config import SAEConfig


def architectures() -> dict[str, type[SAE]]:
    """Every registered SAE architecture by name, imported (`embedsae.registry.ARCHITECTURES` lists them without
    importing)."""
    return ARCHITECTURES.load_all()


def register_architecture(cls: type[SAE]) -> type[SAE]:
    """Register an SAE class under its `architecture` name (usable as a class decorator): the pipeline, the CLI's
    --architecture choices and the app's train form then offer it."""
    if not cls.architecture:
        raise ValueError(f"{cls.__name__} needs an `architecture` name to be registered")
    ARCHITECTURES.register(cls.architecture, cls, replace=True, supports_pursuit=cls.supports_pursuit)
    return cls


class SparseCode(NamedTuple):
    """A batch of sparse codes: per row, latent indices and their (non-negative) values."""

    indices: Tensor
    values: Tensor


class ForwardOutput(NamedTuple):
    """What a training forward pass returns: the loss to minimise and its named, detached terms."""

    x_hat: Tensor
    code: SparseCode
    loss: Tensor
    losses: dict[str, Tensor]
    """Detached terms of the loss, keyed by the architecture's `loss_names` ("nmse" first)."""


def nmse(x: Tensor, x_hat: Tensor, mean: Tensor | None = None) -> Tensor:
    """Normalised MSE: ||x - x_hat||^2 / ||x - mean(x)||^2 over the batch.

    In data-parallel training the batch is the global one: this process's share of the NMSE is returned
    (its squared error over the global spread), and the shares add up to the NMSE of the global batch.
    """
    from . import distributed

    if mean is None and distributed.active():
        return (x_hat - x).pow(2).sum() / distributed.batch_spread(x).clamp_min(1e-12)
    mu = x.mean(0) if mean is None else mean
    return (x_hat - x).pow(2).sum() / (x - mu).pow(2).sum().clamp_min(1e-12)


INIT_JITTER = 0.1
"""Jitter of the data initialisation, as a share of the centred sample norm (see `SAE.init_from_data`)."""
REPEAT_JITTER = 0.5
"""Jitter of latents that start at an already used point (more latents than sample vectors): enough that they
do not compete for the same documents (on Cranfield's 1,330 training vectors, 3,072 latents: dead 4.6 % with
0.1, none with 0.5)."""


class SAE(nn.Module):
    """Base SAE: encoder a = W_enc (x - b_pre) + b_lat, a sparsifying activation, decoder W_dec z + b_pre.

    W_enc and W_dec are both stored as (n_latents, d_in): row i of W_dec is feature i's direction.
    """

    architecture: ClassVar[str] = ""
    """The name the architecture is registered under (SAEConfig.architecture)."""
    loss_names: ClassVar[tuple[str, ...]] = ("nmse",)
    """The terms `training_forward` reports in ForwardOutput.losses (logged as nmse and <name>_loss)."""
    supports_pursuit: ClassVar[bool] = False
    """Whether SAEConfig.pursuit applies (otherwise it is set to 0)."""
    default_init: ClassVar[str] = "data"
    """Where latents start under TrainConfig.init='auto': 'data' or 'random'."""
    unit_norm_decoder: ClassVar[bool] = True
    """Decoder rows are kept at unit norm (gradient projection and renormalisation after each step)."""
    train_shadows: tuple[Tensor, Tensor] | None = None
    """While a GPU trainer keeps them current: bf16 copies of (W_enc, W_dec) for the training forward."""

    def __init__(self, cfg: SAEConfig) -> None:
        super().__init__()
        self.cfg = cfg
        n, d = cfg.n_latents, cfg.d_in
        w = torch.randn(n, d)
        w = w / w.norm(dim=1, keepdim=True)
        self.W_dec = nn.Parameter(w.clone())
        self.W_enc = nn.Parameter(w.clone())  # tied init: W_enc = W_dec^T
        self.b_lat = nn.Parameter(torch.zeros(n))
        self.b_pre = nn.Parameter(torch.zeros(d))

    # ------------------------------------------------------------------ shared maths
    @property
    def device(self) -> torch.device:
        return self.W_dec.device

    def pre_activations(self, x: Tensor) -> Tensor:
        """Dense encoder pre-activations, (batch, n_latents)."""
        return F.linear(x - self.b_pre, self.W_enc, self.b_lat)

    def _check_input(self, x: Tensor) -> Tensor:
        if x.ndim != 2 or x.shape[1] != self.cfg.d_in:
            raise InputError(f"the SAE takes vectors of dimension {self.cfg.d_in}; got an input of shape {tuple(x.shape)}")
        return x.to(self.W_dec.dtype)

    def encode_sparse(self, x: Tensor, k: int | None = None) -> SparseCode:
        """Sparse codes (indices and values, zeros where fewer than k latents fire)."""
        raise NotImplementedError

    def encode(self, x: Tensor, k: int | None = None) -> Tensor:
        """Dense codes (batch, n_latents)."""
        code = self.encode_sparse(x, k)
        z = torch.zeros(x.shape[0], self.cfg.n_latents, dtype=code.values.dtype, device=code.values.device)
        return z.scatter_(1, code.indices, code.values)

    def decode_sparse(self, indices: Tensor, values: Tensor) -> Tensor:
        """Reconstruct from sparse codes with a gather-sum (never forms the dense code)."""
        return F.embedding_bag(indices, self.W_dec, per_sample_weights=values.to(self.W_dec.dtype), mode="sum") + self.b_pre

    def decode(self, z: Tensor) -> Tensor:
        """Reconstruct from dense codes."""
        return z.to(self.W_dec.dtype) @ self.W_dec + self.b_pre

    def reconstruct(self, x: Tensor, k: int | None = None) -> Tensor:
        """Encode then decode, optionally at another k than the SAE was trained with."""
        x = self._check_input(x)
        code = self.encode_sparse(x, k)
        return self.decode_sparse(code.indices, code.values)

    def training_forward(self, x: Tensor, dead: Tensor | None = None) -> ForwardOutput:
        """Forward pass with the training loss (architecture specific)."""
        raise NotImplementedError

    # ------------------------------------------------------------------ training helpers
    def _train_pre_activations(self, x: Tensor) -> Tensor:
        """Pre-activations for a training step: without a graph on CPU (the sparse kernel does backward)."""
        if x.device.type == "cpu" or not torch.is_grad_enabled():
            with torch.no_grad():
                return self.pre_activations(x)
        from .kernels import encoder_pre

        return encoder_pre(x, self.W_enc, self.b_lat, self.b_pre, self.train_shadows[0] if self.train_shadows else None)

    def _codec(self, x: Tensor, pre: Tensor, idx: Tensor, add_bias: bool = True, keep: Tensor | None = None):
        """Decode the latents `idx` of each row; returns (x_hat, values). `keep` zeroes unselected entries."""
        from . import kernels

        pre_sel = pre.gather(1, idx)
        if keep is not None:
            pre_sel = pre_sel.masked_fill(~keep, -1.0)
        if pre_sel.requires_grad and pre_sel.device.type == "cuda":
            return kernels.dense_codec(self.W_dec, self.b_pre, idx, pre_sel, add_bias,
                                       self.train_shadows[1] if self.train_shadows else None)
        if pre_sel.requires_grad or not torch.is_grad_enabled():
            return kernels.eager_codec(self.W_dec, self.b_pre, idx, pre_sel, add_bias)
        return kernels.sparse_codec(x, self.W_enc, self.b_lat, self.W_dec, self.b_pre, idx, pre_sel, add_bias)

    def _aux_loss(self, x: Tensor, x_hat: Tensor, pre: Tensor, dead: Tensor | None) -> Tensor:
        """NMSE of the residual predicted from the top aux_k dead latents (no host sync)."""
        if dead is None:
            return x.new_zeros(())
        idx = pre.detach().masked_fill(~dead, float("-inf")).topk(self.cfg.effective_aux_k, dim=1, sorted=False).indices
        e_hat, _ = self._codec(x, pre, idx, add_bias=False, keep=dead[idx])
        return torch.nan_to_num(nmse((x - x_hat).detach(), e_hat), nan=0.0)

    @torch.no_grad()
    def normalise_decoder(self) -> None:
        """Scale decoder rows to unit norm."""
        self.W_dec.div_(self.W_dec.norm(dim=1, keepdim=True).clamp_min(1e-8))

    @torch.no_grad()
    def remove_parallel_gradient(self) -> None:
        """Drop the gradient component along each decoder row (keeps rows on the unit sphere)."""
        g = self.W_dec.grad
        if g is not None:
            g.sub_((g * self.W_dec).sum(dim=1, keepdim=True) * self.W_dec)

    @torch.no_grad()
    def init_from_data(self, sample: Tensor, *, rows: bool = True, seed: int = 0, jitter: float = INIT_JITTER) -> None:
        """Set b_pre to the coordinate median of a data sample and, with `rows`, start every latent at a data point.

        Each latent's decoder and encoder rows become a different sample vector (distinct ones while the
        sample has enough), minus b_pre, plus Gaussian jitter of `jitter` times the mean centred norm
        (`REPEAT_JITTER` for points used again), at unit norm. Latents then start as detectors of real regions of the
        data instead of random directions; see `TrainConfig.init` for what that changes.
        """
        sample = sample.to(self.b_pre)
        self.b_pre.copy_(sample.median(dim=0).values)
        if not rows or len(sample) == 0:
            return
        n, d = self.W_dec.shape
        gen = torch.Generator().manual_seed(seed)
        repeats = -(-n // len(sample))
        pick = torch.cat([torch.randperm(len(sample), generator=gen) for _ in range(repeats)])[:n]
        w = sample[pick.to(sample.device)] - self.b_pre
        scale = torch.full((n, 1), jitter)
        scale[len(sample):] = max(jitter, REPEAT_JITTER)  # second and later starts at the same point
        noise = torch.randn(n, d, generator=gen) * scale
        w = w + w.norm(dim=1).mean() / d**0.5 * noise.to(w)
        w = w / w.norm(dim=1, keepdim=True).clamp_min(1e-12)
        self.W_dec.copy_(w)
        self.W_enc.copy_(w)

    # ------------------------------------------------------------------ serialisation
    def save(self, folder: str | os.PathLike) -> None:
        """Write cfg.json and sae.safetensors (atomically) into `folder`."""
        from safetensors.torch import save

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        tensors = {k: v.detach().to("cpu").contiguous() for k, v in self.state_dict().items()}
        write_bytes(folder / layout.SAE_WEIGHTS, save(tensors, metadata={"architecture": self.architecture}))
        write_json(folder / layout.SAE_CONFIG, self.cfg.to_dict())


def read_config(folder: str | os.PathLike) -> SAEConfig:
    """The configuration of an SAE saved with `SAE.save` (its cfg.json, checked), without loading the weights."""
    from ..errors import InputError
    from ..integrity import damaged, read_json_object

    path = Path(folder) / layout.SAE_CONFIG
    raw = read_json_object(path, required=("d_in", "n_latents", "k", "architecture"))
    try:
        return SAEConfig.from_dict(raw)
    except (InputError, ValueError, TypeError) as exc:
        raise damaged(path, exc) from exc


def load_sae(folder: str | os.PathLike, device: str | torch.device = "cpu") -> SAE:
    """Load an SAE saved with `SAE.save` (cfg.json + sae.safetensors)."""
    from safetensors.torch import load_file

    from ..integrity import damaged

    folder = Path(folder)
    cfg_file, weights = folder / layout.SAE_CONFIG, folder / layout.SAE_WEIGHTS
    if not cfg_file.is_file() or not weights.is_file():
        raise WorkspaceError(f"{folder} holds no saved SAE ({layout.SAE_CONFIG} and {layout.SAE_WEIGHTS} are needed)")
    sae = create_sae(read_config(folder))
    try:
        sae.load_state_dict(load_file(str(weights)))
    except Exception as exc:  # safetensors raises its own error types for truncated or foreign files
        raise damaged(weights, exc) from exc
    return sae.to(device).eval()


def create_sae(cfg: SAEConfig) -> SAE:
    """A freshly initialised SAE of the configured architecture."""
    return ARCHITECTURES.get(cfg.architecture)(cfg)
