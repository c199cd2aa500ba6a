"""Feature families, neighbours and the `families` stage on the real arXiv workspace (default SAE k=32, 3,072)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from embedsae.cli import main
from embedsae.errors import InputError
from embedsae.sae.codes import workspace_codes
from embedsae.structure import feature_neighbours, load_families
from embedsae.structure.cooccurrence import cooccurrence
from embedsae.workspace import Workspace


@pytest.fixture(scope="module")
def fam_ws(arxiv_trained, tmp_path_factory):
    """A private copy of the trained arXiv workspace (the stage writes into it)."""
    dst = tmp_path_factory.mktemp("families") / "ws"
    shutil.copytree(arxiv_trained.path, dst)
    return Workspace.open(dst)


@pytest.fixture(scope="module")
def families_json(fam_ws):
    """The `families` run stage on the real workspace, as stored in families.json."""
    from embedsae.structure import families_stage

    families_stage(fam_ws, fam_ws.resolve_sae())
    return load_families(fam_ws)


def test_families_meet_the_seed_statistics(families_json):
    stats = families_json["stats"]
    assert stats["families"] == len(families_json["families"]) >= 20
    assert stats["cooccurrence_ratio"] > 1
    assert stats["block_ratio"] >= 2 * stats["block_ratio_random"]
    assert 0.05 < stats["coverage"] <= 1


def test_families_are_oriented_labelled_and_distinct(families_json, fam_ws):
    codes = workspace_codes(fam_ws)
    freq = cooccurrence(codes).freq
    fams = families_json["families"]
    for fam in fams:
        assert fam["size"] == len(fam["children"]) > 3
        assert fam["parent"] not in fam["children"]
        assert fam["label"] and all(fam["child_labels"])
        # every tree edge goes from a denser feature to a sparser one (or an equally dense one)
        for child, parent in zip(fam["children"], fam["tree_parent"]):
            assert freq[parent] >= freq[child]
    sets = [set(f["children"]) for f in fams]
    for i in range(len(sets)):
        for j in range(i + 1, len(sets)):
            assert len(sets[i] & sets[j]) / len(sets[i] | sets[j]) <= 0.6
    assert [f["size"] for f in fams] == sorted((f["size"] for f in fams), reverse=True)


def test_families_stage_writes_json_and_offline_figures(families_json, fam_ws):
    folder = fam_ws.sae_dir(fam_ws.resolve_sae())
    stored = load_families(fam_ws)
    assert stored is not None and stored["stats"] == families_json["stats"]
    html = (folder / "families.html").read_text()
    assert "sunburst" in html and "<script src=\"http" not in html and len(html) > 1_000_000  # plotly.js inlined
    assert (folder / "families.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    fam_ws.reload_manifest()
    assert any(k.startswith("families:") for k in fam_ws.manifest["stages"])
    assert not list(folder.glob(".*.tmp"))


def test_families_cli_json(fam_ws, families_json, capsys):
    assert main(["families", str(fam_ws.path), "--json", "--no-figures", "--quiet"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["stats"] == families_json["stats"]
    for key in ("parent", "children", "label"):
        assert key in data["families"][0]
    for key in ("cooccurrence_ratio", "block_ratio", "block_ratio_random", "coverage"):
        assert isinstance(data["stats"][key], float)


def test_families_text_output_is_an_indented_tree(fam_ws, capsys):
    assert main(["families", str(fam_ws.path), "--top", "3", "--no-figures", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "families of SAE" in out and "co-occurrence ratio" in out
    assert out.count("\n1. ") == 1 and "\n    #" in out  # children indented under the family line


def test_spanning_tree_keeps_only_edges_above_the_threshold(arxiv_trained):
    from embedsae.structure.families import oriented_tree

    cooc = cooccurrence(workspace_codes(arxiv_trained))
    feats = np.flatnonzero((cooc.freq > 0) & (cooc.density <= 0.2))
    norm = cooc.normalised(feats, kind="sqrt").tocsr()
    pos = {int(f): i for i, f in enumerate(feats)}
    n_edges = {}
    for t in (0.05, 0.3):
        tree = oriented_tree(cooc, feats, t)
        edges = [(p, c) for p, cs in tree.items() for c in cs]
        assert all(norm[pos[p], pos[c]] >= t for p, c in edges)
        assert all(cooc.freq[p] >= cooc.freq[c] for p, c in edges)  # from the denser to the sparser feature
        n_edges[t] = len(edges)
    assert n_edges[0.3] < n_edges[0.05] < len(feats)


def test_bad_family_settings_fail_cleanly(fam_ws, capsys):
    before = sorted(p.name for p in fam_ws.sae_dir(fam_ws.resolve_sae()).iterdir())
    assert main(["families", str(fam_ws.path), "--threshold", "1.5", "--quiet"]) == 2
    assert "threshold must be in [0, 1)" in capsys.readouterr().err
    assert sorted(p.name for p in fam_ws.sae_dir(fam_ws.resolve_sae()).iterdir()) == before


def test_neighbours_agree_with_direct_computation(arxiv_trained):
    codes = workspace_codes(arxiv_trained)
    f = int(np.argsort(-codes.density())[100])  # a common but not dominant feature
    data = feature_neighbours(arxiv_trained, f, top=5)
    sae = arxiv_trained.load_sae()
    w = sae.W_dec.detach().numpy()
    w = w / np.linalg.norm(w, axis=1, keepdims=True)
    cos = w @ w[f]
    cos[f] = -np.inf
    assert [r["id"] for r in data["decoder_similar"]] == list(np.argsort(-cos)[:5])
    cos[f] = np.inf
    assert data["decoder_opposite"][0]["id"] == int(np.argmin(cos))
    onehot = (codes.to_csr().toarray() > 0).astype(np.int64)
    together = onehot[:, f] @ onehot
    together[f] = 0
    assert data["cooccurring"][0]["count"] == together.max()
    dense = codes.to_csr().toarray()
    best = data["correlated"][0]
    assert best["correlation"] == pytest.approx(np.corrcoef(dense[:, f], dense[:, best["id"]])[0, 1], abs=1e-4)
    assert best["correlation"] > 0.1


def test_neighbours_cli_and_bad_feature_id(arxiv_trained, capsys):
    assert main(["neighbours", str(arxiv_trained.path), "5", "--top", "3"]) == 0
    out = capsys.readouterr().out
    for heading in ("most similar decoder directions", "most opposite", "most co-occurring", "most correlated"):
        assert heading in out
    assert main(["neighbours", str(arxiv_trained.path), "99999"]) == 2
    assert "feature 99999 does not exist" in capsys.readouterr().err
    with pytest.raises(InputError, match="whole number"):
        feature_neighbours(arxiv_trained, "abc")
