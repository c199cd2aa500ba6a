"""The workspace's corpus table on disk (corpus.parquet): written chunk by chunk, read by columns and rows.

`CorpusWriter` takes the corpus tables of `readers.iter_corpus` one chunk at a time and writes one Parquet file of
row groups of `CORPUS_ROW_GROUP` rows, whatever the corpus's size; `ColumnReader` reads one column by row number
(or in order) a row group at a time. Neither ever holds the whole corpus.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

CORPUS_ROW_GROUP = 65_536
"""Rows per row group of corpus.parquet, and per block when a stage reads only some columns (ids, titles)."""


class Fingerprint:
    """A short hash of a corpus's ids and texts, fed chunk by chunk (decides whether stored vectors can be reused)."""

    def __init__(self) -> None:
        self._h = hashlib.sha256()

    def update(self, ids: Iterable[Any], texts: Iterable[Any]) -> None:
        h = self._h
        for i, t in zip(ids, texts):
            h.update(str(i).encode())
            h.update(b"\x00")
            h.update(str(t).encode())
            h.update(b"\x01")

    def hexdigest(self) -> str:
        return self._h.hexdigest()[:16]


def corpus_fingerprint(corpus: pd.DataFrame) -> str:
    """The fingerprint of a whole corpus table (`Fingerprint` over its id and text columns)."""
    fp = Fingerprint()
    fp.update(corpus["id"], corpus["text"])
    return fp.hexdigest()


def parquet_safe(corpus: pd.DataFrame) -> pd.DataFrame:
    """Make metadata columns Parquet-safe (lists stay lists; mixed objects become strings)."""
    out = corpus.copy()
    for col in out.columns:
        if out[col].dtype == object:
            kinds = {type(v) for v in out[col] if v is not None and not (isinstance(v, float) and np.isnan(v))}
            if kinds and not kinds <= {str} and not kinds <= {list} and not kinds <= {int, float}:
                out[col] = out[col].map(lambda v: None if v is None else (v if isinstance(v, str) else str(v)))
    return out


@dataclass
class CorpusFile:
    """A corpus table written as Parquet: where, how many rows, its columns and its fingerprint; `texts` is the
    folder of its text store (`TextStore`)."""

    path: Path
    rows: int
    columns: list[str]
    fingerprint: str
    texts: Path | None = None
    """The folder of its row stores (`TextStore`: texts, titles, ids)."""

    def remove(self) -> None:
        """Delete the files (what was not moved into a workspace)."""
        self.path.unlink(missing_ok=True)
        if self.texts is not None:
            shutil.rmtree(self.texts, ignore_errors=True)


ROW_STORES = ("texts", "titles", "ids")
"""The columns kept for reading by row in WS/texts/: the texts, the display titles and the ids."""


def display_titles(chunk: pd.DataFrame) -> list[str]:
    """A short title per document of a corpus table: its title, else the first line of its text, else its id."""
    titles = chunk["title"] if "title" in chunk.columns else [None] * len(chunk)
    return [title_of(t, x, i) for t, x, i in zip(titles, chunk["text"], chunk["id"])]


def title_of(title: Any, text: Any, doc_id: Any) -> str:
    """A document's display title: its title, else the first line of its text, else its id (a corpus given with
    its vectors may hold no text)."""
    return str(title) if isinstance(title, str) and title.strip() else (first_line(text) or str(doc_id))


def first_line(text: Any, width: int = 100) -> str:
    """The first line of a text, cut at `width` characters."""
    line = str(text).strip().split("\n", 1)[0]
    return line if len(line) <= width else line[: width - 1] + "…"


class TextStore(Sequence):
    """One text column for reading by row: a UTF-8 file of all values back to back and their byte offsets (the offsets
    memory-mapped; `texts[5]`, `texts[[3, 900_000]]`, `for t in texts`): a document costs one read of its bytes.
    `name` is one of ROW_STORES."""

    def __init__(self, folder: str | os.PathLike, name: str = "texts") -> None:
        self.folder = Path(folder)
        from .._io import advise_random

        self.offsets = advise_random(np.load(self.folder / f"{name}.offsets.npy", mmap_mode="r"))
        self.path = self.folder / f"{name}.bin"
        self._fd: int | None = None

    @staticmethod
    def exists(folder: str | os.PathLike, name: str = "texts") -> bool:
        return (Path(folder) / f"{name}.offsets.npy").is_file()

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def _one(self, r: int) -> str:
        """One value, read with a positioned read (no memory map: what is read stays out of resident memory)."""
        if self._fd is None:
            self._fd = os.open(self.path, os.O_RDONLY)
        start, stop = int(self.offsets[r]), int(self.offsets[r + 1])
        return os.pread(self._fd, stop - start, start).decode("utf-8") if stop > start else ""

    def __del__(self) -> None:
        if getattr(self, "_fd", None) is not None:
            os.close(self._fd)

    def __getitem__(self, rows):  # type: ignore[override]
        if isinstance(rows, slice):
            return [self._one(r) for r in range(*rows.indices(len(self)))]
        if np.ndim(rows) == 0:
            r = int(rows) + (len(self) if int(rows) < 0 else 0)
            if not 0 <= r < len(self):
                raise IndexError(f"row {rows} out of range 0..{len(self) - 1}")
            return self._one(r)
        return [self._one(int(r)) for r in np.asarray(rows).reshape(-1)]

    def __iter__(self) -> Iterator[str]:
        for r in range(len(self)):
            yield self._one(r)


