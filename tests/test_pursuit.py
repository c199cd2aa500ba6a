"""The batched Cholesky pursuit gives the codes of the first (re-solving) pursuit, on real arXiv vectors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from embedsae.sae import SAEConfig, create_sae
from embedsae.sae import pursuit as pursuit_mod

from .pursuit_reference import reference_pursuit


def agreement(new: tuple[torch.Tensor, torch.Tensor], ref: tuple[torch.Tensor, torch.Tensor]) -> tuple[float, float]:
    """Share of rows with the same set of latents, and the largest value difference on those rows."""
    a, b = new[0].sort(1), ref[0].sort(1)
    same = (a.values == b.values).all(1)
    diff = (new[1].gather(1, a.indices) - ref[1].gather(1, b.indices))[same].abs()
    return same.float().mean().item(), diff.max().item() if len(diff) else 0.0


def _reference_codes(sae, x: torch.Tensor, k: int):
    cand = sae.pre_activations(x).topk(sae.cfg.pursuit * k, dim=1, sorted=False).indices
    return reference_pursuit(sae.W_dec.detach(), sae.b_pre.detach(), x, cand, k)


@pytest.mark.parametrize("k", [32, 64])
def test_pursuit_matches_the_first_implementation_on_arxiv(arxiv_trained, k):
    sae = arxiv_trained.load_sae()
    x = torch.from_numpy(np.asarray(arxiv_trained.embeddings[:1500], dtype=np.float32))
    with torch.no_grad():
        new = sae.encode_sparse(x, k)
        ref = _reference_codes(sae, x, k)
    same, diff = agreement(new, ref)
    assert same >= 0.999 and diff <= 1e-4, (k, same, diff)
    assert (new.values >= 0).all() and (new.values[:, :-1] >= new.values[:, 1:]).all()


def test_pursuit_without_the_full_gram_gives_the_same_codes(arxiv_trained, monkeypatch):
    sae = arxiv_trained.load_sae()
    x = torch.from_numpy(np.asarray(arxiv_trained.embeddings[-300:], dtype=np.float32))
    with torch.no_grad():
        with_gram = sae.encode_sparse(x)
        monkeypatch.setattr(pursuit_mod, "GRAM_MAX_BYTES", 0)
        sae._gram_cache = None
        assert sae.decoder_gram() is None
        without = sae.encode_sparse(x)
    same, diff = agreement(without, with_gram)
    assert same >= 0.99 and diff <= 1e-4, (same, diff)


def test_decoder_gram_follows_weight_changes():
    sae = create_sae(SAEConfig(d_in=16, n_latents=40, k=4))
    first = sae.decoder_gram()
    assert sae.decoder_gram() is first, "kept while the weights are unchanged"
    with torch.no_grad():
        sae.W_dec.mul_(2.0)
    again = sae.decoder_gram()
    assert torch.allclose(again, 4 * first, rtol=1e-5, atol=1e-5)
    sae.load_state_dict(create_sae(SAEConfig(d_in=16, n_latents=40, k=4)).state_dict())
    w = sae.W_dec.detach()
    assert torch.allclose(sae.decoder_gram(), w @ w.T, atol=1e-6)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_pursuit_on_cuda_matches_cpu(arxiv_trained):
    sae = arxiv_trained.load_sae()
    x = torch.from_numpy(np.asarray(arxiv_trained.embeddings[:1000], dtype=np.float32))
    with torch.no_grad():
        cpu = sae.encode_sparse(x)
        gpu = sae.to("cuda").encode_sparse(x.cuda())
    same, diff = agreement((gpu[0].cpu(), gpu[1].cpu()), cpu)
    assert same >= 0.999 and diff <= 1e-4, (same, diff)
