"""Corpus readers: JSONL, CSV, Parquet files, BEIR folders and Hugging Face datasets.

Every reader returns a `pandas.DataFrame` with an `id` (string) and a `text` column, plus any other
fields of the records as metadata columns (title, categories, year, ...). When a title field is
present, `text` is the title and the body joined as ``title\\n\\nbody``.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import InputError

DEFAULT_TEXT_FIELDS = ("text", "abstract", "body", "content", "passage", "summary", "extract", "sentence", "word")
DEFAULT_ID_FIELDS = ("id", "_id", "doc_id", "docid", "corpus-id", "pid")
DEFAULT_TITLE_FIELDS = ("title",)


class EmptyTextWarning(UserWarning):
    """Some records have no text; they are kept with empty text."""


class StructuredTextWarning(UserWarning):
    """Some records hold a list or an object where text was expected."""


@dataclass
class BeirData:
    """A BEIR-layout benchmark: corpus, queries, and graded relevance judgements per split."""

    corpus: pd.DataFrame
    queries: pd.DataFrame
    qrels: dict[str, dict[str, dict[str, int]]] = field(default_factory=dict)

    def split(self, name: str) -> dict[str, dict[str, int]]:
        """Relevance judgements of one split: query id -> {doc id: grade}."""
        if name not in self.qrels:
            have = ", ".join(sorted(self.qrels)) or "none"
            raise InputError(f"the BEIR folder has no qrels split '{name}' (found: {have}); set `split` to one of those")
        return self.qrels[name]


def is_beir_folder(path: str | os.PathLike) -> bool:
    """True when `path` is a folder holding a BEIR `corpus.jsonl`."""
    return Path(path).is_dir() and (Path(path) / "corpus.jsonl").is_file()


CHUNK_ROWS = 65_536
"""Records read and normalised at a time when a corpus file is streamed (`iter_corpus`)."""


def _suffix(path: Path) -> str:
    return "".join(path.suffixes[-2:]).lower() if path.suffix == ".gz" else path.suffix.lower()


def iter_records(path: str | os.PathLike, chunk_rows: int | None = None) -> Iterator[pd.DataFrame]:
    """The raw records of a JSONL, JSON (list or mapping of objects), CSV/TSV or Parquet file, `chunk_rows` at a
    time, so a file of any size is read with bounded memory (a .json document is parsed whole: JSON cannot be
    read in parts)."""
    path = Path(path)
    chunk_rows = chunk_rows or CHUNK_ROWS
    if not path.exists():
        raise InputError(f"corpus file not found: {path}")
    suffix = _suffix(path)
    if suffix in (".jsonl", ".jsonl.gz", ".ndjson"):
        chunks = (pd.DataFrame(rows) for rows in _jsonl_chunks(path, chunk_rows))
    elif suffix == ".json":
        chunks = _json_chunks(path, chunk_rows)
    elif suffix in (".csv", ".csv.gz", ".tsv", ".tsv.gz"):
        sep = "\t" if suffix.startswith(".tsv") else ","
        chunks = pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False, encoding="utf-8-sig", chunksize=chunk_rows)
    elif suffix in (".parquet", ".pq"):
        chunks = _parquet_chunks(path, chunk_rows)
    else:
        raise InputError(
            f"cannot read '{path.name}': unknown file type '{suffix or '(none)'}'. "
            "Use a .jsonl, .json, .csv, .tsv or .parquet file, or a BEIR folder with corpus.jsonl"
        )
    it = iter(chunks)
    while True:
        try:
            df = next(it)
        except StopIteration:
            return
        except InputError:
            raise
        except Exception as exc:  # parser errors of pandas / pyarrow
            raise InputError(f"could not parse {path}: {exc}") from exc
        drop = [c for c in df.columns if str(c).startswith("Unnamed: ")]
        yield df.drop(columns=drop) if drop else df


def read_records(path: str | os.PathLike) -> pd.DataFrame:
    """Read a JSONL, JSON (list of objects), CSV/TSV or Parquet file into a raw DataFrame."""
    parts = list(iter_records(path))
    return pd.concat(parts, ignore_index=True) if len(parts) > 1 else (parts[0] if parts else pd.DataFrame())


def _jsonl_chunks(path: Path, chunk_rows: int) -> Iterator[list[dict]]:
    """The objects of a JSON-lines file, `chunk_rows` at a time (a UTF-8 byte-order mark is accepted; blank lines
    are skipped); a bad line is reported by its number."""
    import gzip

    opener = gzip.open if path.suffix == ".gz" else open
    rows: list[dict] = []
    with opener(path, "rt", encoding="utf-8-sig") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise InputError(f"{path}, line {number}, is not valid JSON: {exc.msg} (column {exc.colno})") from exc
            if not isinstance(obj, dict):
                raise InputError(f"{path}, line {number}, holds a {type(obj).__name__}, not an object with fields")
            rows.append(obj)
            if len(rows) == chunk_rows:
                yield rows
                rows = []
    if rows:
        yield rows


def _json_chunks(path: Path, chunk_rows: int) -> Iterator[pd.DataFrame]:
    with open(path, encoding="utf-8-sig") as f:
        try:
            obj = json.load(f)
        except json.JSONDecodeError as exc:
            raise InputError(f"{path} is not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}") from exc
    if isinstance(obj, dict):
        obj = [{"id": k, **v} if isinstance(v, dict) else {"id": k, "text": v} for k, v in obj.items()]
    for start in range(0, max(len(obj), 1), chunk_rows):
        yield pd.DataFrame(obj[start : start + chunk_rows])


def _parquet_chunks(path: Path, chunk_rows: int) -> Iterator[pd.DataFrame]:
    import pyarrow.parquet as pq

    f = pq.ParquetFile(path)
    try:
        empty = True
        for batch in f.iter_batches(batch_size=chunk_rows):
            empty = False
            yield batch.to_pandas()
        if empty:
            yield f.schema_arrow.empty_table().to_pandas()
    finally:
        f.close()


def _texts(values: pd.Series) -> tuple[pd.Series, int]:
    """The text field as strings (lists of strings joined with spaces, other structures written as JSON) and how
    many records held such a structure instead of text."""
    structured = values.map(lambda v: isinstance(v, (list, dict, tuple)))
    n = int(structured.sum())
    if not n:
        return values, 0

    def flat(v):
        if isinstance(v, (list, tuple)) and all(isinstance(x, str) for x in v):
            return " ".join(v)
        return json.dumps(v, ensure_ascii=False) if isinstance(v, (list, dict, tuple)) else v

    return values.map(flat), n


class CorpusNormaliser:
    """Turns raw record chunks into corpus chunks (`id`, `text`, then metadata columns) and checks the whole
    corpus across chunks: ids unique, some text, at least one record. Fields are chosen on the first chunk; ids
    default to row numbers counted over all chunks. Call `finish()` after the last chunk: it raises for an empty
    corpus or duplicate ids and warns once about records without text."""

    def __init__(self, *, text_field: str | None = None, title_field: str | None = None, id_field: str | None = None,
                 source: str = "corpus", texts_required: bool = True) -> None:
        self.fields = {"text": text_field, "title": title_field, "id": id_field}
        self.source = source
        self.texts_required = texts_required  # False: records that come with their vectors may have no text field
        self.rows = 0
        self._picked = False
        self._seen = np.zeros(0, np.uint64)  # sorted hashes of the ids so far
        self._dups: list[str] = []
        self._n_dups = 0
        self._empty: list[str] = []
        self._n_empty = 0
        self._n_structured = 0

    def _pick(self, columns: list[str]) -> None:
        f = self.fields
        f["text"] = _pick_field(columns, f["text"], DEFAULT_TEXT_FIELDS, "text", self.source,
                                required=self.texts_required)
        f["id"] = _pick_field(columns, f["id"], DEFAULT_ID_FIELDS, "id", self.source, required=False)
        f["title"] = _pick_field(columns, f["title"], DEFAULT_TITLE_FIELDS, "title", self.source, required=False)
        self._picked = True

    def chunk(self, df: pd.DataFrame) -> pd.DataFrame:
        """The corpus table of one chunk of raw records."""
        if not self._picked:
            if len(df) == 0:
                return df
            self._pick(list(df.columns))
        text_field, id_field, title_field = self.fields["text"], self.fields["id"], self.fields["title"]
        columns = list(df.columns)

        def column(name: str) -> pd.Series:
            return df[name].reset_index(drop=True) if name in df.columns else pd.Series([None] * len(df), dtype=object)

        n = len(df)
        ids = column(id_field).astype(str) if id_field else pd.Series([str(i) for i in range(self.rows, self.rows + n)])
        self._check_ids(ids)
        body, structured = _texts(column(text_field))
        self._n_structured += structured
        missing = body.isna() | (body.astype(str).str.strip() == "")
        if title_field:
            title = column(title_field).fillna("").astype(str).str.strip()
            body_s = body.fillna("").astype(str).str.strip()
            # Corpora such as Cranfield repeat the title as the body's first sentence: join only when it adds.
            repeated = [b.lower().startswith(t.lower()) for t, b in zip(title, body_s)]
            text = [b if (not t or rep) else (t if not b else f"{t}\n\n{b}") for t, b, rep in zip(title, body_s, repeated)]
            missing = missing & (title == "")
        else:
            text = body.fillna("").astype(str).tolist()
        if missing.any() and text_field is not None:
            bad = ids[missing.to_numpy()]
            self._n_empty += len(bad)
            self._empty += bad.iloc[: 5 - len(self._empty)].tolist() if len(self._empty) < 5 else []
        out = pd.DataFrame({"id": ids, "text": pd.Series(text, dtype=str)})
        for col in columns:
            if col in (text_field, id_field) or col in out.columns:
                continue
            out[col] = df[col].reset_index(drop=True)
        self.rows += n
        return out

    def _check_ids(self, ids: pd.Series) -> None:
        """Note ids seen before (in this chunk or an earlier one), by a 64-bit hash of each."""
        h = pd.util.hash_array(ids.to_numpy(dtype=object))
        order = np.argsort(h, kind="stable")
        hs = h[order]
        dup = np.zeros(len(h), bool)
        dup[order[1:][hs[1:] == hs[:-1]]] = True  # a repeat within the chunk
        pos = np.searchsorted(self._seen, h)
        dup |= (pos < len(self._seen)) & (self._seen[np.minimum(pos, len(self._seen) - 1)] == h) if len(self._seen) else False
        if dup.any():
            self._n_dups += int(dup.sum())
            for i in ids[dup]:
                if i not in self._dups and len(self._dups) < 5:
                    self._dups.append(i)
        self._seen = np.sort(np.concatenate([self._seen, hs]), kind="stable")

    def finish(self) -> None:
        """Raise for an empty corpus, duplicate ids or no text at all; warn once about records without text."""
        if self.rows == 0:
            raise InputError(f"the {self.source} is empty: it holds no records. Give a file with at least one record")
        if self._n_dups:
            shown = ", ".join(repr(x) for x in self._dups)
            raise InputError(
                f"the {self.source} has {self._n_dups} duplicate id(s) in field '{self.fields['id']}': {shown}. "
                "Ids must be unique; fix the data or set `id_field` to a unique field"
            )
        if self._n_structured:
            warnings.warn(
                f"{self._n_structured} record(s) of the {self.source} hold a list or object in text field "
                f"'{self.fields['text']}', not text; lists of strings were joined with spaces, other values written as "
                "JSON", StructuredTextWarning, stacklevel=3,
            )
        if self._n_empty:
            if self._n_empty == self.rows:
                raise InputError(f"no record of the {self.source} has text in field '{self.fields['text']}'; set "
                                 "`text_field` to the field that holds the text")
            shown = ", ".join(repr(x) for x in self._empty) + (", ..." if self._n_empty > 5 else "")
            # Kept (benchmarks such as Cranfield hold a few empty documents whose ids must stay), but reported.
            warnings.warn(
                f"{self._n_empty} record(s) of the {self.source} have no text in field '{self.fields['text']}' "
                f"(ids: {shown}); they are kept with empty text", EmptyTextWarning, stacklevel=3,
            )


def normalise_corpus(
    df: pd.DataFrame,
    *,
    text_field: str | None = None,
    title_field: str | None = None,
    id_field: str | None = None,
    source: str = "corpus",
    texts_required: bool = True,
) -> pd.DataFrame:
    """Turn raw records into a corpus table: `id`, `text`, then metadata columns; validate it. Without
    `texts_required` (records that come with their vectors), a corpus may hold no text field: its texts are empty."""
    norm = CorpusNormaliser(text_field=text_field, title_field=title_field, id_field=id_field, source=source,
                            texts_required=texts_required)
    out = norm.chunk(df)
    norm.finish()
    return out


def iter_corpus(
    path: str | os.PathLike,
    *,
    text_field: str | None = None,
    title_field: str | None = None,
    id_field: str | None = None,
    limit: int | None = None,
    chunk_rows: int | None = None,
    texts_required: bool = True,
) -> Iterator[pd.DataFrame]:
    """A corpus file or BEIR folder as validated corpus tables of at most `chunk_rows` rows (default CHUNK_ROWS), in
    order: memory stays bounded by a chunk whatever the file's size. The checks that need the whole corpus (unique ids, some
    text) run as the chunks go by; their errors are raised after the last chunk."""
    path = _corpus_file(path, limit)
    norm = CorpusNormaliser(text_field=text_field, title_field=title_field, id_field=id_field, source=str(path),
                            texts_required=texts_required)
    for raw in iter_records(path, chunk_rows):
        if limit is not None:
            raw = raw.iloc[: limit - norm.rows]
        if len(raw):
            yield norm.chunk(raw)
        if limit is not None and norm.rows >= limit:
            break
    norm.finish()


def read_corpus(
    path: str | os.PathLike,
    *,
    text_field: str | None = None,
    title_field: str | None = None,
    id_field: str | None = None,
    limit: int | None = None,
    texts_required: bool = True,
) -> pd.DataFrame:
    """Read a corpus from a JSONL/JSON/CSV/Parquet file or a BEIR folder into a validated corpus table (see
    `normalise_corpus` for `texts_required`)."""
    parts = list(iter_corpus(path, text_field=text_field, title_field=title_field, id_field=id_field, limit=limit,
                             texts_required=texts_required))
    return pd.concat(parts, ignore_index=True) if len(parts) > 1 else parts[0]


def _corpus_file(path: str | os.PathLike, limit: int | None) -> Path:
    path = Path(path)
    if limit is not None and limit < 1:
        raise InputError(f"the record limit must be at least 1, got {limit}")
    if path.is_dir():
        if not is_beir_folder(path):
            raise InputError(f"{path} is a folder but holds no corpus.jsonl; give a corpus file or a BEIR folder")
        path = path / "corpus.jsonl"
    return path


def read_beir(folder: str | os.PathLike) -> BeirData:
    """Read a BEIR folder: `corpus.jsonl`, `queries.jsonl` and every `qrels/<split>.tsv`."""
    folder = Path(folder)
    if not is_beir_folder(folder):
        raise InputError(f"{folder} is not a BEIR folder: it needs corpus.jsonl, queries.jsonl and qrels/<split>.tsv")
    corpus = read_corpus(folder)
    qpath = folder / "queries.jsonl"
    if not qpath.is_file():
        raise InputError(f"the BEIR folder {folder} has no queries.jsonl")
    queries = normalise_corpus(read_records(qpath), source=str(qpath))
    qrels: dict[str, dict[str, dict[str, int]]] = {}
    for tsv in sorted((folder / "qrels").glob("*.tsv")):
        table = pd.read_csv(tsv, sep="\t", dtype=str)
        need = {"query-id", "corpus-id", "score"}
        if not need <= set(table.columns):
            raise InputError(f"{tsv} needs the header 'query-id corpus-id score' (found {list(table.columns)})")
        split: dict[str, dict[str, int]] = {}
        for q, d, s in zip(table["query-id"], table["corpus-id"], table["score"]):
            split.setdefault(str(q), {})[str(d)] = int(s)
        qrels[tsv.stem] = split
    if not qrels:
        raise InputError(f"the BEIR folder {folder} has no qrels/<split>.tsv files")
    return BeirData(corpus=corpus, queries=queries, qrels=qrels)


def load_hf_dataset(
    name: str,
    *,
    split: str = "train",
    config: str | None = None,
    text_field: str | None = None,
    title_field: str | None = None,
    id_field: str | None = None,
    limit: int | None = None,
) -> pd.DataFrame:
    """Load a Hugging Face hub dataset (needs the `datasets` package and network access)."""
    from ..errors import require

    datasets = require("datasets", "Loading Hugging Face datasets", extra="hf")
    try:
        ds = datasets.load_dataset(name, config, split=split)
    except Exception as exc:
        raise InputError(f"could not load the Hugging Face dataset '{name}' (split '{split}'): {exc}") from exc
    if limit is not None:
        ds = ds.select(range(min(limit, len(ds))))
    return normalise_corpus(
        ds.to_pandas(), text_field=text_field, title_field=title_field, id_field=id_field, source=f"dataset {name}"
    )


def _pick_field(
    columns: list[str], chosen: str | None, defaults: tuple[str, ...], role: str, source: str, required: bool = True
) -> str | None:
    if chosen is not None:
        if chosen not in columns:
            raise InputError(
                f"the {source} has no {role} field '{chosen}' (its fields are: {', '.join(map(str, columns))}); "
                f"set `{role}_field` to one of those"
            )
        return chosen
    for name in defaults:
        if name in columns:
            return name
    if required:
        raise InputError(
            f"the {source} has no {role} field: none of {', '.join(defaults)} is among its fields "
            f"({', '.join(map(str, columns))}); set `{role}_field` to name it"
        )
    return None