class RowStoreWriter:
    """Writes the row stores (ROW_STORES) of a corpus into a folder, chunk by chunk of the corpus table."""

    def __init__(self, folder: str | os.PathLike) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self._files = {name: open(self.folder / f"{name}.bin", "wb") for name in ROW_STORES}
        self._lengths: dict[str, list[np.ndarray]] = {name: [] for name in ROW_STORES}

    def write(self, chunk: pd.DataFrame) -> None:
        values = {"texts": chunk["text"], "titles": display_titles(chunk), "ids": chunk["id"]}
        for name, column in values.items():
            data = [str(v).encode("utf-8") for v in column]
            self._files[name].write(b"".join(data))
            self._lengths[name].append(np.fromiter((len(b) for b in data), np.int64, len(data)))

    def finish(self) -> None:
        for name, f in self._files.items():
            f.close()
            lengths = np.concatenate(self._lengths[name]) if self._lengths[name] else np.zeros(0, np.int64)
            np.save(self.folder / f"{name}.offsets.npy", np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64))

    def abort(self) -> None:
        for f in self._files.values():
            f.close()
        shutil.rmtree(self.folder, ignore_errors=True)


def write_row_stores(folder: str | os.PathLike, chunks: Iterable[pd.DataFrame]) -> None:
    """Write the row stores of a corpus given as corpus tables (id, text, title) into `folder`."""
    writer = RowStoreWriter(folder)
    try:
        for chunk in chunks:
            writer.write(chunk)
        writer.finish()
    except BaseException:
        writer.abort()
        raise


class CorpusWriter:
    """Writes corpus chunks into one Parquet file, one row group per chunk. Chunks of the same columns and types go
    straight into the file; from the first chunk that differs (a field that only later records have, a year missing
    in one chunk) the rest is kept as parts, and the whole is unified at the end (every column of any chunk, types
    promoted where they can be, else written as text), a row group at a time."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._dir = Path(tempfile.mkdtemp(prefix=f".{self.path.name}.", dir=self.path.parent))
        self._parts: list[Path] = []
        self._schemas: list[Any] = []
        self._direct: Any = None  # the ParquetWriter of the first part while every chunk fits its schema
        self.rows = 0
        self.fingerprint = Fingerprint()
        self.stores = self.path.with_name(self.path.name + ".texts")
        shutil.rmtree(self.stores, ignore_errors=True)
        self._rows = RowStoreWriter(self.stores)

    def write(self, chunk: pd.DataFrame) -> None:
        """Add the next rows of the corpus table."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        self.fingerprint.update(chunk["id"], chunk["text"])
        self._rows.write(chunk)
        table = pa.Table.from_pandas(parquet_safe(chunk), preserve_index=False)
        schema = table.schema.remove_metadata()
        table = table.replace_schema_metadata(None)
        if self._direct is not None and schema.equals(self._schemas[0]):
            self._direct.write_table(table, row_group_size=CORPUS_ROW_GROUP)
        else:
            self._close_direct()
            part = self._dir / f"part-{len(self._parts):05d}.parquet"
            if not self._parts:
                self._direct = pq.ParquetWriter(part, schema)
                self._direct.write_table(table, row_group_size=CORPUS_ROW_GROUP)
            else:
                pq.write_table(table, part, row_group_size=CORPUS_ROW_GROUP)
            self._parts.append(part)
            self._schemas.append(schema)
        self.rows += len(chunk)

    def _close_direct(self) -> None:
        if self._direct is not None:
            self._direct.close()
            self._direct = None

    def finish(self) -> CorpusFile:
        """Write the file (one part is moved into place; several are joined under their unified schema)."""
        import pyarrow.parquet as pq

        try:
            self._close_direct()
            self._rows.finish()
            if not self._parts:
                raise ValueError("no corpus rows were written")
            if len(self._parts) == 1:
                os.replace(self._parts[0], self.path)
                schema = self._schemas[0]
            else:
                schema = _unified(self._schemas)
                with pq.ParquetWriter(self.path, schema) as w:
                    for part in self._parts:
                        f = pq.ParquetFile(part)
                        for g in range(f.num_row_groups):
                            w.write_table(_conform(f.read_row_group(g), schema), row_group_size=CORPUS_ROW_GROUP)
                        f.close()
                        part.unlink()
        except BaseException:
            shutil.rmtree(self.stores, ignore_errors=True)
            raise
        finally:
            shutil.rmtree(self._dir, ignore_errors=True)
        return CorpusFile(self.path, self.rows, [str(n) for n in schema.names if n != "__index_level_0__"],
                          self.fingerprint.hexdigest(), self.stores)

    def abort(self) -> None:
        """Remove what was written."""
        self._close_direct()
        shutil.rmtree(self._dir, ignore_errors=True)
        self._rows.abort()
        self.path.unlink(missing_ok=True)


