"""Importing and exporting SAEs: the paper's saerch .pth files (checked on the Cranfield abstracts against an independent
re-implementation of saerch's FastAutoencoder), SAELens and sparsify folders both ways (and, where the
packages are installed, loaded by the real libraries), model cards, the CLI."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import embedsae
from embedsae.cli import main
from embedsae.errors import InputError, ModelMismatchError, WorkspaceError
from embedsae.interop import detect_format, download_from_hub, export_sae, import_sae, read_sae

from .embedding_server import EmbeddingServer


class FastAutoencoderRef(nn.Module):
    """saerch's FastAutoencoder, re-implemented from its description (encoder/decoder as nn.Linear, no bias)."""

    def __init__(self, n_dirs: int, d_model: int, k: int, auxk: int, multik: int, dead_steps_threshold: int = 266):
        super().__init__()
        self.n_dirs, self.d_model, self.k, self.auxk, self.multik = n_dirs, d_model, k, auxk, multik
        self.pre_bias = nn.Parameter(torch.zeros(d_model))
        self.encoder = nn.Linear(d_model, n_dirs, bias=False)
        self.latent_bias = nn.Parameter(torch.zeros(n_dirs))
        self.decoder = nn.Linear(n_dirs, d_model, bias=False)
        self.register_buffer("stats_last_nonzero", torch.zeros(n_dirs, dtype=torch.long))

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        pre = self.encoder(x - self.pre_bias) + self.latent_bias
        vals, inds = torch.topk(pre, self.k, dim=-1)
        return torch.zeros_like(pre).scatter_(-1, inds, F.relu(vals))

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z) + self.pre_bias


def make_ref(vectors: np.ndarray, n: int, k: int, auxk: int, seed: int = 0) -> FastAutoencoderRef:
    """A reference SAE whose latents start at data points (so features mean something), decoder columns unit norm."""
    g = torch.Generator().manual_seed(seed)
    x = torch.from_numpy(np.array(vectors, np.float32))
    ref = FastAutoencoderRef(n, x.shape[1], k, auxk, 4 * k)
    with torch.no_grad():
        ref.pre_bias.copy_(x.median(0).values)
        rows = x[torch.randperm(len(x), generator=g)[:n]] - ref.pre_bias
        rows = rows + 0.05 * torch.randn(rows.shape, generator=g)
        rows = rows / rows.norm(dim=1, keepdim=True)
        ref.encoder.weight.copy_(rows)
        ref.decoder.weight.copy_(rows.T)
        ref.latent_bias.copy_(0.01 * torch.randn(n, generator=g))
    return ref


def train_ref(ref: FastAutoencoderRef, vectors: np.ndarray, steps: int = 300, seed: int = 0) -> FastAutoencoderRef:
    """A short training of the reference (MSE, Adam, unit-norm decoder columns), so its codes are a real SAE's."""
    g = torch.Generator().manual_seed(seed)
    x = torch.from_numpy(np.array(vectors, np.float32))
    opt = torch.optim.Adam(ref.parameters(), lr=1e-3)
    for _ in range(steps):
        batch = x[torch.randint(len(x), (256,), generator=g)]
        loss = (ref.decode(ref.encode(batch)) - batch).pow(2).sum(1).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        with torch.no_grad():
            ref.decoder.weight.div_(ref.decoder.weight.norm(dim=0, keepdim=True))
    return ref.eval()


@pytest.fixture(scope="module")
def imported(cranfield_ws, tmp_path_factory):
    """A copy of the Cranfield workspace with a saerch file imported (k=16, 768 latents, aux-k 32)."""
    import shutil

    from embedsae.workspace import Workspace

    root = tmp_path_factory.mktemp("interop")
    shutil.copytree(cranfield_ws.path, root / "ws")
    ws = Workspace.open(root / "ws")
    ref = train_ref(make_ref(ws.embeddings, n=768, k=16, auxk=32), ws.embeddings)
    path = root / "csLG_16_768_32.pth"
    torch.save(ref.state_dict(), path)
    metrics = import_sae(ws, path)
    return ws, ref, path, metrics


