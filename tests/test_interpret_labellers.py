"""The labeller registry and the one source of labels, on a small real workspace (Cranfield, a small SAE)."""

from __future__ import annotations

import re
from collections import Counter

import numpy as np
import pytest

from embedsae.errors import InputError


@pytest.fixture(scope="module")
def small_trained(cranfield_ws, tmp_path_factory):
    """A copy of the Cranfield workspace with a small top-k SAE (k 8, 256 latents) and nothing interpreted."""
    import shutil

    from embedsae import pipeline
    from embedsae.workspace import Workspace

    dst = tmp_path_factory.mktemp("labellers") / "ws"
    shutil.copytree(cranfield_ws.path, dst)
    ws = Workspace.open(dst)
    pipeline.train(ws, k=8, latents=256, epochs=5, batch_size=256, evaluate=False)
    return ws


class TitleWordLabeller:
    """A toy labeller: the commonest long word of the titles of a feature's top documents."""

    name = "title-word"

    def __init__(self, context) -> None:
        self.titles = context.ws.titles()

    def label_batch(self, examples, context):
        out = []
        for ex in examples:
            words = Counter(w for d in ex.top for w in re.findall(r"[a-z]{6,}", self.titles[d].lower()))
            out.append((words.most_common(1)[0][0], {"n_top": len(ex.top)}) if words else (None, {"reason": "none"}))
        return out


def test_a_registered_labeller_runs_through_interpret(small_trained, copy_ws):
    from embedsae.interpret import INTERPRETED, feature_labels
    from embedsae.interpret.labellers import LABELLERS, register_labeller
    from embedsae.interpret.stage import interpret
    from embedsae.interpret.store import FeatureStore, db_path

    ws = copy_ws(small_trained)
    register_labeller("title-word", TitleWordLabeller)
    try:
        s = interpret(ws, labeller="title-word", max_features=30, batch_size=8)
    finally:
        LABELLERS.unregister("title-word")
    assert s["labeller"] == "title-word" and s["interpreted"] + s["failed"] == 30 and s["interpreted"] >= 25
    with FeatureStore(db_path(ws.sae_dir(ws.resolve_sae()))) as store:
        t = store.table()
    done = t[t["status"] == "done"]
    assert (done["labeller"] == "title-word").all() and done["embedding_auc"].between(0, 1).all()
    titles = ws.titles()
    with FeatureStore(db_path(ws.sae_dir(ws.resolve_sae()))) as store:
        for row in done.head(5).itertuples():
            top = store.examples(row.id).query("kind == 'top'")["doc"]
            assert any(row.label in titles[d].lower() for d in top)
    labels = feature_labels(ws)
    assert labels.source == INTERPRETED and labels == dict(zip(done["id"], done["label"]))
    with pytest.raises(InputError, match="unknown labeller 'title-word'.*keywords"):
        interpret(ws, labeller="title-word", max_features=2)


def test_llm_labeller_without_endpoint_names_no_flag(small_trained, copy_ws):
    from embedsae.interpret.stage import interpret

    with pytest.raises(InputError) as err:
        interpret(copy_ws(small_trained), labeller="llm", max_features=2)
    assert "base_url" in str(err.value) and "--" not in str(err.value)


def test_uninterpreted_saes_get_title_keywords_without_writing(small_trained):
    """Before `interpret`, every view gets quick keyword labels, marked as such, and nothing is written."""
    from embedsae.cli.format import render_card
    from embedsae.interpret import KEYWORDS, clean_features, feature_labels
    from embedsae.interpret.card import feature_card
    from embedsae.interpret.store import FeatureStore, db_path
    from embedsae.sae.codes import workspace_codes
    from embedsae.structure.neighbours import feature_neighbours

    ws = small_trained
    codes = workspace_codes(ws)
    folder = ws.sae_dir(ws.resolve_sae())
    before = sorted((p.name, p.stat().st_mtime) for p in folder.iterdir())
    labels = feature_labels(ws)
    assert labels.source == KEYWORDS and not labels.interpreted and clean_features(ws) is None
    assert sorted((p.name, p.stat().st_mtime) for p in folder.iterdir()) == before
    alive = np.flatnonzero(codes.density() > 0)
    assert len(labels) > 0.8 * len(alive)
    # each label is a phrase far more common in the titles of the feature's top documents than in the corpus
    titles = [t.lower() for t in ws.titles()]
    acts = codes.to_csr().T.tocsr()
    enrich = []
    for f in sorted(labels)[:100]:
        row = acts.getrow(f)
        top = row.indices[np.argsort(-row.data)[:10]]
        term = labels[f].lower()
        enrich.append(np.mean([term in titles[d] for d in top]) / max(np.mean([term in t for t in titles]), 1e-3))
    assert np.median(enrich) > 5
    # the same label in the neighbours view and the feature card
    f = sorted(labels)[0]
    nb = feature_neighbours(ws, f)
    assert nb["label"] == labels[f] and nb["label_source"] == KEYWORDS
    with FeatureStore(db_path(folder)) as store:
        card = feature_card(ws, ws.resolve_sae(), store, f)
    assert card.label == labels[f] and "not interpreted yet" in render_card(card)
