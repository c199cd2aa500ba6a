"""SAE architectures: the shared interface, the seed recipe's invariants, and save -> load."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from embedsae.errors import InputError, WorkspaceError
from embedsae.sae import ARCHITECTURES, SAEConfig, create_sae, load_sae


@pytest.fixture
def x() -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return torch.randn(64, 48, generator=g)


@pytest.mark.parametrize("arch", sorted(ARCHITECTURES))
def test_interface(arch, x):
    sae = create_sae(SAEConfig(d_in=48, n_latents=192, k=8, architecture=arch))
    code = sae.encode_sparse(x)
    assert code.indices.shape == code.values.shape
    assert (code.values >= 0).all()
    z = sae.encode(x)
    assert z.shape == (64, 192)
    # decode of the dense code equals the sparse gather-sum decoder
    torch.testing.assert_close(sae.decode(sae.encode(x, k=8)), sae.decode_sparse(*sae.encode_sparse(x, k=8)))
    out = sae.training_forward(x, dead=torch.zeros(192, dtype=torch.bool))
    assert out.x_hat.shape == x.shape and torch.isfinite(out.loss)
    out.loss.backward()
    assert sae.W_enc.grad is not None and sae.W_dec.grad is not None


def test_topk_keeps_exactly_k_and_decodes_at_another_k(x):
    sae = create_sae(SAEConfig(d_in=48, n_latents=192, k=8))
    sae.init_from_data(x)
    code = sae.encode_sparse(x)
    assert code.indices.shape == (64, 8)
    assert ((sae.encode(x) > 0).sum(1) <= 8).all()
    err8 = (sae.reconstruct(x) - x).pow(2).sum()
    err32 = (sae.reconstruct(x, k=32) - x).pow(2).sum()
    assert sae.encode_sparse(x, k=32).indices.shape == (64, 32)
    assert err32 < err8


def test_seed_init_tied_unit_norm_and_median(x):
    sae = create_sae(SAEConfig(d_in=48, n_latents=192, k=8))
    torch.testing.assert_close(sae.W_enc, sae.W_dec)
    torch.testing.assert_close(sae.W_dec.norm(dim=1), torch.ones(192))
    sae.init_from_data(x)
    torch.testing.assert_close(sae.b_pre.data, x.median(dim=0).values)


def test_data_init_starts_each_latent_at_a_different_sample(x):
    """Every latent starts at its own data point (centred, unit norm, tied), distinct even when points repeat."""
    sae = create_sae(SAEConfig(d_in=48, n_latents=48, k=8))
    sae.init_from_data(x, seed=3)
    torch.testing.assert_close(sae.W_enc, sae.W_dec)
    torch.testing.assert_close(sae.W_dec.norm(dim=1), torch.ones(48))
    centred = x - sae.b_pre
    cos = sae.W_dec @ (centred / centred.norm(dim=1, keepdim=True)).T  # latents x samples
    best = cos.max(dim=1)
    assert best.values.min() > 0.98  # a light jitter only
    assert len(set(best.indices.tolist())) == 48  # 48 latents, 64 samples: all different points
    # the same seed gives the same start, another seed another one
    again = create_sae(SAEConfig(d_in=48, n_latents=48, k=8))
    again.init_from_data(x, seed=3)
    torch.testing.assert_close(again.W_dec, sae.W_dec)
    again.init_from_data(x, seed=4)
    assert not torch.allclose(again.W_dec, sae.W_dec)
    # more latents than samples: every sample is used, and repeated points still give different rows
    big = create_sae(SAEConfig(d_in=48, n_latents=192, k=8))
    big.init_from_data(x)
    owner = (big.W_dec @ centred.T).argmax(dim=1)
    assert set(owner.tolist()) == set(range(64))
    gram = big.W_dec @ big.W_dec.T
    assert (gram - torch.eye(192)).max() < 0.999


def test_random_init_leaves_the_rows_random(x):
    sae = create_sae(SAEConfig(d_in=48, n_latents=192, k=8))
    before = sae.W_dec.detach().clone()
    sae.init_from_data(x, rows=False)
    torch.testing.assert_close(sae.W_dec.data, before)


def test_unknown_init_is_refused(x):
    from embedsae.sae.trainer import TrainConfig, train_on_array

    sae = create_sae(SAEConfig(d_in=48, n_latents=96, k=8))
    with pytest.raises(InputError, match="'init' is 'kmeans'; use one of: auto, data, random"):
        train_on_array(sae, x.numpy(), TrainConfig(init="kmeans", epochs=1))


def test_gradient_projection_removes_the_parallel_part(x):
    sae = create_sae(SAEConfig(d_in=48, n_latents=192, k=8))
    sae.training_forward(x).loss.backward()
    sae.remove_parallel_gradient()
    parallel = (sae.W_dec.grad * sae.W_dec).sum(1)
    assert parallel.abs().max() < 1e-6


def test_sparse_training_gradients_match_dense_autograd(x):
    """The gather-based training path gives the same gradients as a plain dense top-k forward."""
    torch.manual_seed(1)
    sae = create_sae(SAEConfig(d_in=48, n_latents=192, k=8))
    sae.init_from_data(x)
    sae.training_forward(x).loss.backward()  # no dead latents given: no aux term
    fast = {n: p.grad.clone() for n, p in sae.named_parameters()}
    sae.zero_grad()
    pre = sae.pre_activations(x)
    top = pre.topk(8, dim=1)
    z = torch.zeros_like(pre).scatter(1, top.indices, torch.relu(top.values))
    x_hat = z @ sae.W_dec + sae.b_pre
    loss = (x_hat - x).pow(2).sum() / (x - x.mean(0)).pow(2).sum()
    loss.backward()
    for n, p in sae.named_parameters():
        torch.testing.assert_close(fast[n], p.grad, rtol=1e-4, atol=1e-6, msg=f"gradient of {n}")


def test_aux_loss_only_uses_dead_latents(x):
    sae = create_sae(SAEConfig(d_in=48, n_latents=192, k=8))
    dead = torch.zeros(192, dtype=torch.bool)
    dead[:50] = True
    out = sae.training_forward(x, dead=dead)
    out.loss.backward()
    # live latents that never fire get no encoder gradient from the aux term
    alive_fired = torch.zeros(192, dtype=torch.bool)
    alive_fired[out.code.indices.flatten()] = True
    untouched = ~dead & ~alive_fired
    assert sae.W_enc.grad[untouched].abs().max() == 0
    assert sae.W_enc.grad[dead].abs().sum() > 0


@pytest.mark.parametrize("arch", sorted(ARCHITECTURES))
def test_save_load_bit_exact(arch, x, tmp_path):
    sae = create_sae(SAEConfig(d_in=48, n_latents=192, k=8, architecture=arch, model_id="m"))
    sae.init_from_data(x)
    sae.save(tmp_path / "s")
    loaded = load_sae(tmp_path / "s")
    assert loaded.cfg == sae.cfg
    for (n, a), (_, b) in zip(sae.state_dict().items(), loaded.state_dict().items()):
        assert torch.equal(a, b), n
    assert torch.equal(sae.reconstruct(x), loaded.reconstruct(x))
    assert not any(p.name.endswith(".tmp") for p in (tmp_path / "s").iterdir())


def test_bad_config_and_input():
    with pytest.raises(InputError, match="k must be between"):
        SAEConfig(d_in=8, n_latents=4, k=5)
    with pytest.raises(InputError, match="unknown SAE architecture"):
        SAEConfig(d_in=8, n_latents=16, k=2, architecture="gated")
    sae = create_sae(SAEConfig(d_in=8, n_latents=16, k=2))
    with pytest.raises(InputError, match="dimension 8"):
        sae.encode_sparse(torch.zeros(3, 5))


def test_load_missing(tmp_path):
    with pytest.raises(WorkspaceError, match="no saved SAE"):
        load_sae(tmp_path)


def test_batchtopk_average_l0_is_k(x):
    torch.manual_seed(0)
    sae = create_sae(SAEConfig(d_in=48, n_latents=192, k=8, architecture="batchtopk"))
    sae.init_from_data(x)
    out = sae.training_forward(x)
    l0 = (out.code.values > 0).sum(1).float().mean().item()
    assert 7.0 <= l0 <= 8.0
    assert np.isfinite(out.loss.item())


@pytest.mark.parametrize("add_bias", [True, False])
def test_sparse_kernel_matches_autograd(x, add_bias):
    """The CPU sparse backward gives the gradients autograd gives through a dense encoder."""
    from embedsae.sae.kernels import eager_codec, sparse_codec

    torch.manual_seed(2)
    sae = create_sae(SAEConfig(d_in=48, n_latents=192, k=8))
    sae.init_from_data(x)
    keep = torch.rand(64, 12) > 0.3
    grads = []
    for fast in (True, False):
        sae.zero_grad()
        pre = sae.pre_activations(x)
        idx = pre.detach().topk(12, dim=1).indices
        if fast:
            pre_sel = pre.detach().gather(1, idx).masked_fill(~keep, -1.0)
            x_hat, _ = sparse_codec(x, sae.W_enc, sae.b_lat, sae.W_dec, sae.b_pre, idx, pre_sel, add_bias)
        else:
            x_hat, _ = eager_codec(sae.W_dec, sae.b_pre, idx, pre.gather(1, idx).masked_fill(~keep, -1.0), add_bias)
        (x_hat - x).pow(2).sum().backward()
        grads.append({n: p.grad.clone() for n, p in sae.named_parameters()})
    for n in grads[0]:
        torch.testing.assert_close(grads[0][n], grads[1][n], rtol=1e-4, atol=1e-5, msg=f"gradient of {n}")


@pytest.mark.parametrize("add_bias", [True, False])
def test_gpu_training_functions_have_exact_gradients(add_bias):
    """The lean encoder and the dense decode used for GPU training pass autograd's numerical gradient check."""
    from embedsae.sae.kernels import dense_codec, encoder_pre

    g = torch.Generator().manual_seed(3)
    W = torch.randn(40, 12, dtype=torch.float64, generator=g, requires_grad=True)
    b_lat = torch.randn(40, dtype=torch.float64, generator=g, requires_grad=True)
    b_pre = torch.randn(12, dtype=torch.float64, generator=g, requires_grad=True)
    x = torch.randn(6, 12, dtype=torch.float64, generator=g)
    idx = torch.stack([torch.randperm(40, generator=g)[:5] for _ in range(6)])
    pre_sel = torch.randn(6, 5, dtype=torch.float64, generator=g, requires_grad=True)
    assert torch.autograd.gradcheck(lambda W, bl, bp: encoder_pre(x, W, bl, bp), (W, b_lat, b_pre))
    assert torch.autograd.gradcheck(lambda W, bp, ps: dense_codec(W, bp, idx, ps, add_bias)[0], (W, b_pre, pre_sel))


