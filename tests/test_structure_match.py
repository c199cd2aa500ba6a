"""Matching features across SAE sizes on the real arXiv workspace: the default 3,072-latent SAE and a 6,144 one."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from embedsae.cli import main
from embedsae.errors import InputError
from embedsae.sae.codes import workspace_codes
from embedsae.structure import match_saes
from embedsae.structure.neighbours import decoder_directions
from embedsae.workspace import Workspace


@pytest.fixture(scope="module")
def two_saes(arxiv_trained, tmp_path_factory):
    """A copy of the trained arXiv workspace with a second, larger SAE (another seed, so that it does not start from
    the same random directions; fewer epochs, to keep the test short)."""
    from embedsae import pipeline

    dst = tmp_path_factory.mktemp("match") / "ws"
    shutil.copytree(arxiv_trained.path, dst)
    ws = Workspace.open(dst)
    small = ws.resolve_sae()
    pipeline.train(ws, k=32, latents=6144, name="big", epochs=5, seed=1, evaluate=False)
    return ws, small, "big"


@pytest.mark.slow
def test_match_maps_every_feature_to_its_closest_and_builds_split_trees(two_saes):
    ws, small, big = two_saes
    data = match_saes(ws, small, big, min_cosine=0.0)
    s = data["summary"]
    a = decoder_directions(ws.load_sae(small))
    b = decoder_directions(ws.load_sae(big))
    a_alive = workspace_codes(ws, small).density() > 0
    b_alive = workspace_codes(ws, big).density() > 0
    assert s["from_alive"] == len(data["matches"]) == s["split"] + s["kept"] + s["without_children"]
    assert s["same_id_share"] < 0.05  # independent initialisations
    sims = a @ b.T
    sims[:, ~b_alive] = -np.inf
    sims[~a_alive, :] = -np.inf
    owner = sims.argmax(axis=0)
    n_children = 0
    for m in data["matches"]:
        assert m["best"] == int(np.argmax(sims[m["id"]]))
        kids = [c["id"] for c in m["children"]]
        assert all(owner[j] == m["id"] for j in kids)  # each child hangs under its closest small-SAE feature
        assert [c["cosine"] for c in m["children"]] == sorted((c["cosine"] for c in m["children"]), reverse=True)
        n_children += len(kids)
    assert n_children + s["new"] == b_alive.sum()
    # the two SAEs learned from the same vectors share directions beyond what random directions would
    rng = np.random.default_rng(0)
    rand = rng.standard_normal(b.shape).astype(np.float32)
    rand /= np.linalg.norm(rand, axis=1, keepdims=True)
    random_best = float((a[a_alive] @ rand.T).max(axis=1).mean())
    assert s["mean_best_cosine"] > random_best + 0.02
    assert s["split"] >= 50
    top = data["matches"][0]
    assert len(top["children"]) >= 2 and top["label"] and all(c["label"] for c in top["children"])


@pytest.mark.slow
def test_match_cli_prints_labelled_trees_and_rejects_same_sae(two_saes, capsys):
    ws, small, big = two_saes
    assert main(["match", str(ws.path), "--from", small, "--to", big, "--top", "3", "--min-cosine", "0"]) == 0
    out = capsys.readouterr().out
    assert "features split" in out and "splits into" in out and "└─ #" in out
    assert main(["match", str(ws.path), "--from", small, "--to", "nope"]) == 2
    assert "no trained SAE named 'nope'" in capsys.readouterr().err
    with pytest.raises(InputError, match="same SAE"):
        match_saes(ws, small, small)
