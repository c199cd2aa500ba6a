"""Unit checks of the interpretation parts: AUC, the held-out split, example selection, phrases, the store."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from embedsae.errors import InputError
from embedsae.interpret.examples import ExampleConfig, select_examples, split_activating
from embedsae.interpret.keywords import KeywordLabeller, PhraseEmbeddings, build_vocabulary
from embedsae.interpret.scorers import auc, auc_matrix, category_scores, f1_score, pearson
from embedsae.interpret.store import FeatureStore, export_table


def test_auc_matches_sklearn():
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(0)
    for _ in range(5):
        pos, neg = rng.normal(0.5, 1, 30).round(1), rng.normal(0, 1, 40).round(1)  # rounding makes ties
        want = roc_auc_score(np.r_[np.ones(30), np.zeros(40)], np.r_[pos, neg])
        assert auc(pos, neg) == pytest.approx(want)
    m = auc_matrix(np.array([[1.0, 2.0], [0.0, 0.0]]), np.array([[0.0], [1.0]]))
    assert m.tolist() == [1.0, 0.0]


def test_auc_matrix_of_float32_scores_matches_sklearn_row_by_row():
    """float32 scores (cosines) take a sort-and-search path: the same AUCs, ties (and -0.0 against 0.0) included."""
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(1)
    pos = rng.normal(0.3, 1, (20, 25)).round(1).astype(np.float32)
    neg = rng.normal(0, 1, (20, 300)).round(1).astype(np.float32)
    pos[0, :3], neg[0, :5] = -0.0, 0.0
    got = auc_matrix(pos, neg)
    want = [roc_auc_score(np.r_[np.ones(25), np.zeros(300)], np.r_[p, n]) for p, n in zip(pos, neg)]
    assert got == pytest.approx(want, abs=1e-12)
    assert np.array_equal(got, auc_matrix(pos.astype(np.float64), neg.astype(np.float64)))


def test_f1_and_pearson():
    assert f1_score([True, True, False, False], [True, False, True, False]) == (0.5, 0.5, 0.5)
    assert pearson([1, 2, 3], [2, 4, 6]) == pytest.approx(1.0)
    assert pearson([1, 1, 1], [1, 2, 3]) is None


def test_split_keeps_halves_apart_and_spread():
    rng = np.random.default_rng(1)
    acts = rng.random(41)
    docs = np.arange(41)
    shown, held = split_activating(docs, acts, rng)
    assert len(set(shown) & set(held)) == 0 and len(shown) + len(held) == 41
    # one of each consecutive pair by activation on each side: both halves span the same range
    assert abs(np.median(acts[shown]) - np.median(acts[held])) < 0.1
    assert acts[shown].max() >= np.sort(acts)[-2] and acts[held].max() >= np.sort(acts)[-2]


def test_select_examples_kinds():
    rng = np.random.default_rng(2)
    n_docs, n_lat = 400, 5
    emb = rng.normal(size=(n_docs, 8)).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    acts = np.zeros((n_docs, n_lat), np.float32)
    acts[:60, 0] = rng.random(60) + 0.1  # feature 0 fires on the first 60 documents
    acts[60:62, 1] = 1.0  # feature 1 on two
    csc = sp.csc_matrix(acts)
    cfg = ExampleConfig(n_top=10, n_quantile=5, n_random_neg=20, n_hard_neg=12, n_heldout_pos=12, n_heldout_neg=20)
    ex0, ex1 = select_examples(csc, np.array([0, 1]), emb, cfg)
    active = set(range(60))
    assert set(ex0.top) <= active and set(ex0.quantile) <= active and set(ex0.heldout_pos) <= active
    assert not set(ex0.shown_pos) & set(ex0.heldout_pos)
    negs = [ex0.random_neg, ex0.heldout_neg, ex0.hard_neg, ex0.heldout_hard]
    assert all(not set(n) & active for n in negs)
    assert not set(ex0.random_neg) & set(ex0.heldout_neg)
    # shown and held-out sides share no negative: the labeller never sees a held-out document
    assert not (set(ex0.random_neg) | set(ex0.hard_neg)) & (set(ex0.heldout_neg) | set(ex0.heldout_hard))
    assert list(ex0.top_act) == sorted(ex0.top_act, reverse=True)
    assert len(ex0.top) == 10 and len(ex0.quantile) == 5 and len(ex0.heldout_pos) == 12
    assert len(ex1.shown_pos) == 1 and len(ex1.heldout_pos) == 1
    kinds = {(k, s) for _, k, s, _ in ex0.rows()}
    assert ("top", "shown") in kinds and ("pos", "heldout") in kinds and ("hard_neg", "heldout") in kinds


def test_hard_negatives_are_each_documents_nearest_non_activating_document():
    """Per document: each held-out activating document's hard negative is its nearest document the feature does
    not fire on (other than the shown random negatives); each shown one's likewise, outside the held-out side."""
    rng = np.random.default_rng(3)
    emb = rng.normal(size=(300, 6)).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    fires = np.sort(rng.choice(300, 50, replace=False))
    acts = np.zeros((300, 1), np.float32)
    acts[fires, 0] = rng.random(50) + 0.1
    cfg = ExampleConfig(n_top=8, n_quantile=8, n_random_neg=10, n_hard_neg=16, n_heldout_pos=25, n_heldout_neg=30)
    (ex,) = select_examples(sp.csc_matrix(acts), np.array([0]), emb, cfg)

    def nearest(rows, excluded):
        sims = emb[rows] @ emb.T
        sims[:, excluded] = -np.inf
        return sims.argmax(1)

    assert len(ex.heldout_hard) == len(ex.heldout_pos) == 25
    np.testing.assert_array_equal(ex.heldout_hard, nearest(ex.heldout_pos, np.union1d(fires, ex.random_neg)))
    apart = np.concatenate([fires, ex.heldout_neg, ex.heldout_hard])
    assert len(ex.hard_neg) == len(ex.shown_pos) == 16
    np.testing.assert_array_equal(ex.hard_neg, nearest(ex.shown_pos, apart))
    # nearer to their own activating documents than random documents are
    assert (emb[ex.heldout_hard] * emb[ex.heldout_pos]).sum(1).mean() > (emb[ex.heldout_neg] @ emb[ex.heldout_pos].T).mean() + 0.3


