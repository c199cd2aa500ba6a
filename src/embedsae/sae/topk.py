"""Top-k SAE (Gao et al. 2024, the seed recipe): keep the k largest pre-activations, then ReLU."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from .base import SAE, ForwardOutput, SparseCode, nmse


class TopKSAE(SAE):
    """Top-k SAE with the auxiliary dead-latent loss and an optional multi-k term."""

    architecture = "topk"

    def encode_sparse(self, x: Tensor, k: int | None = None) -> SparseCode:
        x = self._check_input(x)
        top = self.pre_activations(x).topk(k or self.cfg.k, dim=1)
        return SparseCode(top.indices, F.relu(top.values))

    def training_forward(self, x: Tensor, dead: Tensor | None = None) -> ForwardOutput:
        k = self.cfg.k
        pre = self._train_pre_activations(x)
        idx = pre.detach().topk(max(k, self.cfg.multik or 0), dim=1, sorted=bool(self.cfg.multik)).indices
        x_hat, vals = self._codec(x, pre, idx[:, :k])
        main = nmse(x, x_hat)
        loss = main
        if self.cfg.multik:
            x_hat_m, _ = self._codec(x, pre, idx)
            loss = loss + self.cfg.multik_coef * nmse(x, x_hat_m)
        aux = self._aux_loss(x, x_hat, pre, dead)
        loss = loss + self.cfg.aux_coef * aux
        return ForwardOutput(x_hat, SparseCode(idx[:, :k], vals.detach()), loss, main.detach(), aux.detach())
