"""BatchTopK SAE (Bussmann et al. 2024): the batch keeps its k x batch largest activations in all.

At inference a learned threshold replaces the batch constraint, so each vector may use more or fewer
than k latents.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from . import distributed
from .base import SAE, ForwardOutput, SAEConfig, SparseCode, nmse, register_architecture


@register_architecture
class BatchTopKSAE(SAE):
    """BatchTopK SAE with an inference threshold tracked as a running mean during training."""

    architecture = "batchtopk"
    loss_names = ("nmse", "aux")

    def __init__(self, cfg: SAEConfig) -> None:
        super().__init__(cfg)
        self.register_buffer("threshold", torch.zeros(()))

    def encode_sparse(self, x: Tensor, k: int | None = None) -> SparseCode:
        x = self._check_input(x)
        pre = F.relu(self.pre_activations(x))
        cap = k or min(4 * self.cfg.k, self.cfg.n_latents)
        top = pre.topk(cap, dim=1)
        vals = top.values * (top.values > self.threshold)
        return SparseCode(top.indices, vals)

    def training_forward(self, x: Tensor, dead: Tensor | None = None) -> ForwardOutput:
        b, k = x.shape[0], self.cfg.k
        cap = min(4 * k, self.cfg.n_latents)
        pre = self._train_pre_activations(x)
        with torch.no_grad():
            top = pre.detach().topk(cap, dim=1, sorted=False)
            flat = top.values.flatten()
            if distributed.active():  # the cut-off of the global batch: its largest k x batch values
                b *= distributed.world_size()
                flat = distributed.all_cat(flat.topk(min(b * k, flat.numel()), sorted=False).values)
            kth = flat.topk(min(b * k, flat.numel()), sorted=False).values.min()
            keep = (top.values >= kth) & (top.values > 0)
            self.threshold.lerp_(kth.clamp_min(0), 0.01)
        x_hat, vals = self._codec(x, pre, top.indices, keep=keep)
        main = nmse(x, x_hat)
        aux = self._aux_loss(x, x_hat, pre, dead)
        loss = main + self.cfg.aux_coef * aux
        return ForwardOutput(x_hat, SparseCode(top.indices, vals.detach()), loss, {"nmse": main.detach(), "aux": aux.detach()})
