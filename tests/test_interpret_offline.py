"""Offline interpretation on the real arXiv abstracts: keyword labels, embedding and category scores, the clean
filter, the CLI, and resuming after a real kill."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from embedsae.cli import main
from embedsae.records import FeatureScores

N_FEATURES = 240
SRC = str(Path(__file__).resolve().parents[1] / "src")


@pytest.fixture(scope="module")
def interpreted(arxiv_trained, tmp_path_factory):
    """A copy of the arXiv workspace with the first N_FEATURES alive features interpreted offline."""
    import shutil

    from embedsae.interpret.stage import interpret
    from embedsae.workspace import Workspace

    dst = tmp_path_factory.mktemp("interp") / "ws"
    shutil.copytree(arxiv_trained.path, dst)
    ws = Workspace.open(dst)
    summary = interpret(ws, max_features=N_FEATURES)
    return ws, summary


def _table(ws):
    from embedsae.interpret.store import FeatureStore, db_path

    with FeatureStore(db_path(ws.sae_dir(ws.resolve_sae()))) as st:
        return st.table()


@pytest.mark.slow
def test_every_feature_gets_a_readable_name_and_description(interpreted):
    from embedsae.interpret import feature_labels
    from embedsae.interpret.labellers import is_one_phrase
    from embedsae.interpret.names import distinct_share

    ws, s = interpreted
    assert s["interpreted"] == N_FEATURES and s["failed"] == 0
    labels = feature_labels(ws)
    assert len(labels) == N_FEATURES
    for label in labels.values():
        assert 1 <= len(label.split()) <= 6 and "_" not in label and label == label.strip()
    # one phrase each (100 % on these 240 and on all 3,072 features), no lists
    assert s["single_phrase"] >= 0.95 and np.mean([is_one_phrase(x) for x in labels.values()]) >= 0.95
    # names tell features apart: 100 % distinct on these 240 after renaming 3 (96.0 % on all 3,072)
    assert s["distinct_names"] == distinct_share(list(labels.values())) >= 0.97
    t = _table(ws)
    done = t[t["status"] == "done"]
    words = done["description"].str.split().str.len()
    assert done["description"].notna().all() and words.between(2, 30).all()
    # a description starts from the name and says more
    assert all(d.lower().startswith(n.lower()) for n, d in zip(done["label"], done["description"]))
    assert (words > done["label"].str.split().str.len()).mean() > 0.9


@pytest.mark.slow
def test_embedding_scores_mean_something(interpreted):
    """Names and descriptions predict held-out activating documents against random documents and against each
    one's nearest non-activating document, better than the title of the top document the labeller sees; the
    same names given to the wrong features do not."""
    from embedsae.interpret.examples import select_examples
    from embedsae.interpret.scorers import embedding_scores
    from embedsae.sae.codes import workspace_codes

    ws, s = interpreted
    t = _table(ws)
    done = t[t["status"] == "done"]
    for col in ("embedding_auc", "embedding_auc_hard", "description_auc", "description_auc_hard"):
        assert done[col].between(0, 1).all(), col
    # measured on these 240 features: names 0.873 / 0.668, descriptions 0.908 / 0.672 (all 3,072: 0.880 / 0.662
    # and 0.910 / 0.673)
    assert s["mean_embedding_auc"] >= 0.85 and s["mean_embedding_auc_hard"] >= 0.64
    assert s["mean_description_auc"] >= 0.885 and s["mean_description_auc_hard"] >= 0.645
    # features with fewer than 2 (coherence) or 4 (mixture) shown documents have none
    assert done["coherence"].dropna().between(-1, 1).all() and done["mixture"].dropna().isin([0, 1]).all()
    assert done["mixture"].notna().mean() > 0.9
    assert done["embedding_auc"].mean() == pytest.approx(s["mean_embedding_auc"], abs=1e-3)
    emb = ws.embedder()
    doc_vectors = np.asarray(ws.embeddings, dtype=np.float32)
    doc_vectors = doc_vectors / np.linalg.norm(doc_vectors, axis=1, keepdims=True)
    csc = workspace_codes(ws).to_csr().tocsc()
    ids = done["id"].to_numpy()
    exs = select_examples(csc, ids, doc_vectors)
    by_id = done.set_index("id")
    # the baseline: the title of the strongest shown document, scored the same way
    titles = ws.titles()
    base = [embedding_scores(v, doc_vectors, ex) for v, ex in zip(emb.embed([titles[ex.top[0]] for ex in exs]), exs)]
    base_rand = np.mean([b["embedding_auc"] for b in base])
    base_hard = np.nanmean([b["embedding_auc_hard"] if b["embedding_auc_hard"] is not None else np.nan for b in base])
    assert by_id["embedding_auc_hard"].mean() > base_hard + 0.01
    assert by_id["description_auc"].mean() > base_rand + 0.02 and by_id["description_auc_hard"].mean() > base_hard
    # control: shift names by one feature and score them on the held-out examples of the wrong feature
    labels = by_id.loc[ids[:60], "label"].tolist()
    label_vecs = emb.embed(labels)
    right = [embedding_scores(v, doc_vectors, ex)["embedding_auc"] for v, ex in zip(label_vecs, exs[:60])]
    wrong = [embedding_scores(v, doc_vectors, ex)["embedding_auc"] for v, ex in zip(np.roll(label_vecs, 1, 0), exs)]
    assert np.mean(right) == pytest.approx(by_id.loc[ids[:60], "embedding_auc"].mean(), abs=1e-3)
    assert np.mean(wrong) < 0.65 < np.mean(right)


@pytest.mark.slow
def test_category_scores_and_clean_filter(interpreted):
    from embedsae.interpret import clean_features

    ws, _ = interpreted
    t = _table(ws)
    cat = t[t["category_f1"].notna()]
    assert len(cat) >= 0.5 * N_FEATURES  # most features fire on some of the 2,521 categorised abstracts
    assert cat["category_f1"].between(0, 1).all() and cat["category"].notna().all()
    # a feature that detects 'physics' better than chance: its best category F1 beats the F1 of always saying yes
    # over all 3,072 features of this SAE the best reaches 0.65 (39 above 0.3); these first 240 reach about 0.25
    assert cat["category_f1"].max() > 0.2
    clean = clean_features(ws)
    assert clean and len(clean) < len(t)
    c = t[t["id"].isin(clean)]
    name_ok = (c["embedding_auc"] >= 0.8) & (c["embedding_auc_hard"] >= 0.6)
    desc_ok = (c["description_auc"] >= 0.8) & (c["description_auc_hard"] >= 0.6)
    assert (c["density"] < 0.2).all() and (name_ok | desc_ok).all()
    assert c["label"].str.lower().is_unique
    assert len(clean) >= 0.7 * N_FEATURES  # 205 of these 240 are clean


@pytest.mark.slow
def test_cli_lists_cards_and_exports(interpreted, capsys, tmp_path):
    ws, _ = interpreted
    assert main(["features", str(ws.path), "--json", "--sort", "score"]) == 0
    recs = json.loads(capsys.readouterr().out)
    assert len(recs) >= N_FEATURES
    scored = [r for r in recs if r["scores"]["embedding_auc"] is not None]
    combined = [r["scores"]["embedding_auc_combined"] for r in scored]
    keys = [c if c is not None else float("-inf") for c in combined]
    assert keys == sorted(keys, reverse=True)  # by the combined AUC (random and hard negatives)
    for key in ("id", "label", "description", "density", "act_mean", "scores"):
        assert key in recs[0]
    assert all(set(r["scores"]) == set(FeatureScores.names()) for r in recs)  # every score, None where not computed
    assert all(r["description"] for r in scored) and scored[0]["scores"]["description_auc"] is not None
    word = scored[0]["label"].split()[0]
    assert main(["features", str(ws.path), "--search", word, "--json"]) == 0
    found = json.loads(capsys.readouterr().out)
    assert found and all(word.lower() in r["label"].lower() for r in found)

    fid = scored[0]["id"]
    assert main(["feature", str(ws.path), str(fid)]) == 0
    out = capsys.readouterr().out
    assert scored[0]["label"] in out and "histogram" in out and "top documents" in out
    assert scored[0]["description"] in out and "description" in out
    assert main(["feature", str(ws.path), str(fid), "--json"]) == 0
    card = json.loads(capsys.readouterr().out)
    assert card["description"] == scored[0]["description"]
    acts = [d["activation"] for d in card["top_documents"]]
    assert acts == sorted(acts, reverse=True) and len(acts) == min(8, card["n_active"])
    assert sum(card["histogram"]["counts"]) == card["n_active"]

    assert main(["features", str(ws.path), "--export", str(tmp_path / "f.parquet")]) == 0
    import pandas as pd

    exported = pd.read_parquet(tmp_path / "f.parquet")
    assert len(exported) == len(recs) and exported["description"].notna().sum() == len(scored)
    assert main(["feature", str(ws.path), "999999"]) == 2
    assert "does not exist" in capsys.readouterr().err


@pytest.mark.slow
def test_killed_run_resumes_without_redoing(arxiv_trained, copy_ws):
    ws = copy_ws(arxiv_trained)
    db = ws.sae_dir(ws.resolve_sae()) / "features.db"
    env = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")}
    cmd = [sys.executable, "-m", "embedsae", "interpret", str(ws.path), "--features", "150", "--batch-size", "15",
           "--quiet"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    done_before = 0
    try:
        deadline = time.time() + 240
        while time.time() < deadline and proc.poll() is None:
            time.sleep(0.5)
            if db.is_file():
                try:
                    with sqlite3.connect(db, timeout=5) as con:
                        done_before = con.execute("SELECT COUNT(*) FROM features WHERE status = 'done'").fetchone()[0]
                except sqlite3.OperationalError:
                    continue
                if done_before >= 30:
                    break
        assert proc.poll() is None, f"the run ended before it could be killed: {proc.stderr.read().decode()[-500:]}"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stderr.close()
    with sqlite3.connect(db) as con:
        first = dict(con.execute("SELECT id, run FROM features WHERE status = 'done'").fetchall())
    assert 30 <= len(first) < 150 and set(first.values()) == {1}

    from embedsae.interpret.stage import interpret

    s = interpret(ws, max_features=150, batch_size=15)
    assert s["skipped"] == len(first) and s["interpreted"] == 150
    with sqlite3.connect(db) as con:
        after = dict(con.execute("SELECT id, run FROM features WHERE status = 'done'").fetchall())
    assert all(after[f] == 1 for f in first)  # finished features were not redone
    assert sum(r == 2 for r in after.values()) == 150 - len(first)


@pytest.mark.slow
def test_labels_of_another_labeller_version_are_redone(interpreted, copy_ws):
    from embedsae.interpret.keywords import KEYWORDS_VERSION
    from embedsae.interpret.stage import interpret

    ws = copy_ws(interpreted[0])
    db = ws.sae_dir(ws.resolve_sae()) / "features.db"
    with sqlite3.connect(db) as con:
        ids = [r[0] for r in con.execute("SELECT id FROM features WHERE status = 'done' ORDER BY id").fetchall()]
        assert len(ids) == N_FEATURES
        assert {r[0] for r in con.execute("SELECT labeller_version FROM features WHERE status = 'done'")} == {
            KEYWORDS_VERSION}
        old = ids[::16]  # as a workspace labelled before names had descriptions: no version, no description
        con.executemany("UPDATE features SET labeller_version = NULL, description = NULL WHERE id = ?",
                        [(f,) for f in old])
    s = interpret(ws, max_features=N_FEATURES)
    assert s["skipped"] == N_FEATURES - len(old) and s["interpreted"] == N_FEATURES
    with sqlite3.connect(db) as con:
        rows = {f: (run, version, desc) for f, run, version, desc in con.execute(
            "SELECT id, run, labeller_version, description FROM features WHERE status = 'done'")}
    assert {f for f, (run, _, _) in rows.items() if run == 2} == set(old)  # only the old labels were redone
    assert all(version == KEYWORDS_VERSION and desc for _, version, desc in rows.values())

    s = interpret(ws, max_features=20, redo=True)  # redo: labelled again although current
    assert s["skipped"] == 0 and s["interpreted"] == 20
    with sqlite3.connect(db) as con:
        assert con.execute("SELECT COUNT(*) FROM features WHERE run = 3").fetchone()[0] == 20
