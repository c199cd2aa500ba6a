"""Corpora read and written chunk by chunk (a file of any size in bounded memory): the same rows as a whole read,
on the real arXiv abstracts as JSONL, CSV and Parquet; checks across chunks; the row stores read by row."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from embedsae import pipeline
from embedsae.data.corpus_store import TextStore, display_titles, write_corpus
from embedsae.data.readers import iter_corpus, iter_records, read_corpus
from embedsae.errors import InputError
from embedsae.workspace import corpus_fingerprint
from tests.conftest import shared_path


@pytest.fixture(scope="module")
def arxiv_files(tmp_path_factory) -> dict[str, object]:
    """The shared arXiv abstracts as the JSONL they are, and the same records as CSV and Parquet."""
    folder = tmp_path_factory.mktemp("arxiv-files")
    src = shared_path("arxiv", "abstracts.jsonl")
    raw = pd.DataFrame([json.loads(line) for line in src.read_text(encoding="utf-8").splitlines() if line.strip()])
    flat = raw.assign(categories=raw["categories"].map(lambda c: ",".join(c) if isinstance(c, list) else ""),
                      year=raw["year"].map(lambda y: "" if pd.isna(y) else str(int(y))))
    flat.to_csv(folder / "abstracts.csv", index=False)
    raw.to_parquet(folder / "abstracts.parquet")
    return {"jsonl": src, "csv": folder / "abstracts.csv", "parquet": folder / "abstracts.parquet"}


@pytest.mark.parametrize("kind", ["jsonl", "csv", "parquet"])
def test_chunked_reads_give_the_rows_of_a_whole_read(arxiv_files, kind):
    path = arxiv_files[kind]
    whole = read_corpus(path)
    assert len(whole) == 6276
    sizes = [len(raw) for raw in iter_records(path, chunk_rows=1000)]
    assert sizes == [1000] * 6 + [276]  # never more than a chunk in memory
    parts = list(iter_corpus(path, chunk_rows=1000))
    chunked = pd.concat(parts, ignore_index=True)
    assert list(chunked["id"]) == list(whole["id"]) and list(chunked["text"]) == list(whole["text"])
    assert corpus_fingerprint(chunked) == corpus_fingerprint(whole)
    limited = pd.concat(iter_corpus(path, chunk_rows=1000, limit=2500), ignore_index=True)
    assert list(limited["id"]) == list(whole["id"][:2500])


def test_checks_across_chunks(tmp_path):
    lines = [{"id": str(i), "text": f"text {i}"} for i in range(10)] + [{"id": "3", "text": "again"}]
    (tmp_path / "dup.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    with pytest.raises(InputError, match=r"1 duplicate id.*'3'"):
        list(iter_corpus(tmp_path / "dup.jsonl", chunk_rows=4))
    (tmp_path / "n.jsonl").write_text("".join(json.dumps({"text": f"t{i}"}) + "\n" for i in range(7)))
    ids = [i for part in iter_corpus(tmp_path / "n.jsonl", chunk_rows=3) for i in part["id"]]
    assert ids == [str(i) for i in range(7)]  # row numbers continue across chunks
    blank = [{"id": str(i), "text": "x" if i != 5 else " "} for i in range(8)]
    (tmp_path / "b.jsonl").write_text("".join(json.dumps(r) + "\n" for r in blank))
    with pytest.warns(UserWarning, match=r"1 record\(s\).*'5'"):
        list(iter_corpus(tmp_path / "b.jsonl", chunk_rows=3))


def test_writer_unifies_fields_that_only_later_chunks_have(tmp_path):
    first = pd.DataFrame({"id": ["a", "b"], "text": ["one", "two"]})
    later = pd.DataFrame({"id": ["c"], "text": ["three"], "year": [2021], "title": ["Three"]})
    mixed = pd.DataFrame({"id": ["d"], "text": ["four"], "year": ["unknown"]})
    out = write_corpus([first, later, mixed], tmp_path / "corpus.parquet")
    table = pd.read_parquet(out.path)
    assert list(table["id"]) == ["a", "b", "c", "d"] and out.rows == 4
    assert set(out.columns) == {"id", "text", "year", "title"}
    assert table["year"].tolist()[2:] == ["2021", "unknown"] and table["year"].isna().tolist()[:2] == [True, True]
    whole = pd.concat([first, later, mixed], ignore_index=True)
    assert out.fingerprint == corpus_fingerprint(whole)
    texts, titles, ids = (TextStore(out.texts, name) for name in ("texts", "titles", "ids"))
    assert texts[[3, 0]] == ["four", "one"] and list(ids) == ["a", "b", "c", "d"]
    assert list(titles) == display_titles(whole.assign(title=[None, None, "Three", None]))


def test_embed_streams_a_corpus_file_and_reads_texts_by_row(tmp_path, arxiv_files, monkeypatch):
    """The workspace made from a corpus file chunk by chunk holds the corpus of a whole read; its texts, titles and
    ids read by row are the table's; a multi-shard store is read by row without a copy of all vectors."""
    from embedsae.data import readers
    from embedsae.data.vectors import RowView

    monkeypatch.setattr(readers, "CHUNK_ROWS", 1000)  # seven chunks, joined by the writer
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(6276, 16)).astype(np.float32)
    np.save(tmp_path / "v.npy", vectors)
    from embedsae.data.embedding import EmbedSettings

    ws = pipeline.embed(arxiv_files["parquet"], tmp_path / "ws", vectors=tmp_path / "v.npy",
                        settings=EmbedSettings(shard_rows=2048))
    whole = read_corpus(arxiv_files["parquet"])
    table = ws.corpus
    assert list(table["id"]) == list(whole["id"]) and list(table["text"]) == list(whole["text"])
    assert ws.manifest["corpus_fingerprint"] == corpus_fingerprint(whole)
    rows = np.array([6275, 0, 4096, 17])
    assert ws.texts[rows] == [whole["text"][r] for r in rows]
    assert ws.titles_of(rows) == [ws.titles()[r] for r in rows]
    assert ws.row_store("ids")[rows] == [whole["id"][r] for r in rows]
    view = ws.embeddings
    assert isinstance(view, RowView) and view.shape == (6276, 16)
    np.testing.assert_array_equal(view[rows], vectors[rows])
    np.testing.assert_array_equal(view[2040:2060], vectors[2040:2060])  # across a shard boundary