def test_vocabulary_phrases_are_readable():
    texts = [
        "We study graph neural networks for molecules. Graph neural networks are strong.",
        "Graph neural networks on citation graphs, state of the art in node classification.",
        "A survey of graph neural networks and LSTM models; LSTM training is slow.",
        "Protein folding with deep networks. LSTM baselines.",
    ]
    v = build_vocabulary(texts, min_df=2, max_df=1.0)
    assert "graph neural networks" in v.phrases
    assert not any(p.split()[0] in {"the", "of", "and", "we"} or p.split()[-1] in {"the", "of", "and"} for p in v.phrases)
    assert "molecules graph" not in v.phrases  # does not cross sentence ends
    assert v.display[v.phrases.index("lstm")] == "LSTM"
    row = v.phrases.index("graph neural networks")
    assert v.df[row] == 3 and v.matrix[:, row].sum() == 3


def test_vocabulary_marks_phrases_that_stand_alone():
    texts = [
        "A theoretical analysis of Monte Carlo methods for question answering. We penalize outliers.",
        r"Theoretical analysis of Monte Carlo sampling and question answering; to penalize the Schr\"odinger equation.",
        "Question answering with theoretical analysis of Monte Carlo, and we penalize errors.",
        r"The Schr\"odinger equation and Monte Carlo methods for the Schr\"odinger equation.",
    ]
    v = build_vocabulary(texts, min_df=2, max_df=1.0)
    ok = dict(zip(v.phrases, v.standalone))
    assert ok["monte carlo"] and ok["question answering"] and ok["theoretical analysis"]
    assert not ok["theoretical"]  # always modifies the next word
    assert not ok["monte"]  # always cut off a longer name
    assert not ok["answering"]  # always the tail of "question answering"
    assert not ok["penalize"]  # a verb: after "we" or "to"
    assert "schrodinger equation" in v.phrases and "schr" not in v.phrases  # LaTeX accents undone


