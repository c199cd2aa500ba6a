"""Corpus readers: JSONL, CSV, Parquet files, BEIR folders and Hugging Face datasets.

Every reader returns a `pandas.DataFrame` with an `id` (string) and a `text` column, plus any other
fields of the records as metadata columns (title, categories, year, ...). When a title field is
present, `text` is the title and the body joined as ``title\\n\\nbody``.
"""

from __future__ import annotations

import json
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path

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


def read_records(path: str | os.PathLike) -> pd.DataFrame:
    """Read a JSONL, JSON (list of objects), CSV/TSV or Parquet file into a raw DataFrame."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"corpus file not found: {path}")
    suffix = "".join(path.suffixes[-2:]).lower() if path.suffix == ".gz" else path.suffix.lower()
    try:
        if suffix in (".jsonl", ".jsonl.gz", ".ndjson"):
            df = pd.DataFrame(_read_jsonl(path))
        elif suffix == ".json":
            with open(path, encoding="utf-8-sig") as f:
                try:
                    obj = json.load(f)
                except json.JSONDecodeError as exc:
                    raise InputError(f"{path} is not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}") from exc
            if isinstance(obj, dict):
                obj = [{"id": k, **v} if isinstance(v, dict) else {"id": k, "text": v} for k, v in obj.items()]
            df = pd.DataFrame(obj)
        elif suffix in (".csv", ".csv.gz"):
            df = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig")
        elif suffix in (".tsv", ".tsv.gz"):
            df = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False, encoding="utf-8-sig")
        elif suffix in (".parquet", ".pq"):
            df = pd.read_parquet(path)
        else:
            raise InputError(
                f"cannot read '{path.name}': unknown file type '{suffix or '(none)'}'. "
                "Use a .jsonl, .json, .csv, .tsv or .parquet file, or a BEIR folder with corpus.jsonl"
            )
    except InputError:
        raise
    except Exception as exc:  # parser errors of pandas / pyarrow
        raise InputError(f"could not parse {path}: {exc}") from exc
    drop = [c for c in df.columns if str(c).startswith("Unnamed: ")]
    return df.drop(columns=drop)


def _read_jsonl(path: Path) -> list[dict]:
    """The objects of a JSON-lines file (a UTF-8 byte-order mark is accepted; blank lines are skipped); a bad
    line is reported by its number."""
    import gzip

    opener = gzip.open if path.suffix == ".gz" else open
    rows = []
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
    return rows


def _texts(values: pd.Series, field: str, source: str) -> pd.Series:
    """The text field as strings: lists of strings are joined with spaces, other structures written as JSON
    (with a warning, since that is rarely what was meant)."""
    structured = values.map(lambda v: isinstance(v, (list, dict, tuple)))
    if not structured.any():
        return values
    warnings.warn(
        f"{int(structured.sum())} record(s) of the {source} hold a list or object in text field '{field}', not "
        "text; lists of strings were joined with spaces, other values written as JSON",
        StructuredTextWarning,
        stacklevel=4,
    )

    def flat(v):
        if isinstance(v, (list, tuple)) and all(isinstance(x, str) for x in v):
            return " ".join(v)
        return json.dumps(v, ensure_ascii=False) if isinstance(v, (list, dict, tuple)) else v

    return values.map(flat)


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
    if len(df) == 0:
        raise InputError(f"the {source} is empty: it holds no records. Give a file with at least one record")
    columns = list(df.columns)
    text_field = _pick_field(columns, text_field, DEFAULT_TEXT_FIELDS, "text", source, required=texts_required)
    if text_field is None:
        df, text_field = df.assign(**{"\0text": ""}), "\0text"
    id_field = _pick_field(columns, id_field, DEFAULT_ID_FIELDS, "id", source, required=False)
    title_field = _pick_field(columns, title_field, DEFAULT_TITLE_FIELDS, "title", source, required=False)

    ids = df[id_field].astype(str) if id_field else pd.Series([str(i) for i in range(len(df))])
    ids = ids.reset_index(drop=True)
    dup = ids[ids.duplicated()]
    if len(dup):
        shown = ", ".join(repr(x) for x in dup.unique()[:5])
        raise InputError(
            f"the {source} has {len(dup)} duplicate id(s) in field '{id_field}': {shown}. "
            "Ids must be unique; fix the data or set `id_field` to a unique field"
        )
    body = _texts(df[text_field].reset_index(drop=True), text_field, source)
    missing = body.isna() | (body.astype(str).str.strip() == "")
    if title_field:
        title = df[title_field].reset_index(drop=True).fillna("").astype(str).str.strip()
        body_s = body.fillna("").astype(str).str.strip()
        # Corpora such as Cranfield repeat the title as the body's first sentence: join only when it adds.
        repeated = [b.lower().startswith(t.lower()) for t, b in zip(title, body_s)]
        text = [b if (not t or rep) else (t if not b else f"{t}\n\n{b}") for t, b, rep in zip(title, body_s, repeated)]
        missing = missing & (title == "")
    else:
        text = body.fillna("").astype(str).tolist()
    if missing.any() and text_field != "\0text":
        bad = ids[missing.to_numpy()].tolist()
        shown = ", ".join(repr(x) for x in bad[:5]) + (", ..." if len(bad) > 5 else "")
        if missing.all():
            raise InputError(
                f"no record of the {source} has text in field '{text_field}'; set `text_field` to the field that holds the text"
            )
        # Kept (benchmarks such as Cranfield hold a few empty documents whose ids must stay), but reported.
        warnings.warn(
            f"{len(bad)} record(s) of the {source} have no text in field '{text_field}' (ids: {shown}); "
            "they are kept with empty text",
            EmptyTextWarning,
            stacklevel=3,
        )
    out = pd.DataFrame({"id": ids, "text": pd.Series(text, dtype=str)})
    for col in columns:
        if col in (text_field, id_field) or col in out.columns:
            continue
        out[col] = df[col].reset_index(drop=True)
    return out


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
    path = Path(path)
    if limit is not None and limit < 1:
        raise InputError(f"the record limit must be at least 1, got {limit}")
    if path.is_dir():
        if not is_beir_folder(path):
            raise InputError(f"{path} is a folder but holds no corpus.jsonl; give a corpus file or a BEIR folder")
        path = path / "corpus.jsonl"
    df = read_records(path)
    if limit is not None:
        df = df.iloc[:limit]
    return normalise_corpus(df, text_field=text_field, title_field=title_field, id_field=id_field, source=str(path),
                            texts_required=texts_required)


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
