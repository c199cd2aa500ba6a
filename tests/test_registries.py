"""Extension points: a new SAE architecture is one class plus one registration, and the whole pipeline
(train, save, load, evaluate, encode) then works with it."""

from __future__ import annotations

import shutil

import torch
import torch.nn.functional as F
from torch import Tensor

from embedsae import pipeline
from embedsae.sae import ARCHITECTURES, SAE, ForwardOutput, SparseCode, load_sae, nmse, register_architecture
from embedsae.workspace import Workspace


class SignedTopKSAE(SAE):
    """A toy architecture: keeps the k pre-activations of largest magnitude (only the positive ones fire)."""

    architecture = "signed-topk-test"
    loss_names = ("nmse", "size")

    def encode_sparse(self, x: Tensor, k: int | None = None) -> SparseCode:
        pre = self.pre_activations(self._check_input(x))
        top = pre.abs().topk(k or self.cfg.k, dim=1)
        return SparseCode(top.indices, F.relu(pre.gather(1, top.indices)))

    def training_forward(self, x: Tensor, dead: Tensor | None = None) -> ForwardOutput:
        code = self.encode_sparse(x)
        pre = self.pre_activations(x).gather(1, code.indices)
        x_hat = F.embedding_bag(code.indices, self.W_dec, per_sample_weights=F.relu(pre), mode="sum") + self.b_pre
        main = nmse(x, x_hat)
        size = F.relu(pre).sum(1).mean()
        return ForwardOutput(x_hat, SparseCode(code.indices, code.values.detach()), main + 1e-4 * size,
                             {"nmse": main.detach(), "size": size.detach()})


def test_a_registered_architecture_trains_saves_loads_and_evaluates(cranfield_ws, tmp_path):
    register_architecture(SignedTopKSAE)
    try:
        dst = tmp_path / "ws"
        shutil.copytree(cranfield_ws.path, dst)
        ws = Workspace.open(dst)
        sae = pipeline.train(ws, architecture="signed-topk-test", k=8, latents=128, epochs=4, name="toy")
        assert isinstance(sae, SignedTopKSAE) and sae.cfg.pursuit == 0  # pursuit is for architectures that support it
        log = [line for line in (ws.sae_dir("toy") / "train_log.jsonl").read_text().splitlines() if line]
        assert '"size_loss"' in log[-1]
        metrics = pipeline.load_metrics(ws, "toy")
        assert 0 < metrics["nmse"] < 1  # better than predicting the mean
        again = load_sae(ws.sae_dir("toy"))
        x = torch.from_numpy(ws.embeddings[:16].copy())
        torch.testing.assert_close(again.encode_sparse(x).values, sae.encode_sparse(x).values)
    finally:
        ARCHITECTURES.unregister("signed-topk-test")
