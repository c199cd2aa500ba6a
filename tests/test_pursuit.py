"""The batched Cholesky pursuit (compiled per-vector loop on CPU, tensor rounds elsewhere) gives the codes of the
first (re-solving) pursuit, on real Cranfield vectors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from embedsae.sae import SAEConfig, create_sae, pursuit_kernel
from embedsae.sae import pursuit as pursuit_mod

from .pursuit_reference import agreement, reference_pursuit


@pytest.fixture(scope="module")
def cran_sae(cranfield_ws, tmp_path_factory):
    """An SAE (k = 32, 3,072 latents) trained briefly on Cranfield's 1,400 abstracts, and their vectors."""
    from embedsae.sae.trainer import TrainConfig, train_on_array

    x = np.asarray(cranfield_ws.embeddings, dtype=np.float32)
    torch.manual_seed(0)
    sae = create_sae(SAEConfig(d_in=x.shape[1], n_latents=3072, k=32))
    sae, _, _ = train_on_array(sae, x, TrainConfig(epochs=8))
    return sae.cpu().eval(), torch.from_numpy(x)


def _reference_codes(sae, x: torch.Tensor, k: int):
    cand = sae.pre_activations(x).topk(sae.cfg.pursuit * k, dim=1, sorted=False).indices
    return reference_pursuit(sae.W_dec.detach(), sae.b_pre.detach(), x, cand, k)


@pytest.mark.parametrize("k", [32, 64])
def test_pursuit_matches_the_first_implementation(cran_sae, k):
    sae, x = cran_sae
    with torch.no_grad():
        new = sae.encode_sparse(x, k)
        ref = _reference_codes(sae, x, k)
    same, diff = agreement(new, ref)
    assert same >= 0.999 and diff <= 1e-4, (k, same, diff)
    assert (new.values >= 0).all() and (new.values[:, :-1] >= new.values[:, 1:]).all()


def test_pursuit_without_the_full_gram_gives_the_same_codes(cran_sae, monkeypatch):
    sae, x = cran_sae
    x = x[:300]
    with torch.no_grad():
        with_gram = sae.encode_sparse(x)
        monkeypatch.setattr(pursuit_mod, "GRAM_MAX_BYTES", 0)
        sae._gram_cache = None
        assert sae.decoder_gram() is None
        without = sae.encode_sparse(x)
    sae._gram_cache = None
    same, diff = agreement(without, with_gram)
    assert same >= 0.99 and diff <= 1e-4, (same, diff)


@pytest.mark.parametrize("threads", [1, 2])
def test_compiled_rounds_give_the_tensor_rounds_codes(cran_sae, monkeypatch, threads):
    assert pursuit_kernel.available(), "numba is a dependency: the compiled rounds must be available on CPU"
    sae, x = cran_sae
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with torch.no_grad():
            compiled = sae.encode_sparse(x, 48)
            monkeypatch.setattr(pursuit_kernel, "available", lambda: False)
            tensor = sae.encode_sparse(x, 48)
    finally:
        torch.set_num_threads(before)
    same, diff = agreement(compiled, tensor)
    assert same >= 0.999 and diff <= 1e-4, (threads, same, diff)
    assert (compiled.values >= 0).all() and (compiled.values[:, :-1] >= compiled.values[:, 1:]).all()


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
def test_pursuit_on_cuda_matches_cpu(cran_sae):
    import copy

    sae, x = cran_sae
    with torch.no_grad():
        cpu = sae.encode_sparse(x)
        gpu = copy.deepcopy(sae).to("cuda").encode_sparse(x.cuda())
    same, diff = agreement((gpu[0].cpu(), gpu[1].cpu()), cpu)
    assert same >= 0.999 and diff <= 1e-4, (same, diff)
