"""The README's main job as a new user runs it: `embedsae run --demo` through the real CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from embedsae.workspace import Workspace


def _cli(*args: str, **kw) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", "embedsae", *args], capture_output=True, text=True, env=env, **kw)


@pytest.mark.slow
def test_run_demo_end_to_end(ws_demo):
    """`embedsae run --demo --limit 1000` (the README's first command on 1,000 summaries, default SAE k 32 / 3,072
    latents; the session's workspace (b) of tests/real_workspaces.py): every stage ran and the SAE beats PCA."""
    output = ws_demo.path.parent / "run-output.txt"
    if output.is_file():  # absent for a workspace kept by an earlier session (development)
        text = output.read_text()
        assert "NMSE held-out" in text and "look at:" in text and f"embedsae serve {ws_demo.path}" in text
        assert "pip install" not in text  # the app and the map come with the first install
    name = "topk-k32-n3072"
    sae = ws_demo.path / "saes" / name
    for part in ("train_log.png", "density.png", "metrics.json", "sae.safetensors"):
        assert (sae / part).stat().st_size > 0, part
    info = json.loads(_cli("info", str(ws_demo.path), "--json").stdout)
    assert info["documents"] == 1000 and info["latest_sae"] == name
    assert "categories" in info["columns"]
    # yardstick: held-out NMSE of the best 32-dimensional linear code (PCA) fitted on the same training rows
    x = np.asarray(Workspace.open(ws_demo.path).embeddings)
    val = np.load(sae / "val_indices.npy")
    train = np.setdiff1d(np.arange(len(x)), val)
    mu = x[train].mean(0)
    top = np.linalg.svd(x[train] - mu, full_matrices=False)[2][:32]
    rec = (x[val] - mu) @ top.T @ top + mu
    pca32 = float(((x[val] - rec) ** 2).sum() / ((x[val] - x[val].mean(0)) ** 2).sum())
    assert info["saes"][0]["nmse"] < pca32, (info["saes"][0]["nmse"], pca32)
    # every stage that `run` chains has left its record in the manifest, the map's layouts included
    assert {"embed", f"train:{name}", f"interpret:{name}", f"families:{name}", "index", "map"} <= set(info["stages"])
    assert (ws_demo.path / "map" / "umap-2d.npy").is_file() and (ws_demo.path / "map" / "umap-3d.npy").is_file()


def test_cli_errors_are_one_line(tmp_path):
    bad = tmp_path / "c.jsonl"
    bad.write_text('{"id": "1", "content2": "x"}\n')
    done = _cli("embed", str(bad), "-o", str(tmp_path / "ws"))
    assert done.returncode == 2
    assert done.stderr.strip().startswith("embedsae embed: error: ") and "--text-field" in done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "ws").exists()
    done = _cli("run", "-o", str(tmp_path / "ws"))
    assert done.returncode == 2 and "--demo" in done.stderr
    done = _cli("train", str(tmp_path / "nowhere"))
    assert done.returncode == 2 and "not an embedsae workspace" in done.stderr