def test_vocabulary_drops_adjectives_verbs_and_links_and_keeps_mixed_case_names():
    texts = [
        "The decoder is flexible. ResNeXt settles the question by carrying labels. Code: https://github.com/x",
        "A flexible decoder with ResNeXt backbones; the model settles the debate while carrying weights.",
        "Flexible decoders are more flexible. ResNeXt settles the issue by carrying noise. https://github.com/y",
        "ResNeXt and flexible decoder training.",
    ]
    v = build_vocabulary(texts, min_df=2, max_df=1.0)
    ok = dict(zip(v.phrases, v.standalone))
    assert ok["decoder"]
    assert not ok["flexible"]  # an adjective: before a noun or after "is"/"more"
    assert not ok["settles"]  # a verb: before its object
    assert not ok["carrying"]  # a verb: after "by"/"while"
    assert "https" not in v.phrases and "github" not in v.phrases
    assert v.display[v.phrases.index("resnext")] == "ResNeXt"


def _toy_labeller(n_docs: int = 300, seed: int = 0):
    """Documents made of topic words, a fake embedder that sums word vectors, and an SAE 'encoder' whose feature 0
    points at the topic 'quantum chaos'."""
    from embedsae.interpret.examples import FeatureExamples

    rng = np.random.default_rng(seed)
    words = ["quantum", "chaos", "galaxy", "clusters", "protein", "folding", "graph", "kernels", "common", "method"]
    wvec = {w: rng.normal(size=16) for w in words}
    wvec["common"] += 6 * np.eye(16)[0]  # a word on every document, far from all topics

    def embed(phrases):
        out = np.stack([sum(wvec[w] for w in p.lower().replace(",", " ").split() if w in wvec) + 3 * np.eye(16)[0]
                        for p in phrases])
        return out / np.linalg.norm(out, axis=1, keepdims=True)

    topics = ["quantum chaos", "galaxy clusters", "protein folding", "graph kernels"]
    texts = [f"{topics[i % 4]} and common method. {topics[(i * 7 + 1) % 4] if i % 3 else ''}" for i in range(n_docs)]
    docs = embed(texts)
    encoder = np.zeros((2, 16), np.float32)
    encoder[0] = wvec["quantum"] + wvec["chaos"]
    encoder[1] = wvec["protein"] + wvec["folding"]
    fires = np.flatnonzero(["quantum chaos" in t for t in texts])
    ex = FeatureExamples(feature=0, top=fires[:12], top_act=np.ones(12), quantile=fires[12:20],
                         quantile_act=np.ones(8), random_neg=np.flatnonzero(["quantum" not in t for t in texts])[:20],
                         hard_neg=np.zeros(0, np.int64), heldout_pos=fires[20:40], heldout_pos_act=np.ones(20),
                         heldout_neg=np.zeros(0, np.int64), heldout_hard=np.zeros(0, np.int64))
    vocab = build_vocabulary(texts, min_df=2, max_df=0.9)
    titles = [t.split(".")[0] for t in texts]
    return KeywordLabeller(vocab, docs, encoder, PhraseEmbeddings(embed), titles=titles), ex


def test_keyword_labeller_names_and_describes_what_discriminates():
    lab, ex = _toy_labeller()
    (made,) = lab.label_batch([ex], None)
    label, detail = made.name, made.detail
    assert label is not None and "quantum chaos" in label.lower() and "common" not in label.lower()
    assert 1 <= len(label.split()) <= 6 and detail["rank_score"] == max(detail["candidates"].values())
    assert made.description.lower().startswith(label.lower()) and len(made.description.split()) <= 30
    # the held-out examples play no part in the choice
    import dataclasses

    blind = dataclasses.replace(ex, heldout_pos=np.zeros(0, np.int64), heldout_pos_act=np.zeros(0))
    again = lab.label_batch([blind], None)[0]
    assert (again.name, again.description) == (label, made.description)


