"""An SAE exported as a sentence-transformers SparseEncoder: loads from its folder and gives embedsae's codes."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from embedsae.errors import InputError
from embedsae.interop import export_sae, import_sae

st = pytest.importorskip("sentence_transformers", reason="sentence-transformers is not installed")
if not hasattr(st, "SparseEncoder"):
    pytest.skip("SparseEncoder needs sentence-transformers >= 5", allow_module_level=True)

N_TEXTS = 24


@pytest.fixture(scope="module")
def ws_with_sae(cranfield_ws, tmp_path_factory):
    """A copy of the Cranfield workspace with a plain top-k SAE (latents at data points) and the same SAE with pursuit."""
    import shutil

    from embedsae.sae import SAEConfig, TopKSAE
    from embedsae.workspace import Workspace

    root = tmp_path_factory.mktemp("st")
    shutil.copytree(cranfield_ws.path, root / "ws")
    ws = Workspace.open(root / "ws")
    x = torch.from_numpy(np.array(ws.embeddings))
    g = torch.Generator().manual_seed(1)
    sae = TopKSAE(SAEConfig(d_in=384, n_latents=512, k=16, pursuit=0, model_id=ws.model_id))
    sae.init_from_data(x[torch.randperm(len(x), generator=g)[:4096]], seed=1)
    with torch.no_grad():
        sae.b_lat.normal_(0, 0.01, generator=g)
    sae.save(root / "plain")
    sae.cfg.pursuit = 4
    sae.save(root / "pursuit")
    import_sae(ws, root / "plain", name="plain", evaluate=False)
    import_sae(ws, root / "pursuit", name="pursuit", evaluate=False)
    return ws


def _codes_after_reload(ws, name, out, **load):
    export_sae(ws, out, "sentence-transformers", sae_name=name)
    model = st.SparseEncoder(str(out), device="cpu", **load)
    texts = ws.corpus["text"].tolist()[:N_TEXTS]
    got = model.encode(texts, convert_to_tensor=True, convert_to_sparse_tensor=False).cpu()
    with torch.no_grad():
        want = ws.load_sae(name).encode(torch.from_numpy(ws.embedder().embed(texts)))
    return model, got, want


def test_plain_topk_uses_the_builtin_module(ws_with_sae, tmp_path):
    model, got, want = _codes_after_reload(ws_with_sae, "plain", tmp_path / "enc")
    modules = json.loads((tmp_path / "enc" / "modules.json").read_text())
    assert all(m["type"].startswith("sentence_transformers.") for m in modules)  # no trust_remote_code needed
    assert "SparseAutoEncoder" in modules[-1]["type"] and model.get_embedding_dimension() == 512
    diff = (got - want).abs().max().item()
    print(f"SparseEncoder (built-in SparseAutoEncoder): max code difference {diff:.3g} on {N_TEXTS} texts")
    assert got.shape == (N_TEXTS, 512) and diff < 1e-4
    assert torch.equal(got > 0, want > 0)
    assert "| k | n | NMSE |" not in (tmp_path / "enc" / "README.md").read_text()  # not evaluated: no table


def test_pursuit_uses_our_module(ws_with_sae, tmp_path):
    # our module class lies outside sentence_transformers.*: version 6 loads it only with trust_remote_code
    model, got, want = _codes_after_reload(ws_with_sae, "pursuit", tmp_path / "enc", trust_remote_code=True)
    assert "trust_remote_code=True" in (tmp_path / "enc" / "README.md").read_text()
    modules = json.loads((tmp_path / "enc" / "modules.json").read_text())
    assert modules[-1]["type"] == "embedsae.interop.st_encoder.EmbedSAEModule"
    diff = (got - want).abs().max().item()
    print(f"SparseEncoder (EmbedSAEModule, pursuit): max code difference {diff:.3g} on {N_TEXTS} texts")
    assert diff < 1e-4 and torch.equal(got > 0, want > 0)
    with torch.no_grad():
        plain = ws_with_sae.load_sae("plain").encode(torch.from_numpy(ws_with_sae.embedder().embed(
            ws_with_sae.corpus["text"].tolist()[:N_TEXTS])))
    assert not torch.equal(plain > 0, want > 0)  # pursuit codes really differ from plain top-k


def test_precomputed_workspace_cannot_export(tmp_path, small_corpus):
    from embedsae import pipeline

    ws = pipeline.embed(small_corpus, tmp_path / "ws", vectors=np.eye(3, 8, dtype=np.float32))
    from embedsae.sae import SAEConfig, TopKSAE

    TopKSAE(SAEConfig(d_in=8, n_latents=16, k=2, pursuit=0)).save(tmp_path / "s")
    import_sae(ws, tmp_path / "s", evaluate=False)
    with pytest.raises(InputError, match="embedding model"):
        export_sae(ws, tmp_path / "out", "sentence-transformers")
    assert not (tmp_path / "out").exists()