def test_saerch_import_matches_reference(imported):
    ws, ref, path, metrics = imported
    name = "csLG_16_768_32"
    assert ws.resolve_sae() == name and detect_format(path) == "saerch"
    sae = ws.load_sae(name)
    assert (sae.cfg.k, sae.cfg.n_latents, sae.cfg.aux_k, sae.cfg.pursuit) == (16, 768, 32, 0)
    x = torch.from_numpy(np.array(ws.embeddings))
    with torch.no_grad():
        ours, theirs = sae.encode(x), ref.encode(x)
        diff = (ours - theirs).abs().max().item()
        recon = (sae.decode(ours) - ref.decode(theirs)).abs().max().item()
    print(f"saerch import: max code difference {diff:.3g}, max reconstruction difference {recon:.3g} "
          f"over {len(x)} Cranfield vectors")
    assert diff < 1e-5 and recon < 1e-5
    assert torch.equal(ours > 0, theirs > 0)  # the same latents fire
    # evaluated like a trained SAE
    saved = json.loads((ws.sae_dir(name) / "metrics.json").read_text())
    assert saved["k"] == 16 and saved["n_latents"] == 768 and saved["sae"] == name
    ref_nmse = (ref.decode(theirs) - x).pow(2).sum().item() / (x - x.mean(0)).pow(2).sum().item()
    assert metrics["nmse"] == saved["nmse"] and abs(saved["nmse_all"] - ref_nmse) < 1e-4 and ref_nmse < 0.6
    assert saved["l0"] <= 16 and saved["dead_fraction"] < 0.5
    assert ws.manifest["stages"][f"import:{name}"]["settings"]["format"] == "saerch"
    assert sae.cfg.extra["imported"]["auxk"] == 32 and sae.cfg.model_id == ws.model_id


def test_imported_sae_is_usable_by_interpret_index_search(imported):
    from embedsae.interpret import feature_labels
    from embedsae.interpret.stage import interpret
    from embedsae.search.index import build_index

    ws, *_ = imported
    s = interpret(ws, max_features=20)
    assert s["interpreted"] == 20 and s["failed"] == 0 and len(feature_labels(ws)) == 20
    build_index(ws)
    res = embedsae.open(ws.path).search("heat transfer in the boundary layer", mode="concept", top=5)
    assert len(res.hits) == 5 and res.hits[0].score > 0


def test_saerch_name_k_and_shape_errors(cranfield_ws, tmp_path, copy_ws):
    ref = make_ref(cranfield_ws.embeddings[:500], n=128, k=8, auxk=16)
    plain = tmp_path / "mysae.pth"
    torch.save(ref.state_dict(), plain)
    with pytest.raises(InputError, match="cannot tell k.*set `k`"):
        read_sae(plain)
    assert read_sae(plain, k=8).sae.cfg.k == 8
    wrong = tmp_path / "csLG_8_256_16.pth"
    torch.save(ref.state_dict(), wrong)
    with pytest.raises(InputError, match="name says 256 latents but the file holds 128"):
        read_sae(wrong)
    bad = tmp_path / "x_8_128_16.pth"
    torch.save({"encoder.weight": ref.encoder.weight.data}, bad)
    with pytest.raises(InputError, match="lacks decoder.weight"):
        read_sae(bad)
    # the paper's 1536-d text-embedding-3-small SAEs do not fit a 384-d MiniLM workspace
    paper = tmp_path / "astroPH_16_256_32.pth"
    torch.save(FastAutoencoderRef(256, 1536, 16, 32, 64).state_dict(), paper)
    with pytest.raises(ModelMismatchError, match="takes 1536-d vectors.*384-d.*text-embedding-3-small"):
        import_sae(cranfield_ws, paper)


def test_paper_sae_fits_an_openai_workspace_only(tmp_path, monkeypatch, small_corpus):
    """A 1536-d file is taken as text-embedding-3-small: it fits a workspace embedded with that model, not
    another 1536-d one unless `trained_on` vouches for it."""
    from embedsae import pipeline

    monkeypatch.setenv("EMBEDSAE_CACHE_DIR", str(tmp_path / "cache"))
    ref = FastAutoencoderRef(256, 1536, 16, 32, 64)
    torch.nn.init.normal_(ref.latent_bias, std=0.01)
    path = tmp_path / "astroPH_16_256_32.pth"
    torch.save(ref.state_dict(), path)
    with EmbeddingServer(dim=1536) as srv:
        ws = pipeline.embed(small_corpus, tmp_path / "openai", model="openai:text-embedding-3-small",
                            embedder_options={"base_url": srv.base_url})
        import_sae(ws, path, evaluate=False)
        with torch.no_grad():
            x = torch.from_numpy(np.array(ws.embeddings))
            assert torch.allclose(ws.load_sae().encode(x), ref.encode(x), atol=1e-6)
    other = pipeline.embed(small_corpus, tmp_path / "pre", vectors=np.array(ws.embeddings) + 0.01)
    with pytest.raises(ModelMismatchError, match="text-embedding-3-small.*set `trained_on`"):
        import_sae(other, path, evaluate=False)
    import_sae(other, path, trained_on=other.model_id, evaluate=False)
    with pytest.raises(WorkspaceError, match="already has an SAE named"):
        import_sae(other, path, trained_on=other.model_id, evaluate=False)


