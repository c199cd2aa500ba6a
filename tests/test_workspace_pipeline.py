"""Embedding into workspaces, bad vectors, model mismatches, atomic writes, training and evaluation."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from embedsae import pipeline
from embedsae.errors import InputError, ModelMismatchError, WorkspaceError
from embedsae.workspace import Workspace


def _table(n: int) -> pd.DataFrame:
    return pd.DataFrame({"id": [f"d{i}" for i in range(n)], "text": [f"document {i}" for i in range(n)]})


def _no_temp_files(folder) -> bool:
    return not [p for p in folder.rglob("*") if p.name.endswith(".tmp")]


def test_precomputed_vectors_roundtrip(tmp_path):
    vecs = np.random.default_rng(0).normal(size=(20, 16)).astype(np.float32)
    np.save(tmp_path / "v.npy", vecs)
    ws = pipeline.embed(_table(20), tmp_path / "ws", vectors=tmp_path / "v.npy")
    again = Workspace.open(tmp_path / "ws")
    assert again.model_id == "precomputed:v.npy" and again.dim == 16 and again.n_documents == 20
    assert isinstance(again.embeddings, np.memmap)
    np.testing.assert_array_equal(np.asarray(again.embeddings), vecs)
    assert list(again.corpus["id"]) == [f"d{i}" for i in range(20)]
    assert "embed" in ws.manifest["stages"] and ws.manifest["embedsae_version"]
    assert _no_temp_files(tmp_path / "ws")


def test_nan_rows_reported_by_id_and_nothing_written(tmp_path):
    vecs = np.ones((5, 4), np.float32)
    vecs[3, 1] = np.nan
    vecs[4, 0] = np.inf
    with pytest.raises(InputError, match=r"NaN or infinite values in 2 row\(s\) \(ids: d3, d4\)"):
        pipeline.embed(_table(5), tmp_path / "ws", vectors=vecs)
    assert not (tmp_path / "ws").exists() or not any((tmp_path / "ws").iterdir())


def test_vector_count_and_shape_checked(tmp_path):
    with pytest.raises(InputError, match="hold 4 rows but the corpus has 5 records"):
        pipeline.embed(_table(5), tmp_path / "ws", vectors=np.ones((4, 3), np.float32))
    np.save(tmp_path / "flat.npy", np.ones(5, np.float32))
    with pytest.raises(InputError, match="must be a 2-D array"):
        pipeline.embed(_table(5), tmp_path / "ws", vectors=tmp_path / "flat.npy")
    with pytest.raises(InputError, match="vectors file not found"):
        pipeline.embed(_table(5), tmp_path / "ws", vectors=tmp_path / "missing.npy")


def test_other_model_or_dimension_is_a_clear_error(tmp_path):
    pipeline.embed(_table(5), tmp_path / "ws", vectors=np.ones((5, 3), np.float32), model="model-a")
    with pytest.raises(ModelMismatchError, match="'model-a'.*'model-b'"):
        pipeline.embed(_table(5), tmp_path / "ws", vectors=np.ones((5, 3), np.float32), model="model-b")
    with pytest.raises(ModelMismatchError, match="holds 3-d vectors of 'model-a', not 4-d"):
        pipeline.embed(_table(5), tmp_path / "ws", vectors=np.ones((5, 4), np.float32), model="model-a")
    with pytest.raises(ModelMismatchError, match="embedded with model 'model-a', not 'other'"):
        Workspace.open(tmp_path / "ws", expect_model="other")
    with pytest.raises(ModelMismatchError, match="3-dimensional vectors, not 8"):
        Workspace.open(tmp_path / "ws", expect_dim=8)
    # --overwrite replaces it
    ws = pipeline.embed(_table(5), tmp_path / "ws", vectors=np.ones((5, 4), np.float32), model="model-b", overwrite=True)
    assert ws.model_id == "model-b" and ws.dim == 4


def test_not_a_workspace(tmp_path):
    with pytest.raises(WorkspaceError, match="not an embedsae workspace"):
        Workspace.open(tmp_path)
    ws = pipeline.embed(_table(5), tmp_path / "ws", vectors=np.ones((5, 3), np.float32))
    with pytest.raises(WorkspaceError, match="no trained SAE yet"):
        ws.resolve_sae()


def test_same_model_is_not_re_embedded(tmp_path, small_corpus, embedder):
    ws = pipeline.embed(small_corpus, tmp_path / "ws", embedder=embedder)
    assert ws.dim == 384 and ws.model_id == "sentence-transformers/all-MiniLM-L6-v2"
    norms = np.linalg.norm(np.asarray(ws.embeddings), axis=1)
    np.testing.assert_allclose(norms, 1.0, atol=1e-5)

    class Refuses:
        model_id, dim = embedder.model_id, embedder.dim

        def embed(self, texts):
            raise AssertionError("re-embedded although the workspace holds these vectors")

    again = pipeline.embed(small_corpus, tmp_path / "ws", embedder=Refuses())
    assert again.n_documents == 3


def test_train_evaluate_and_cli_json(tmp_path, cranfield_ws, copy_ws, capsys):
    from embedsae.cli import main

    ws = copy_ws(cranfield_ws)
    pipeline.train(ws, k=16, latents=512, epochs=5, batch_size=256)
    name = "topk-k16-n512"
    folder = ws.sae_dir(name)
    for part in ("cfg.json", "sae.safetensors", "train_log.jsonl", "metrics.json", "val_indices.npy",
                 "density.png", "train_log.png"):
        assert (folder / part).is_file(), part
    assert not (ws.saes_dir / f".partial-{name}").exists()
    log = [json.loads(line) for line in (folder / "train_log.jsonl").read_text().splitlines()]
    assert log[-1]["step"] == 5 * (1330 // 256) and "val_nmse" in log[-1]

    assert main(["evaluate", str(ws.path), "--json"]) == 0
    m = json.loads(capsys.readouterr().out)
    for key in ("nmse", "dead_fraction", "l0", "log_feature_density", "act_mean", "neighbour_overlap_at_10"):
        assert key in m, key
    assert m["sae"] == name and 0 < m["nmse"] < 1 and m["l0"] <= 16
    assert m["log_feature_density"] < 0 and 0 <= m["neighbour_overlap_at_10"] <= 1

    assert main(["info", str(ws.path), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["latest_sae"] == name and info["saes"][0]["nmse"] == pytest.approx(m["nmse"])

    assert main(["evaluate", str(ws.path), "--sae", "nope"]) == 2
    assert "no trained SAE named 'nope'" in capsys.readouterr().err


def test_sweep_writes_table_and_plot(tmp_path, cranfield_ws, copy_ws):
    ws = copy_ws(cranfield_ws)
    table = pipeline.sweep(ws, [4, 8], [128, 256], epochs=2, batch_size=256)
    assert len(table) == 4 and set(table["k"]) == {4, 8}
    assert {"k", "latents", "nmse", "log_density", "act_mean", "dead_pct"} <= set(table.columns)
    # bigger k reconstructs better at the same size
    for n in (128, 256):
        rows = table[table["latents"] == n].set_index("k")
        assert rows.loc[8, "nmse"] < rows.loc[4, "nmse"]
    for f in ("sweep.md", "sweep.csv", "sweep.png"):
        assert (ws.path / "sweep" / f).stat().st_size > 0
    assert (ws.path / "sweep" / "sweep.md").read_text().startswith("| k | latents | nmse")


def test_sweep_rejects_bad_grid(tmp_path, cranfield_ws, copy_ws):
    from embedsae.cli import main

    assert main(["sweep", str(cranfield_ws.path), "--k", "a,b"]) == 2
    with pytest.raises(InputError, match="k=64 is larger than latents=32"):
        pipeline.sweep(copy_ws(cranfield_ws), [64], [32])
