"""BatchTopK SAE (Bussmann et al. 2024): the batch keeps its k x batch largest activations in all.

At inference a learned threshold replaces the batch constraint, so each vector may use more or fewer
than k latents.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from .base import SAE, ForwardOutput, SAEConfig, SparseCode, nmse


class BatchTopKSAE(SAE):
    """BatchTopK SAE with an inference threshold tracked as a running mean during training."""

    architecture = "batchtopk"

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
        with torch.no_grad():
            pre = self.pre_activations(x)
            idx = pre.topk(cap, dim=1, sorted=False).indices
            cand = pre.gather(1, idx)
            flat = cand.flatten()
            keep_n = min(b * k, flat.numel())
            kth = flat.topk(keep_n, sorted=False).values.min()
            keep = (cand >= kth) & (cand > 0)
            self.threshold.lerp_(kth.clamp_min(0), 0.01)
        vals = F.relu(self._gathered_activations(x, idx)) * keep
        x_hat = F.embedding_bag(idx, self.W_dec, per_sample_weights=vals, mode="sum") + self.b_pre
        main = nmse(x, x_hat)
        aux = self._aux_loss(x, x_hat, pre, dead)
        loss = main + self.cfg.aux_coef * aux
        return ForwardOutput(x_hat, SparseCode(idx, vals), loss, main.detach(), aux.detach())