def write_corpus(chunks: Iterable[pd.DataFrame], path: str | os.PathLike, on_rows: Any = None) -> CorpusFile:
    """Write corpus tables, in order, as one Parquet file; `on_rows(n)` is told of every chunk written."""
    writer = CorpusWriter(path)
    try:
        for chunk in chunks:
            writer.write(chunk)
            if on_rows is not None:
                on_rows(len(chunk))
        return writer.finish()
    except BaseException:
        writer.abort()
        raise


def _unified(schemas: list[Any]) -> Any:
    """One schema holding every field of `schemas` in first-seen order; fields whose types cannot be promoted are
    text."""
    import pyarrow as pa

    try:
        return pa.unify_schemas(schemas, promote_options="permissive")
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
        pass
    fields: dict[str, Any] = {}
    for s in schemas:
        for f in s:
            old = fields.get(f.name)
            if old is None or pa.types.is_null(old.type):
                fields[f.name] = f
            elif not (pa.types.is_null(f.type) or f.type == old.type):
                try:
                    fields[f.name] = pa.unify_schemas([pa.schema([old]), pa.schema([f])], promote_options="permissive")[0]
                except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
                    fields[f.name] = pa.field(f.name, pa.string())
    return pa.schema(list(fields.values()))


def _conform(table: Any, schema: Any) -> Any:
    """`table` with the columns of `schema`, in its order and types (missing columns as nulls; values that cannot be
    cast written as text)."""
    import pyarrow as pa

    cols = []
    for f in schema:
        if f.name not in table.column_names:
            cols.append(pa.nulls(len(table), f.type))
            continue
        col = table.column(f.name)
        if col.type != f.type:
            try:
                col = col.cast(f.type)
            except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
                col = pa.array([None if v is None else str(v) for v in col.to_pylist()], f.type)
        cols.append(col)
    return pa.Table.from_arrays(cols, schema=schema)


class ColumnReader(Sequence):
    """One column of a Parquet corpus by row number, read a row group at a time and kept for the next reads of the
    same group (`ids[5]`, `texts[10:20]`, `texts[[3, 900_000]]`, `for t in texts`): the whole column is never held."""

    def __init__(self, path: str | os.PathLike, column: str, convert: Any = str) -> None:
        import pyarrow.parquet as pq

        self.path = Path(path)
        self.column = column
        self.convert = convert
        meta = pq.ParquetFile(self.path).metadata
        counts = [meta.row_group(i).num_rows for i in range(meta.num_row_groups)]
        self.starts = np.concatenate([[0], np.cumsum(counts, dtype=np.int64)])
        self._cache: tuple[int, list] | None = None

    def __len__(self) -> int:
        return int(self.starts[-1])

    def _group(self, g: int) -> list:
        cached = self._cache
        if cached is not None and cached[0] == g:
            return cached[1]
        import pyarrow.parquet as pq

        f = pq.ParquetFile(self.path)
        try:
            values = f.read_row_group(g, columns=[self.column]).column(0).to_pylist()
        finally:
            f.close()
        values = [self.convert(v) for v in values] if self.convert is not None else values
        self._cache = (g, values)
        return values

    def __getitem__(self, rows):  # type: ignore[override]
        if isinstance(rows, slice):
            return self.take(np.arange(len(self))[rows])
        if np.ndim(rows) == 0:
            r = int(rows)
            if r < 0:
                r += len(self)
            if not 0 <= r < len(self):
                raise IndexError(f"row {rows} out of range 0..{len(self) - 1}")
            g = int(np.searchsorted(self.starts, r, side="right")) - 1
            return self._group(g)[r - int(self.starts[g])]
        return self.take(np.asarray(rows))

    def take(self, rows: np.ndarray) -> list:
        """The values of some rows, in the order given (each row group read once)."""
        rows = np.asarray(rows, dtype=np.int64).reshape(-1)
        out: list = [None] * len(rows)
        groups = np.searchsorted(self.starts, rows, side="right") - 1
        for g in np.unique(groups):
            values = self._group(int(g))
            base = int(self.starts[g])
            for i in np.flatnonzero(groups == g):
                out[i] = values[rows[i] - base]
        return out

    def __iter__(self) -> Iterator:
        for g in range(len(self.starts) - 1):
            yield from self._group(g)
