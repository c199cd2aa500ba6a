"""Corpus readers: formats, field choice, BEIR folders, and the errors bad input gets."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from embedsae.data.readers import EmptyTextWarning, load_hf_dataset, read_beir, read_corpus
from embedsae.errors import InputError
from tests.conftest import shared_path


def test_jsonl_title_and_text_joined(small_corpus):
    df = read_corpus(small_corpus)
    assert list(df["id"]) == ["a", "b", "c"]
    assert df.loc[0, "text"] == "Sparse autoencoders\n\nWe train sparse autoencoders on embeddings."
    assert "title" in df.columns


def test_csv_and_parquet_with_chosen_fields(tmp_path):
    raw = pd.DataFrame({"pid": ["x1", "x2"], "body": ["first text", "second text"], "year": [2020, 2021]})
    raw.to_csv(tmp_path / "c.csv", index=False)
    raw.to_parquet(tmp_path / "c.parquet")
    for name in ("c.csv", "c.parquet"):
        df = read_corpus(tmp_path / name, id_field="pid", text_field="body")
        assert list(df["id"]) == ["x1", "x2"]
        assert list(df["text"]) == ["first text", "second text"]
        assert "year" in df.columns


def test_rows_numbered_when_no_id_field(tmp_path):
    (tmp_path / "n.jsonl").write_text('{"text": "one"}\n{"text": "two"}\n')
    assert list(read_corpus(tmp_path / "n.jsonl")["id"]) == ["0", "1"]


def test_empty_corpus_is_an_error(tmp_path):
    (tmp_path / "e.csv").write_text("id,text\n")
    with pytest.raises(InputError, match="empty"):
        read_corpus(tmp_path / "e.csv")


def test_duplicate_ids_are_named(tmp_path):
    (tmp_path / "d.jsonl").write_text('{"id": "7", "text": "a"}\n{"id": "7", "text": "b"}\n')
    with pytest.raises(InputError, match=r"duplicate id.*'7'"):
        read_corpus(tmp_path / "d.jsonl")


def test_missing_text_field_lists_fields(tmp_path):
    (tmp_path / "m.jsonl").write_text('{"id": "1", "content2": "a"}\n')
    with pytest.raises(InputError, match=r"no text field.*content2.*`text_field`"):
        read_corpus(tmp_path / "m.jsonl")
    with pytest.raises(InputError, match=r"no text field 'body'"):
        read_corpus(tmp_path / "m.jsonl", text_field="body")


def test_blank_texts_are_reported_by_id_and_kept(tmp_path):
    (tmp_path / "b.jsonl").write_text('{"id": "ok", "text": "fine"}\n{"id": "bad", "text": "  "}\n')
    with pytest.warns(EmptyTextWarning, match=r"no text.*'bad'"):
        df = read_corpus(tmp_path / "b.jsonl")
    assert list(df["id"]) == ["ok", "bad"]
    (tmp_path / "all.jsonl").write_text('{"id": "x", "text": ""}\n')
    with pytest.raises(InputError, match="no record .* has text"):
        read_corpus(tmp_path / "all.jsonl")


def test_unknown_file_type_and_missing_file(tmp_path):
    (tmp_path / "x.xml").write_text("<a/>")
    with pytest.raises(InputError, match="unknown file type"):
        read_corpus(tmp_path / "x.xml")
    with pytest.raises(InputError, match="not found"):
        read_corpus(tmp_path / "nope.jsonl")


def test_beir_cranfield():
    folder = shared_path("cranfield")
    with pytest.warns(EmptyTextWarning, match="'471', '995'"):
        beir = read_beir(folder)
    assert len(beir.corpus) == 1400
    assert len(beir.queries) == 225
    test = beir.split("test")
    assert sum(len(v) for v in test.values()) == 1612
    # Cranfield repeats its title as the first sentence of the text: it is not joined twice.
    first = beir.corpus.loc[0, "text"]
    assert first.startswith("experimental investigation") and "\n\n" not in first
    with pytest.raises(InputError, match="no qrels split 'dev'"):
        beir.split("dev")


def test_arxiv_metadata_kept():
    df = read_corpus(shared_path("arxiv", "abstracts.jsonl"))
    assert len(df) == 6276
    assert {"title", "categories", "year"} <= set(df.columns)


def test_beir_folder_without_corpus(tmp_path):
    with pytest.raises(InputError, match="no corpus.jsonl"):
        read_corpus(tmp_path)


def test_hf_loader_needs_network_or_skips(tmp_path):
    pytest.importorskip("datasets", reason="the 'datasets' package (extra 'hf') is not installed")
    import socket

    try:
        socket.create_connection(("huggingface.co", 443), timeout=3).close()
    except OSError:
        pytest.skip("no network: Hugging Face hub datasets cannot be loaded here")
    df = load_hf_dataset("mteb/scifact", config="corpus", split="corpus", limit=5)
    assert len(df) == 5 and df["text"].str.len().min() > 0


def test_json_mapping_file(tmp_path):
    (tmp_path / "m.json").write_text(json.dumps({"k1": {"text": "alpha"}, "k2": {"text": "beta"}}))
    df = read_corpus(tmp_path / "m.json")
    assert list(df["id"]) == ["k1", "k2"]


def test_vectors_given_with_their_ids_alone_make_a_workspace_without_texts(tmp_path):
    """A corpus of ids only is enough when the vectors come with it (a vectors-only workspace: titles are the
    ids); without vectors the text field is still required."""
    import numpy as np

    from embedsae import pipeline

    rng = np.random.default_rng(0)
    ids = pd.DataFrame({"id": [f"v{i}" for i in range(50)], "year": range(50)})
    ws = pipeline.embed(ids, tmp_path / "ws", vectors=rng.normal(size=(50, 16)).astype(np.float32))
    assert ws.n_documents == 50 and ws.titles()[:2] == ["v0", "v1"] and set(ws.corpus["text"]) == {""}
    assert "year" in ws.corpus.columns and not ws.can_embed
    with pytest.raises(InputError, match="no text field"):
        pipeline.embed(ids, tmp_path / "ws2")
