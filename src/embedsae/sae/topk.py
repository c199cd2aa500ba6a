"""Top-k SAE (Gao et al. 2024, the seed recipe): keep the k largest pre-activations, then ReLU.

Training follows the recipe, except that latents start at training vectors rather than random directions
(`TrainConfig.init`). Encoding, by default, refines the code by matching pursuit over the encoder's 4k
strongest latents (`SAEConfig.pursuit`, see pursuit.py); `pursuit=0` gives the plain encoder.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from .base import SAE, ForwardOutput, SparseCode, nmse, register_architecture


@register_architecture
class TopKSAE(SAE):
    """Top-k SAE with the auxiliary dead-latent loss and an optional multi-k term."""

    architecture = "topk"
    loss_names = ("nmse", "aux")
    supports_pursuit = True

    def encode_sparse(self, x: Tensor, k: int | None = None) -> SparseCode:
        x = self._check_input(x)
        k = k or self.cfg.k
        m = min(self.cfg.pursuit * k, self.cfg.n_latents)
        if m <= k:
            top = self.pre_activations(x).topk(k, dim=1)
            return SparseCode(top.indices, F.relu(top.values))
        return self.encode_pursuit(x, k, m)

    def encode_plain(self, x: Tensor, k: int | None = None) -> SparseCode:
        top = self.pre_activations(self._check_input(x)).topk(k or self.cfg.k, dim=1)
        return SparseCode(top.indices, F.relu(top.values))

    def encode_pursuit(self, x: Tensor, k: int, candidates: int) -> SparseCode:
        """Codes chosen by matching pursuit among the encoder's `candidates` strongest latents (see pursuit.py)."""
        from .pursuit import pursuit_from_pre

        # the full Gram pays when it is already there or cheaper than each row's candidate Gram (not for a small
        # validation batch during training, whose weights change between calls)
        build = x.shape[0] * candidates**2 >= self.cfg.n_latents**2
        gram = self.decoder_gram(build=build)
        return SparseCode(*pursuit_from_pre(self.W_dec.detach(), self.b_pre.detach(), x, self.pre_activations(x), k,
                                            candidates, gram=gram))

    def decoder_gram(self, build: bool = True) -> Tensor | None:
        """The decoder's Gram matrix for pursuit, kept until the decoder weights change.

        None when it would be too large, or when it is not current and `build` is false.
        """
        from .pursuit import decoder_gram

        w = self.W_dec
        key = (w.data_ptr(), w._version, w.device, w.dtype, tuple(w.shape))
        cached = getattr(self, "_gram_cache", None)
        if cached is None or cached[0] != key:
            if not build:
                return None
            cached = (key, decoder_gram(w.detach()))
            self._gram_cache = cached
        return cached[1]

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
        return ForwardOutput(x_hat, SparseCode(idx[:, :k], vals.detach()), loss, {"nmse": main.detach(), "aux": aux.detach()})