@pytest.mark.parametrize("fmt", ["saelens", "sparsify", "embedsae"])
def test_export_import_round_trip_is_exact(imported, tmp_path, fmt):
    ws, *_ = imported
    name = "csLG_16_768_32"
    out = export_sae(ws, tmp_path / fmt, fmt, sae_name=name)
    assert detect_format(out) == fmt
    back = read_sae(out)
    orig = ws.load_sae(name)
    for key, value in orig.state_dict().items():
        assert torch.equal(back.sae.state_dict()[key], value), key  # bit for bit
    x = torch.from_numpy(np.array(ws.embeddings))
    with torch.no_grad():
        diff = (back.sae.encode(x) - orig.encode(x)).abs().max().item()
    print(f"{fmt} round trip: max code difference {diff}")
    assert diff == 0.0 and back.sae.cfg.k == 16 and back.model_id == ws.model_id
    card = (out / "README.md").read_text()
    m = json.loads((ws.sae_dir(name) / "metrics.json").read_text())
    assert "| k | n | NMSE | log density | mean activation | dead % |" in card
    assert f"| 16 | 768 | {m['nmse']:.4f} | {m['log_feature_density']:.3f} | {m['act_mean']:.4f} |" in card
    assert card.startswith("---\nlibrary_name:")


def test_saelens_and_sparsify_layouts(imported, tmp_path):
    from safetensors.torch import load_file

    ws, ref, *_ = imported
    name = "csLG_16_768_32"
    lens = export_sae(ws, tmp_path / "lens", "saelens", sae_name=name)
    cfg = json.loads((lens / "cfg.json").read_text())
    assert {"d_in": 384, "d_sae": 768, "k": 16, "architecture": "topk", "apply_b_dec_to_input": True,
            "normalize_activations": "none", "dtype": "float32"}.items() <= cfg.items()
    assert cfg["metadata"]["model_name"] == ws.model_id
    w = load_file(str(lens / "sae_weights.safetensors"))
    assert w["W_enc"].shape == (384, 768) and w["W_dec"].shape == (768, 384)
    assert torch.equal(w["W_enc"], ref.encoder.weight.data.T) and torch.equal(w["b_dec"], ref.pre_bias.data)
    sparsity = load_file(str(lens / "sparsity.safetensors"))["sparsity"]
    x = torch.from_numpy(np.array(ws.embeddings))
    with torch.no_grad():
        density = (ref.encode(x) > 0).float().mean(0)
    expect = torch.log10(density.clamp_min(1e-10))
    assert sparsity.shape == (768,) and torch.allclose(sparsity, expect, atol=1e-4)

    sp = export_sae(ws, tmp_path / "sp", "sparsify", sae_name=name)
    cfg = json.loads((sp / "cfg.json").read_text())
    assert {"activation": "topk", "num_latents": 768, "k": 16, "d_in": 384, "skip_connection": False}.items() <= cfg.items()
    w = load_file(str(sp / "sae.safetensors"))
    assert torch.equal(w["encoder.weight"], ref.encoder.weight.data) and torch.equal(w["W_dec"], ref.decoder.weight.data.T)
    assert torch.equal(w["encoder.bias"], ref.latent_bias.data)


def test_real_sparsify_library_reads_our_export(imported, tmp_path):
    sparsify = pytest.importorskip("sparsify", reason="eai-sparsify is not installed (pip install eai-sparsify)")
    ws, ref, *_ = imported
    out = export_sae(ws, tmp_path / "sp", "sparsify", sae_name="csLG_16_768_32")
    coder = sparsify.SparseCoder.load_from_disk(out)
    x = torch.from_numpy(np.array(ws.embeddings))
    with torch.no_grad():
        enc = coder.encode(x)
        z = torch.zeros(len(x), 768).scatter_(1, enc.top_indices, enc.top_acts)
        diff = (z - ref.encode(x)).abs().max().item()
    print(f"sparsify library: max code difference {diff:.3g}")
    assert diff < 1e-5