def test_keyword_labeller_weighs_the_shown_hard_negatives():
    import dataclasses

    from embedsae.interpret.keywords import _Feature
    from embedsae.interpret.scorers import auc_matrix

    lab, ex = _toy_labeller()
    ex = dataclasses.replace(ex, hard_neg=ex.random_neg[:8])
    vecs = lab.phrase_emb.get(["quantum chaos", "common method", "galaxy clusters"])
    a_hard = auc_matrix(vecs @ lab.docs[ex.shown_pos].T, vecs @ lab.docs[ex.hard_neg].T)
    f = _Feature(lab, ex)
    base = f.criterion(lab, vecs)
    lab.hard_weight = 3.0
    assert np.allclose(f.criterion(lab, vecs) - base, 2.0 * a_hard)


def test_category_scores_by_hand():
    # 6 documents, feature 0 fires on 0,1,2; categories: a on 0,1,3; b on 2,4,5
    codes = sp.csr_matrix(np.array([[1, 0], [1, 0], [1, 1], [0, 1], [0, 0], [0, 0]], np.float32))
    cats = [["a"], ["a"], ["b"], ["a"], ["b"], ["b"]]
    s = category_scores(codes, cats, [0, 1], min_docs=2)
    assert s[0]["category"] == "a"
    assert s[0]["category_precision"] == pytest.approx(2 / 3) and s[0]["category_recall"] == pytest.approx(2 / 3)
    assert s[1]["category_f1"] == pytest.approx(2 * 0.5 * (1 / 3) / (0.5 + 1 / 3))


def test_store_roundtrip_and_export(tmp_path):
    import pandas as pd

    with FeatureStore(tmp_path / "features.db") as st:
        st.write_stats([(0, 0.1, 0.5, 0.9, 10), (1, 0.0, 0.0, 0.0, 0)])
        st.write_batch(labels={0: ("graph neural networks", "keywords", {"x": 1})},
                       scores={0: {"embedding_auc": 0.9, "llm_f1": None}}, run=3)
        assert st.done_ids("keywords") == {0} and st.done_ids("llm:m") == set()
        t = st.table()
    assert t.loc[t.id == 0, "embedding_auc"].item() == 0.9 and np.isnan(t.loc[t.id == 0, "llm_f1"].item())
    for suffix in (".csv", ".parquet", ".json"):
        path = export_table(t, tmp_path / f"out{suffix}")
        if suffix == ".csv":
            back = pd.read_csv(path)
            assert back.loc[0, "label"] == "graph neural networks"
        elif suffix == ".parquet":
            assert pd.read_parquet(path)["embedding_auc"].iloc[0] == 0.9
        else:
            import json

            recs = json.loads(path.read_text())
            assert recs[0]["scores"]["embedding_auc"] == 0.9 and recs[1]["label"] is None
    with pytest.raises(InputError, match=r"\.csv, \.json or \.parquet"):
        export_table(t, tmp_path / "out.xlsx")
    assert not list(tmp_path.glob("*.xlsx")) and not list(tmp_path.glob(".out*"))


def test_run_pipeline_has_the_interpret_stage():
    from embedsae import pipeline
    from embedsae.interpret.stage import run_stage

    assert run_stage in list(pipeline.run_stages())


def test_feature_stats_with_dead_latents_at_both_ends():
    """Dead first and last latents (empty CSC columns at the edges) give zeros, not an index error."""
    import numpy as np
    import scipy.sparse as sp

    from embedsae.interpret.stage import feature_stats

    dense = np.array([[0.0, 0.5, 0.0, 0.0], [0.0, 0.25, 2.0, 0.0], [0.0, 0.0, 1.0, 0.0]])
    n_active, density, act_mean, act_max = feature_stats(sp.csc_matrix(dense), n_docs=3)
    assert n_active.tolist() == [0, 2, 2, 0]
    np.testing.assert_allclose(density, [0, 2 / 3, 2 / 3, 0])
    np.testing.assert_allclose(act_mean, [0, 0.375, 1.5, 0])
    np.testing.assert_allclose(act_max, [0, 0.5, 2.0, 0])