_FUSED_CHECK = """
import copy, torch
from embedsae.sae import SAEConfig, create_sae
from embedsae.sae.fused_update import fused_update

torch.manual_seed(4)
sae = create_sae(SAEConfig(d_in=100, n_latents=64, k=8))  # d not a power of two: masked columns
ref = copy.deepcopy(sae)
opt, opt_ref = torch.optim.Adam(sae.parameters(), lr=1e-2), torch.optim.Adam(ref.parameters(), lr=1e-2)
for step in range(4):
    x = torch.randn(32, 100)
    clip = 0.05 if step % 2 else 10.0  # clipping active on every other step
    for m, o in ((sae, opt), (ref, opt_ref)):
        o.zero_grad()
        m.training_forward(x).loss.backward()
    fused_update(sae, opt, clip)
    ref.remove_parallel_gradient()
    torch.nn.utils.clip_grad_norm_(ref.parameters(), clip)
    opt_ref.step()
    ref.normalise_decoder()
for (name, p), q in zip(sae.named_parameters(), ref.parameters()):
    torch.testing.assert_close(p, q, rtol=1e-4, atol=1e-6, msg=f"parameter {name}")
assert float(opt.state[sae.W_enc]["step"]) == 4
print("fused update matches")
"""


def test_fused_update_matches_torch():
    """The Triton update (run by Triton's CPU interpreter) equals projection + clipping + Adam + renormalisation."""
    import os
    import subprocess
    import sys

    pytest.importorskip("triton", reason="Triton is not installed (it ships with CUDA builds of PyTorch)")
    # a fresh interpreter: TRITON_INTERPRET must be set before anything imports Triton
    env = {**os.environ, "TRITON_INTERPRET": "1", "CUDA_VISIBLE_DEVICES": ""}
    done = subprocess.run([sys.executable, "-c", _FUSED_CHECK], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and "fused update matches" in done.stdout, done.stderr[-3000:]


def test_compiled_cpu_update_matches_torch():
    """The compiled CPU update (two passes over the weights) equals projection + clipping + Adam + renormalisation,
    step after step, with clipping on and off, and keeps the Adam state where torch's Adam keeps it."""
    import copy

    from embedsae.sae import cpu_update

    if not cpu_update.available():
        pytest.skip("numba is not available: the trainer uses the PyTorch update")
    torch.manual_seed(4)
    sae = create_sae(SAEConfig(d_in=100, n_latents=64, k=8))
    ref = copy.deepcopy(sae)
    opt, opt_ref = torch.optim.Adam(sae.parameters(), lr=1e-2), torch.optim.Adam(ref.parameters(), lr=1e-2)
    for step in range(6):
        x, dead = torch.randn(32, 100), torch.rand(64) < 0.3
        clip = 0.05 if step % 2 else 10.0  # clipping active on every other step
        for m, o in ((sae, opt), (ref, opt_ref)):
            o.zero_grad()
            m.training_forward(x, dead=dead).loss.backward()
        cpu_update.cpu_update(sae, opt, clip)
        ref.remove_parallel_gradient()
        torch.nn.utils.clip_grad_norm_(ref.parameters(), clip)
        opt_ref.step()
        ref.normalise_decoder()
    for (name, p), q in zip(sae.named_parameters(), ref.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-4, atol=1e-6, msg=f"parameter {name}")
        torch.testing.assert_close(opt.state[p]["exp_avg_sq"], opt_ref.state[q]["exp_avg_sq"], rtol=1e-4, atol=1e-9)
    assert float(opt.state[sae.W_enc]["step"]) == 6
    assert (sae.W_dec.norm(dim=1) - 1).abs().max() < 1e-5


# ---------------------------------------------------------------------- pursuit encoding
def _planted(n_rows: int = 200, d: int = 48, n: int = 192, k: int = 4):
    """Vectors that are exact non-negative combinations of k rows of a random unit dictionary."""
    g = torch.Generator().manual_seed(7)
    dictionary = torch.randn(n, d, generator=g)
    dictionary /= dictionary.norm(dim=1, keepdim=True)
    support = torch.stack([torch.randperm(n, generator=g)[:k] for _ in range(n_rows)])
    values = 0.5 + torch.rand(n_rows, k, generator=g)
    x = torch.zeros(n_rows, n).scatter_(1, support, values) @ dictionary
    return x, dictionary


def test_pursuit_recovers_planted_codes_the_plain_encoder_misses():
    x, dictionary = _planted()
    errors = {}
    for pursuit in (0, 8):
        sae = create_sae(SAEConfig(d_in=48, n_latents=192, k=4, pursuit=pursuit))
        with torch.no_grad():  # tied encoder on the true dictionary, no biases
            sae.W_dec.copy_(dictionary)
            sae.W_enc.copy_(dictionary)
        errors[pursuit] = ((sae.reconstruct(x) - x).pow(2).sum() / (x - x.mean(0)).pow(2).sum()).item()
    assert errors[8] < 0.02 < errors[0], errors


def test_pursuit_codes_look_like_topk_codes(x):
    sae = create_sae(SAEConfig(d_in=48, n_latents=192, k=8, pursuit=3))
    sae.init_from_data(x)
    code = sae.encode_sparse(x)
    assert code.indices.shape == code.values.shape == (64, 8)
    assert (code.values >= 0).all()
    assert (code.values[:, :-1] >= code.values[:, 1:]).all(), "values sorted largest first"
    assert all(len(set(row.tolist())) == 8 for row in code.indices), "distinct latents per row"
    candidates = sae.pre_activations(x).topk(24, dim=1).indices
    assert all(set(a.tolist()) <= set(c.tolist()) for a, c in zip(code.indices, candidates))
    # the values are the non-negative least-squares-style refit: no worse than the encoder's own values
    plain = create_sae(SAEConfig(d_in=48, n_latents=192, k=8, pursuit=0))
    plain.load_state_dict(sae.state_dict())
    assert (sae.reconstruct(x) - x).pow(2).sum() < (plain.reconstruct(x) - x).pow(2).sum()
    assert sae.encode_sparse(x[:0]).indices.shape == (0, 8)


def test_pursuit_setting_is_saved_and_old_files_load_plain(x, tmp_path):
    import json

    assert SAEConfig(d_in=8, n_latents=16, k=2).pursuit == 4
    assert SAEConfig(d_in=8, n_latents=16, k=2, architecture="relu").pursuit == 0
    with pytest.raises(InputError, match="pursuit"):
        SAEConfig(d_in=8, n_latents=16, k=2, pursuit=-1)
    sae = create_sae(SAEConfig(d_in=48, n_latents=192, k=8, pursuit=2))
    sae.save(tmp_path / "s")
    assert load_sae(tmp_path / "s").cfg.pursuit == 2
    cfg = json.loads((tmp_path / "s" / "cfg.json").read_text())
    del cfg["pursuit"]  # as written before the option existed
    (tmp_path / "s" / "cfg.json").write_text(json.dumps(cfg))
    old = load_sae(tmp_path / "s")
    assert old.cfg.pursuit == 0
    top = old.pre_activations(x).topk(8, dim=1)
    assert torch.equal(old.encode_sparse(x).indices, top.indices)
