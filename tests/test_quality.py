"""SAE quality on the real arXiv corpus with the default settings (the README's main path)."""

from __future__ import annotations

import json

import pytest


@pytest.mark.slow
def test_default_sae_on_arxiv(arxiv_trained):
    ws = arxiv_trained
    m = json.loads((ws.sae_dir("topk-k32-n3072") / "metrics.json").read_text())
    assert m["n_vectors"] == 6276 and m["l0"] == pytest.approx(32, abs=0.5)
    # Issue #3's target is held-out NMSE <= 0.30. The default (pursuit encoding over the encoder's 4k
    # candidates) reaches 0.235 (train 0.112); the plain top-k encoder of the same SAE 0.35, PCA with 64
    # components 0.38, plain training without input noise 0.41.
    assert m["nmse"] <= 0.28, m["nmse"]
    assert m["nmse_train"] <= 0.2
    assert m["dead_fraction"] <= 0.01
    assert m["neighbour_overlap_at_10"] >= 0.7
    assert -3.5 < m["log_feature_density"] < -1.0