def test_coherence_and_mixture_by_hand():
    from embedsae.interpret.scorers import coherence, is_mixture

    e = np.eye(4, dtype=np.float32)
    close = _unit_rows(np.array([[1, 0.1, 0, 0], [1, -0.1, 0, 0], [1, 0, 0.1, 0], [1, 0, -0.1, 0]]))
    assert coherence(close, np.arange(4)) > 0.95 and coherence(close, np.arange(1)) is None
    assert coherence(e, np.arange(4)) == pytest.approx(0.0)
    two = _unit_rows(np.array([[1, 0.1, 0, 0], [1, -0.1, 0, 0], [1, 0, 0.1, 0],
                               [0, 0, 0.1, 1], [0, 0, -0.1, 1], [0, 0.1, 0, 1]]))
    assert is_mixture(two, np.arange(6)) and not is_mixture(close, np.arange(4))
    lopsided = np.concatenate([close, two[3:4]])  # one stray document is no second group
    assert not is_mixture(lopsided, np.arange(5))


def _unit_rows(x):
    x = np.asarray(x, np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_embedding_scores_against_hard_negatives():
    from embedsae.interpret.examples import FeatureExamples
    from embedsae.interpret.scorers import embedding_scores

    # positives along x, random negatives along z, hard negatives between (closer to the label than random ones
    # but less close than positives for one label direction, closer for another)
    docs = _unit_rows(np.array([[1, 0.1, 0], [1, 0.2, 0], [0, 0, 1], [0, 0.1, 1], [1, 1, 0], [1, 1.2, 0]]))
    none = np.zeros(0, np.int64)
    ex = FeatureExamples(0, none, np.zeros(0), none, np.zeros(0), none, none, heldout_pos=np.array([0, 1]),
                         heldout_pos_act=np.ones(2), heldout_neg=np.array([2, 3]), heldout_hard=np.array([4, 5]))
    s = embedding_scores(np.array([1, 0, 0.0]), docs, ex)
    assert s["embedding_auc"] == 1.0 and s["embedding_auc_hard"] == 1.0 and s["embedding_auc_combined"] == 1.0
    s = embedding_scores(np.array([1, 1, 0.0]), docs, ex)  # on topic but not precise: the hard negatives win
    assert s["embedding_auc"] == 1.0 and s["embedding_auc_hard"] == 0.0 and s["embedding_auc_combined"] == 0.5


def test_clean_filter_uses_the_hard_negative_auc(tmp_path):
    from embedsae.interpret.stage import CleanConfig, apply_clean_filter

    with FeatureStore(tmp_path / "features.db") as st:
        st.write_stats([(f, 0.01, 0.5, 0.9, 20) for f in range(3)])
        st.write_batch(labels={f: (f"label {f}", "keywords", {}) for f in range(3)},
                       scores={0: {"embedding_auc": 0.95, "embedding_auc_hard": 0.8},
                               1: {"embedding_auc": 0.95, "embedding_auc_hard": 0.3},
                               2: {"embedding_auc": 0.95}})
        assert apply_clean_filter(st, CleanConfig()) == 2
        assert set(st.table().query("clean")["id"]) == {0, 2}  # 1 is on topic but not precise
        assert apply_clean_filter(st, CleanConfig(min_embedding_auc_hard=0.0)) == 3
    with pytest.raises(InputError, match="min_embedding_auc_hard"):
        CleanConfig(min_embedding_auc_hard=1.5)


# ---------------------------------------------------------------------------- names and descriptions
def test_names_and_descriptions_are_cut_to_their_lengths():
    from embedsae.interpret.labellers import MAX_DESCRIPTION_WORDS, MAX_NAME_WORDS, Label, as_label, is_one_phrase

    long_name = "a name of far more than six words in it"
    long_desc = " ".join(f"w{i}," for i in range(40))
    lab = as_label(Label(long_name, long_desc, {"x": 1}))
    assert len(lab.name.split()) == MAX_NAME_WORDS == 6 and lab.detail == {"x": 1}
    assert len(lab.description.split()) == MAX_DESCRIPTION_WORDS == 30 and lab.description.endswith("…")
    assert as_label(("graph kernels", {})) == Label("graph kernels", None, {})  # a (name, detail) pair
    assert as_label(None) is None and as_label(Label("  ", "")).name is None
    assert is_one_phrase("Dirac equation in curved spacetime") and is_one_phrase("LSTM")
    for listed in ("galaxies, stars and dust", "graphs and kernels", "mixed: A / B", "A; B", long_name):
        assert not is_one_phrase(listed), listed


def test_describe_joins_the_name_and_its_parts_within_thirty_words():
    from embedsae.interpret.keywords import describe

    assert describe("graph kernels", ["Weisfeiler-Lehman test", "molecules", "subtree patterns"]) == (
        "Graph kernels: Weisfeiler-Lehman test, molecules; set apart by subtree patterns.")
    assert describe("graph kernels", ["kernel methods", "molecules"]) == "Graph kernels; set apart by molecules."
    assert describe("LSTM", []) == "LSTM."
    many = [f"phrase number {i} of six" for i in range(10)]
    text = describe("a name", many)
    assert len(text.split()) <= 30 and text.endswith("set apart by phrase number 9 of six.")


def test_describe_says_what_sets_the_documents_apart_only_when_told():
    from embedsae.interpret.keywords import describe

    assert describe("graph kernels", ["molecules", "subtree patterns", "Weisfeiler-Lehman test"], set_apart=False) == (
        "Graph kernels: molecules, subtree patterns and Weisfeiler-Lehman test.")
    assert describe("graph kernels", ["molecules"], set_apart=False) == "Graph kernels: molecules."
    # the set-apart part shares a word with the name: left out, and the rest is no contrast
    assert describe("graph kernels", ["molecules", "kernel trick"]) == "Graph kernels: molecules."
    many = [f"phrase number {i} of six" for i in range(10)]
    text = describe("a name", many, set_apart=False)
    assert len(text.split()) <= 30 and "set apart" not in text and "phrase number 0 of six" in text


def _part_labeller():
    """A corpus of 120 documents: six about spiral galaxies (one also naming Alexander Fleming, two holding the
    extraction junk 'usingDeep'), their six nearest non-activating neighbours sharing 'dwarf galaxies' with them,
    and 'background noise' everywhere."""
    from embedsae.interpret.examples import FeatureExamples
    from embedsae.interpret.keywords import KeywordLabeller, PhraseEmbeddings

    fires = [f"spiral galaxy arms. dwarf galaxies nearby. background noise. time-series usingDeep {i}" if i < 2 else
             f"spiral galaxy arms. dwarf galaxies nearby. background noise {i}" for i in range(6)]
    fires[3] += ". Alexander Fleming"
    hard = [f"dwarf galaxies nearby. background noise. stellar dust {i}" for i in range(6)]
    rest = [f"background noise. protein folding {i}. time-series analysis. deep learning" for i in range(108)]
    rest[0] += ". Alexander Fleming"  # in the vocabulary, but in one activating document only
    texts = fires + hard + rest
    vocab = build_vocabulary(texts, min_df=2, max_df=1.0)
    rng = np.random.default_rng(0)
    docs = rng.normal(size=(len(texts), 8)).astype(np.float32)
    docs /= np.linalg.norm(docs, axis=1, keepdims=True)
    lab = KeywordLabeller(vocab, docs, rng.normal(size=(1, 8)), PhraseEmbeddings(lambda t: rng.normal(size=(len(t), 8))))
    none = np.zeros(0, np.int64)
    ex = FeatureExamples(feature=0, top=np.arange(6), top_act=np.ones(6), quantile=none, quantile_act=np.zeros(0),
                         random_neg=np.arange(12, 32), hard_neg=np.arange(6, 12), heldout_pos=none,
                         heldout_pos_act=np.zeros(0), heldout_neg=none, heldout_hard=none)
    return lab, ex


def test_description_parts_are_grounded_specific_and_not_junk():
    lab, ex = _part_labeller()
    texts = ["spiral galaxy", "dwarf galaxies", "Alexander Fleming", "background noise", "time-series usingDeep",
             "spiral galaxy arms"]
    ids = [lab.vocab.index(t.lower()) for t in texts[:4]]
    assert None not in ids
    covers = [[i] if i is not None else [] for i in ids] + [lab.vocab.cover("time-series usingdeep".split()),
                                                             lab.vocab.cover("spiral galaxy arms".split())]
    part, contrasting = lab.part_tests(ex, texts, covers)
    by = dict(zip(texts, zip(part.tolist(), contrasting.tolist())))
    assert by["spiral galaxy"] == (True, True)  # in all six, never in their nearest neighbours
    assert by["spiral galaxy arms"] == (True, True)  # a run covered by phrases the documents hold together
    assert by["dwarf galaxies"] == (True, False)  # shared, but their neighbours hold it too: no contrast
    assert by["Alexander Fleming"] == (False, False)  # one document only
    assert by["background noise"] == (False, False)  # everywhere: generic
    assert by["time-series usingDeep"] == (False, False)  # in two documents, but glued by text extraction
    assert lab.glued("time-series usingDeep") and not lab.glued("arXiv preprints") and not lab.glued("ResNeXt")
    # a feature showing one document: a part is in it and rare in the corpus
    import dataclasses

    one = dataclasses.replace(ex, top=np.asarray([3]), hard_neg=np.asarray([9]))
    assert lab.part_tests(one, texts[2:4], covers[2:4])[0].tolist() == [True, False]


def test_title_chunks_read_as_names():
    from embedsae.interpret.phrases import title_chunks

    v = build_vocabulary([
        "Deep residual learning for image recognition. Image recognition with residual networks.",
        "Image recognition and image classification; image segmentation of images.",
        "We study image recognition. Residual learning helps image recognition in practice.",
    ], min_df=1, max_df=1.0)
    chunks = title_chunks("Deep Residual Learning for Image Recognition", v)
    assert "deep residual learning for image recognition" in chunks and "residual learning" in chunks
    assert not any(c.split()[-1] == "image" for c in chunks)  # "image" mostly modifies the next word
    assert all(2 <= len(c.split()) <= 6 for c in chunks)
    assert title_chunks("Attention Is All You Need", v) == []
    assert "wing in a slipstream" in title_chunks("experimental investigation of the aerodynamics of a wing in a "
                                                  "slipstream .")


def test_vocabulary_counted_on_a_sample_finds_other_documents_phrases():
    texts = [f"graph neural networks and protein folding, text {i}" for i in range(50)]
    texts += ["a lone text on protein folding and graph neural networks"]
    full = build_vocabulary(texts, min_df=2, max_df=1.0)
    part = build_vocabulary(texts, min_df=2, max_df=1.0, sample=20)
    assert part.matrix.shape[0] == 20 and part.n_docs == full.n_docs == 51
    assert "graph neural networks" in part.phrases
    rows = [0, 50, 7]
    got = part.rows(rows)
    for r, d in enumerate(rows):
        want = {full.phrases[i] for i in full.rows([d]).indices}
        assert {part.phrases[i] for i in got[r].indices} == want & set(part.phrases)
    i = part.phrases.index("protein folding")
    assert part.df[i] == pytest.approx(51, rel=0.1)  # document frequency scaled to the corpus


def test_names_shared_by_features_are_told_apart_by_their_contrast():
    from embedsae.interpret.names import distinct_share, name_key, rename_shared

    assert name_key("Backdoor  Attacks") == name_key("backdoor attack") and name_key("glass") == "glass"
    names = {1: "Dirac equation", 2: "Dirac equation", 3: "dirac equations", 4: "graphene", 5: "spacetime"}
    candidates = {1: {"Dirac equation": 2.0, "graphene": 1.9, "Dirac materials": 1.5},
                  2: {"Dirac equation": 1.9, "curved spacetime": 1.6},
                  3: {"Dirac equation": 1.8, "Dirac sea": 1.2}}
    # how well each candidate separates a member's documents from the other members' (given)
    sep = {(1, "Dirac materials"): 0.9, (2, "curved spacetime"): 0.95, (3, "Dirac sea"): 0.8}

    def contrast(f, others, cands):
        assert f not in others and set(others) <= {1, 2, 3}
        return np.asarray([sep.get((f, c), 0.5) for c in cands])

    renamed = rename_shared(names, candidates, contrast)
    # 1 keeps the shared name (best), 2 and 3 get what sets them apart; "graphene" belongs to feature 4
    assert renamed == {2: "curved spacetime", 3: "Dirac sea"}
    final = {**names, **renamed}
    assert distinct_share(list(final.values())) == 1.0
    assert distinct_share(list(names.values())) == pytest.approx(2 / 5)
    # a member without a free candidate keeps the shared name
    assert rename_shared({1: "x", 2: "x"}, {1: {"x": 1.0}, 2: {"x": 0.5}}, lambda f, o, c: np.zeros(len(c))) == {}
    # a name another feature has is never given, though it is only that feature's (4's "graphene"), nor is
    # a name of a feature whose labeller stored no candidates taken from it
    renamed = rename_shared({1: "x", 2: "x", 4: "graphene", 6: "y", 7: "y"},
                            {1: {"graphene": 9.0, "x": 1.0, "v": 0.5}, 2: {"Graphenes": 8.0, "z": 0.1},
                             7: {"y": 5.0, "w": 1.0}}, lambda f, o, c: np.zeros(len(c)))
    assert renamed == {1: "v", 7: "w"}


def test_a_feature_store_of_before_descriptions_still_opens(tmp_path):
    """A features.db written before the description column: read as it is (descriptions empty), and given the
    column when opened for writing."""
    import sqlite3

    path = tmp_path / "features.db"
    con = sqlite3.connect(path)
    con.executescript("""
        CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT);
        CREATE TABLE features (id INTEGER PRIMARY KEY, label TEXT, labeller TEXT, density REAL, act_mean REAL,
            act_max REAL, n_active INTEGER, category TEXT, clean INTEGER DEFAULT 0, status TEXT, run INTEGER,
            updated TEXT);
        CREATE TABLE labels (feature INTEGER, labeller TEXT, label TEXT, detail TEXT, created TEXT,
            PRIMARY KEY (feature, labeller));
        CREATE TABLE scores (feature INTEGER, scorer TEXT, value REAL, PRIMARY KEY (feature, scorer));
        INSERT INTO features VALUES (0, 'graph kernels', 'keywords', 0.1, 0.5, 0.9, 10, NULL, 1, 'done', 1, 'x');
        INSERT INTO scores VALUES (0, 'embedding_auc', 0.9);
        INSERT INTO meta VALUES ('interpreted', 'true');
    """)
    con.close()
    store = FeatureStore.read(path)
    t = store.table()
    store.close()
    assert t.loc[0, "label"] == "graph kernels" and t["description"].isna().all()
    assert t.loc[0, "embedding_auc"] == 0.9 and np.isnan(t.loc[0, "description_auc"])
    with FeatureStore(path) as st:
        st.write_stats([(1, 0.2, 0.4, 0.8, 12)])
        st.write_batch(labels={1: ("spectral graph theory", "keywords", {})}, scores={}, descriptions={1: "Graphs."})
        t = st.table().set_index("id")
    assert t.loc[0, "label"] == "graph kernels" and t.loc[1, "description"] == "Graphs."


def test_stop_words_are_scikit_learns():
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

    from embedsae.interpret.stopwords import ENGLISH_STOP_WORDS as copied

    assert copied == frozenset(ENGLISH_STOP_WORDS)
