"""ReLU SAE with an L1 penalty weighted by decoder norms (the classic baseline)."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from . import distributed
from .base import SAE, ForwardOutput, SparseCode, nmse, register_architecture


@register_architecture
class ReLUSAE(SAE):
    """z = ReLU(W_enc (x - b_pre) + b_lat); loss = NMSE + l1_coef * sum_i z_i ||W_dec,i||."""

    architecture = "relu"
    loss_names = ("nmse", "l1")
    default_init = "random"  # data starts keep every latent alive but reconstruct held-out vectors worse
    unit_norm_decoder = False

    def encode_sparse(self, x: Tensor, k: int | None = None) -> SparseCode:
        """The k largest activations per row (fewer are non-zero when fewer latents fire)."""
        x = self._check_input(x)
        z = F.relu(self.pre_activations(x))
        top = z.topk(k or self.cfg.k, dim=1)
        return SparseCode(top.indices, top.values)

    def encode(self, x: Tensor, k: int | None = None) -> Tensor:
        if k is not None:
            return super().encode(x, k)
        return F.relu(self.pre_activations(self._check_input(x)))

    def reconstruct(self, x: Tensor, k: int | None = None) -> Tensor:
        return self.decode(self.encode(x, k))

    def training_forward(self, x: Tensor, dead: Tensor | None = None) -> ForwardOutput:
        z = F.relu(self.pre_activations(x))
        x_hat = self.decode(z)
        main = nmse(x, x_hat)
        l1 = (z * self.W_dec.norm(dim=1)).sum(1)
        # in data-parallel training the mean over the global batch, of which this process adds its share
        l1 = l1.sum() / (len(z) * distributed.world_size()) if distributed.active() else l1.mean()
        loss = main + self.cfg.l1_coef * l1
        top = z.detach().topk(self.cfg.k, dim=1)
        return ForwardOutput(x_hat, SparseCode(top.indices, top.values), loss, {"nmse": main.detach(), "l1": l1.detach()})

    def normalise_decoder(self) -> None:
        """ReLU SAEs keep free decoder norms (the L1 term is weighted by them)."""

    def remove_parallel_gradient(self) -> None:
        """Not used for ReLU SAEs."""