def test_real_saelens_library_reads_our_export(imported, tmp_path):
    sae_lens = pytest.importorskip("sae_lens", reason="sae-lens is not installed (pip install sae-lens)")
    ws, ref, *_ = imported
    out = export_sae(ws, tmp_path / "lens", "saelens", sae_name="csLG_16_768_32")
    sae = sae_lens.SAE.load_from_disk(str(out))
    x = torch.from_numpy(np.array(ws.embeddings))
    with torch.no_grad():
        codes = sae.encode(x)
        diff = (codes - ref.encode(x)).abs().max().item()
        recon = (sae.decode(codes) - ref.decode(ref.encode(x))).abs().max().item()
    print(f"SAELens library: max code difference {diff:.3g}, reconstruction {recon:.3g}")
    assert diff < 1e-5 and recon < 1e-5


def test_pursuit_sae_keeps_its_encoder_as_embedsae_and_warns_otherwise(imported, tmp_path, caplog):
    ws, *_ = imported
    out = export_sae(ws, tmp_path / "es", "embedsae", sae_name="csLG_16_768_32")
    cfg = json.loads((out / "cfg.json").read_text())
    cfg["pursuit"] = 4
    (out / "cfg.json").write_text(json.dumps(cfg))
    got = read_sae(out)
    assert got.sae.cfg.pursuit == 4
    with caplog.at_level(logging.WARNING, logger="embedsae"):
        from embedsae.interop.formats import write_saelens

        write_saelens(got.sae, tmp_path / "lens", model_id=None)
    assert "matching pursuit" in caplog.text
    assert read_sae(tmp_path / "lens").sae.cfg.pursuit == 0


def test_cli_import_and_export(imported, tmp_path, capsys, copy_ws):
    ws, ref, path, _ = imported
    target = copy_ws(ws)
    plain = tmp_path / "nameless.pth"
    plain.write_bytes(path.read_bytes())
    assert main(["import-sae", str(plain), "--into", str(target.path)]) == 2
    assert "set --k" in capsys.readouterr().err
    assert main(["import-sae", str(plain), "--into", str(target.path), "--k", "16", "--name", "cli", "--json"]) == 0
    m = json.loads(capsys.readouterr().out)
    assert m["sae"] == "cli" and m["k"] == 16
    assert main(["export", str(target.path), "--sae", "cli", "--format", "sparsify", "-o", str(tmp_path / "sp")]) == 0
    assert "cfg.json" in capsys.readouterr().out
    assert main(["export", str(target.path), "--format", "sparsify", "-o", str(tmp_path / "sp")]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert main(["import-sae", str(tmp_path / "sp"), "--into", str(target.path), "--name", "back"]) == 0
    assert main(["import-sae", "--into", str(target.path)]) == 2


def test_hub_spec_errors_and_download():
    with pytest.raises(InputError, match="OWNER/REPO"):
        download_from_hub("just-a-name")
    pytest.skip("downloading from the Hugging Face hub needs network, which tests do not have; "
                "the hub path is `download_from_hub` (hf_hub_download / snapshot_download)")


def test_saelens_variants_and_refusals(tmp_path):
    """apply_b_dec_to_input = false folds exactly into the latent bias; non-top-k or normalising SAEs are refused."""
    from safetensors.torch import save_file

    g = torch.Generator().manual_seed(3)
    d, n, k = 24, 64, 5
    w = {"W_enc": torch.randn(d, n, generator=g), "b_enc": torch.randn(n, generator=g),
         "W_dec": torch.randn(n, d, generator=g), "b_dec": torch.randn(d, generator=g)}
    folder = tmp_path / "lens"
    folder.mkdir()
    save_file(w, str(folder / "sae_weights.safetensors"))
    cfg = {"architecture": "standard", "activation_fn": "topk", "activation_fn_kwargs": {"k": k}, "d_in": d,
           "d_sae": n, "apply_b_dec_to_input": False, "normalize_activations": "none", "model_name": "gpt2"}
    (folder / "cfg.json").write_text(json.dumps(cfg))
    got = read_sae(folder)
    x = torch.randn(50, d, generator=g)
    pre = x @ w["W_enc"] + w["b_enc"]  # SAELens without the b_dec subtraction
    top = pre.topk(k, dim=1)
    want = torch.zeros_like(pre).scatter_(1, top.indices, F.relu(top.values))
    with torch.no_grad():
        assert torch.allclose(got.sae.encode(x), want, atol=1e-5)
    assert got.model_id == "gpt2" and got.sae.cfg.k == k
    for change, message in (({"activation_fn": "relu"}, "only top-k"), ({"normalize_activations": "expected_average_only_in"}, "normalises")):
        (folder / "cfg.json").write_text(json.dumps({**cfg, **change}))
        with pytest.raises(InputError, match=message):
            read_sae(folder)
    with pytest.raises(InputError, match="holds no SAE"):
        detect_format(tmp_path)
