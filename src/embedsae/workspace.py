"""The on-disk workspace: one directory per analysis, each pipeline stage writing its own part.

The file names live in `embedsae.layout`. The manifest is updated read-modify-write under a file lock, so
concurrent stages (two processes, or the server's jobs) never lose each other's records.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from . import layout
from ._io import atomic_path, now_iso, read_json, write_json
from ._version import __version__
from .data import shards
from .data.corpus_store import (
    CORPUS_ROW_GROUP,
    ColumnReader,
    CorpusFile,
    TextStore,
    corpus_fingerprint,
    display_titles,
    parquet_safe,
    title_of,
    write_row_stores,
)
from .data.shards import SHARD_ROWS, ShardedVectors
from .data.vectors import ArraySource, RowView, VectorSource
from .errors import ModelMismatchError, NotAWorkspaceError, StageMissingError, WorkspaceBusyError, WorkspaceError
from .integrity import reading

MANIFEST = layout.MANIFEST
FORMAT_VERSION = 1
__all__ = ["CORPUS_ROW_GROUP", "Workspace", "corpus_fingerprint", "now_iso"]




class Workspace:
    """A workspace directory: manifest, corpus, embeddings and the parts later stages add."""

    def __init__(self, path: str | os.PathLike, manifest: dict[str, Any]) -> None:
        self.path = Path(path)
        self.manifest = manifest
        self._corpus: pd.DataFrame | None = None
        self._corpus_checked = False
        self._embeddings: np.ndarray | RowView | None = None
        self._vectors: ShardedVectors | None = None

    # ---------------------------------------------------------------- creation / opening
    @classmethod
    def create(
        cls,
        path: str | os.PathLike,
        corpus: pd.DataFrame | CorpusFile,
        vectors: np.ndarray | ShardedVectors,
        *,
        model_id: str,
        normalized: bool,
        settings: dict[str, Any] | None = None,
        model_options: dict[str, Any] | None = None,
        shard_rows: int = SHARD_ROWS,
    ) -> Workspace:
        """Write a new workspace (or replace the corpus and vectors of an existing one) atomically per file.

        The corpus is a table or a Parquet file written by `data.corpus_store.CorpusWriter` (moved into place). The
        vectors are an array (cut into shards of `shard_rows` rows) or a store finished in the workspace's
        partial folder by `data.shards.ShardJob` (moved into place). `model_options` are what `load_embedder`
        needs besides the model id to embed queries the same way.
        """
        path = Path(path)
        if path.exists() and not path.is_dir():
            raise WorkspaceError(f"{path} exists and is not a directory; choose another workspace path")
        path.mkdir(parents=True, exist_ok=True)
        old = read_json(path / MANIFEST) if (path / MANIFEST).is_file() else None
        if isinstance(vectors, np.ndarray):
            vectors = shards.write_array(path, vectors, model_id=model_id, shard_rows=shard_rows)
        if isinstance(corpus, CorpusFile):
            os.replace(corpus.path, path / layout.CORPUS)
            n_docs, fingerprint, columns = corpus.rows, corpus.fingerprint, corpus.columns
            texts = corpus.texts
        else:
            with atomic_path(path / layout.CORPUS) as tmp:
                parquet_safe(corpus).to_parquet(tmp, index=False, row_group_size=CORPUS_ROW_GROUP)
            n_docs, fingerprint, columns = len(corpus), corpus_fingerprint(corpus), [str(c) for c in corpus.columns]
            texts = path / ".texts-new"
            shutil.rmtree(texts, ignore_errors=True)
            write_row_stores(texts, [corpus])
        _replace_folder(texts, path / layout.TEXTS)
        shards.install(path)
        manifest = {
            "format": FORMAT_VERSION,
            "embedsae_version": __version__,
            "created": old["created"] if old else now_iso(),
            "model": {"id": model_id, "dim": int(vectors.shape[1]), "normalized": bool(normalized),
                      **({"options": model_options} if model_options else {})},
            "counts": {"documents": int(n_docs)},
            "corpus_fingerprint": fingerprint,
            "columns": columns,
            "stages": {"embed": {"settings": settings or {}, "finished": now_iso()}},
            "latest_sae": None,
        }
        if old and old.get("model", {}).get("id") == model_id and old.get("corpus_fingerprint") == manifest["corpus_fingerprint"]:
            manifest["stages"] = {**old.get("stages", {}), **manifest["stages"]}
            manifest["latest_sae"] = old.get("latest_sae")
        ws = cls(path, manifest)
        with ws.manifest_lock():
            ws.save_manifest()
        return ws

    @classmethod
    def open(
        cls, path: str | os.PathLike, *, expect_model: str | None = None, expect_dim: int | None = None
    ) -> Workspace:
        """Open a workspace; raise if it is missing or was made with another model or dimension."""
        path = Path(path)
        if not (path / MANIFEST).is_file():
            raise NotAWorkspaceError(f"{path} is not an embedsae workspace (no {MANIFEST}); embed a corpus into it first")
        ws = cls(path, _read_manifest(path))
        if expect_model is not None and ws.model_id != expect_model:
            raise ModelMismatchError(
                f"workspace {path} was embedded with model '{ws.model_id}', not '{expect_model}'; "
                "use the same model, or embed into a new workspace"
            )
        if expect_dim is not None and ws.dim != expect_dim:
            raise ModelMismatchError(
                f"workspace {path} holds {ws.dim}-dimensional vectors, not {expect_dim}-dimensional; "
                "use vectors of the same model, or a new workspace"
            )
        if not (path / layout.CORPUS).is_file():
            raise WorkspaceError(f"workspace {path} is incomplete: {layout.CORPUS} is missing; re-run embedsae embed")
        if not ws.sharded and not (path / layout.EMBEDDINGS).is_file():
            raise WorkspaceError(f"workspace {path} is incomplete: its vectors ({layout.SHARDS}/{layout.SHARDS_INDEX}) "
                                 "are missing; re-run embedsae embed")
        return ws

    @staticmethod
    def exists(path: str | os.PathLike) -> bool:
        """True when `path` holds a workspace manifest."""
        return (Path(path) / MANIFEST).is_file()

    # ---------------------------------------------------------------- manifest
    def save_manifest(self) -> None:
        """Write the manifest atomically (callers that read-modify-write hold `manifest_lock`)."""
        write_json(self.path / MANIFEST, self.manifest)

    def reload_manifest(self) -> None:
        """Re-read the manifest from disk (another process may have added a stage)."""
        self.manifest = _read_manifest(self.path)

    @contextlib.contextmanager
    def manifest_lock(self) -> Iterator[None]:
        """Hold the workspace's manifest lock (an exclusive lock on WS/.manifest.lock, across processes)."""
        import fcntl

        with open(self.path / layout.MANIFEST_LOCK, "a+b") as fh:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh.fileno(), fcntl.LOCK_UN)

    @contextlib.contextmanager
    def stage_lock(self, what: str, doing: str | None = None, *, shared: bool = False) -> Iterator[None]:
        """Hold the lock of one part of the workspace ("embed", "index", "sae-NAME"), or fail at once with
        WorkspaceBusyError naming the process that holds it and what it runs.

        The one lock discipline: every writer of a part takes its lock exclusively (`doing` names the stage);
        `shared` takes it shared (readers that must not see the part replaced under them, e.g. export), which
        also works in a read-only workspace, where no writer can run. A second writer is told, never silently
        discarded (in this process too: each call opens the lock file anew); the lock goes with the process
        (flock), so a killed run leaves nothing to clean up."""
        import fcntl

        doing = doing or what
        path = self.path / f"{layout.STAGE_LOCK_PREFIX}{what}"
        try:
            fh = open(path, "a+")
        except OSError as exc:
            if shared and exc.errno in (errno.EROFS, errno.EACCES):
                yield  # a read-only workspace: nothing can write it while we read
                return
            raise
        with fh:
            try:
                fcntl.flock(fh.fileno(), (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
            except BlockingIOError:
                fh.seek(0)
                holder = fh.read().strip() or "another process is writing it"
                part = f"SAE '{what[4:]}' of workspace {self.path}" if what.startswith("sae-") else f"workspace {self.path}"
                raise WorkspaceBusyError(f"{part} is busy: {holder}; wait for it to finish before you {doing}, "
                                         "or use another name") from None
            if not shared:
                fh.seek(0)
                fh.truncate()
                fh.write(f"process {os.getpid()} is running {doing}")
                fh.flush()
            try:
                yield
            finally:
                if not shared:
                    fh.seek(0)
                    fh.truncate()
                fcntl.flock(fh.fileno(), fcntl.LOCK_UN)

    def sae_lock(self, name: str, doing: str, *, shared: bool = False) -> contextlib.AbstractContextManager[None]:
        """The lock of one SAE's files (saes/<name>/): train, import, evaluate, interpret, families, index take it
        exclusively, export shared, so no stage replaces or rewrites an SAE while another works on it."""
        return self.stage_lock(f"sae-{name}", doing, shared=shared)

    def forget_sae_stages(self, name: str) -> None:
        """Drop the manifest's records of every stage run on an SAE of this name ("train:NAME", "interpret:NAME",
        "families:NAME", "concepts:NAME:...", and "index" when it was built for it): called when a new SAE replaces
        it, before its own record is written."""

        def change(m: dict[str, Any]) -> None:
            stages = m.setdefault("stages", {})
            for key in [k for k in stages if k.split(":")[1:2] == [name]]:
                del stages[key]
            if (stages.get("index") or {}).get("settings", {}).get("sae") == name:
                del stages["index"]

        self.update_manifest(change)

    def update_manifest(self, change: Callable[[dict[str, Any]], None]) -> None:
        """Apply `change` to the manifest as it is on disk now, under the lock, and write it back."""
        with self.manifest_lock():
            self.reload_manifest()
            change(self.manifest)
            self.save_manifest()

    def record_stage(self, name: str, settings: dict[str, Any], **extra: Any) -> None:
        """Note in the manifest that a stage ran, with its settings and finishing time."""
        record = {"settings": settings, "finished": now_iso(), **extra}
        self.update_manifest(lambda m: m.setdefault("stages", {}).__setitem__(name, record))

    @property
    def model_id(self) -> str:
        return self.manifest["model"]["id"]

    @property
    def dim(self) -> int:
        return int(self.manifest["model"]["dim"])

    @property
    def can_embed(self) -> bool:
        """Whether query texts can be embedded: the workspace names a model (not bare precomputed vectors), or it
        is a word workspace whose words are looked up (`embedsae.words.lookup`)."""
        from .words.lookup import word_source

        return not self.model_id.startswith("precomputed") or word_source(self.manifest) is not None

    @property
    def n_documents(self) -> int:
        return int(self.manifest["counts"]["documents"])

    # ---------------------------------------------------------------- data
    @property
    def corpus(self) -> pd.DataFrame:
        """The corpus table (id, text, metadata), read once."""
        if self._corpus is None:
            with reading(self.path / layout.CORPUS):
                self._corpus = pd.read_parquet(self.path / layout.CORPUS)
        return self._corpus

    def corpus_batches(self, columns: list[str], rows: int = CORPUS_ROW_GROUP) -> Iterator[pd.DataFrame]:
        """Some columns of the corpus table, in consecutive blocks of at most `rows` rows (never the whole table)."""
        if self._corpus is not None:
            for start in range(0, len(self._corpus), rows):
                yield self._corpus[columns].iloc[start : start + rows]
            return
        import pyarrow.parquet as pq

        with reading(self.path / layout.CORPUS):
            f = pq.ParquetFile(self.path / layout.CORPUS)
            try:
                for batch in f.iter_batches(batch_size=rows, columns=columns):
                    yield batch.to_pandas()
            finally:
                f.close()

    @property
    def texts(self) -> TextStore | ColumnReader:
        """The document texts by row (`ws.texts[5]`, `ws.texts[rows]`, `for t in ws.texts`), never all in memory: the
        memory-mapped row store, or for a workspace made before it existed, the corpus table's text column."""
        return self.row_store("texts")

    @property
    def has_row_stores(self) -> bool:
        """Whether the texts, titles and ids can be read by row from memory-mapped stores (WS/texts/)."""
        return TextStore.exists(self.path / layout.TEXTS, "ids")

    def row_store(self, name: str) -> TextStore | ColumnReader:
        """The texts, display titles or ids (`name`: texts, titles, ids) by row: the memory-mapped row store, or
        for a workspace made before it existed, read from the corpus table a row group at a time."""
        if TextStore.exists(self.path / layout.TEXTS, name):
            self._check_corpus()
            return TextStore(self.path / layout.TEXTS, name)
        if name == "titles":
            return _TitlesFromTable(self)
        return self.column("text" if name == "texts" else "id")

    def _check_corpus(self) -> None:
        """The row stores are made from the corpus table: a damaged table is said before they are used (its footer
        is read, once per workspace object)."""
        if not self._corpus_checked and self._corpus is None:
            import pyarrow.parquet as pq

            with reading(self.path / layout.CORPUS):
                pq.read_metadata(self.path / layout.CORPUS)
        self._corpus_checked = True

    def ensure_texts(self) -> TextStore:
        """The text store, written from the corpus table first when the workspace predates it (for stages)."""
        if not TextStore.exists(self.path / layout.TEXTS, "ids"):
            tmp = self.path / ".texts-new"
            shutil.rmtree(tmp, ignore_errors=True)
            write_row_stores(tmp, self.corpus_batches(self._table_columns(["id", "text", "title"])))
            _replace_folder(tmp, self.path / layout.TEXTS)
        return TextStore(self.path / layout.TEXTS)

    def _table_columns(self, wanted: list[str]) -> list[str]:
        have = self.manifest.get("columns") or list(self.corpus.columns)
        return [c for c in wanted if c in have]

    def column(self, name: str, convert=str) -> ColumnReader:
        """One column of the corpus table by row number (`texts = ws.column("text"); texts[[5, 900_000]]`), read
        a row group at a time: the whole table is never loaded."""
        return ColumnReader(self.path / layout.CORPUS, name, convert)

    @property
    def ids(self) -> list[str]:
        """The document ids, read from the corpus table's id column alone."""
        return [str(i) for part in self.corpus_batches(["id"]) for i in part["id"]]

    @property
    def has_texts(self) -> bool:
        """Whether any document has text (a workspace of vectors given with their ids alone has none)."""
        return any(part["text"].astype(str).str.strip().ne("").any() for part in self.corpus_batches(["text"]))

    @property
    def sharded(self) -> bool:
        """Whether the vectors are a sharded store (WS/embeddings/); older workspaces hold one embeddings.npy."""
        return (self.path / layout.SHARDS / layout.SHARDS_INDEX).is_file()

    @property
    def embeddings(self) -> np.ndarray | RowView:
        """All document vectors, read like a read-only array: a memory map for a single-file or one-shard store, a
        `RowView` over the shards otherwise (indexing reads only the rows asked for; never a copy of the whole
        store). Stages that pass over every row read `vectors` block by block instead."""
        if self._embeddings is None:
            if self.sharded:
                store = self.vectors
                arr = store.shard(0) if len(store.files) == 1 else RowView(store)  # type: ignore[attr-defined]
            else:
                with reading(self.path / layout.EMBEDDINGS):
                    arr = np.load(self.path / layout.EMBEDDINGS, mmap_mode="r")
            self._check_shape(arr.shape)
            self._embeddings = arr
        return self._embeddings

    @property
    def vectors(self) -> VectorSource:
        """The document vectors as a source that stages read shard by shard (see `data.vectors`)."""
        if not self.sharded:
            return ArraySource(self.embeddings)  # type: ignore[arg-type]
        if self._vectors is None:
            store = ShardedVectors(self.path / layout.SHARDS)
            self._check_shape(store.shape)
            self._vectors = store
        return self._vectors

    def _check_shape(self, shape: tuple[int, ...]) -> None:
        if tuple(shape) != (self.n_documents, self.dim):
            raise WorkspaceError(
                f"workspace {self.path}: the stored vectors have shape {tuple(shape)}, the manifest says "
                f"({self.n_documents}, {self.dim}); re-run embedsae embed"
            )

    def titles(self) -> list[str]:
        """A short display title per document: the title column, else the text's first line, else (a document
        without text: vectors given with their ids alone) the id."""
        if self._corpus is not None:
            has_title = "title" in self._corpus.columns
        else:
            import pyarrow.parquet as pq

            with reading(self.path / layout.CORPUS):
                has_title = "title" in pq.read_schema(self.path / layout.CORPUS).names
        out: list[str] = []
        for part in self.corpus_batches(["id", "title", "text"] if has_title else ["id", "text"]):
            out += display_titles(part)
        return out

    def titles_of(self, rows: Any) -> list[str]:
        """The display titles (see `titles`) of some documents, reading only those rows (or the row groups that
        hold them, for a workspace without row stores)."""
        return list(self.row_store("titles")[np.asarray(rows, dtype=np.int64).reshape(-1)])

    def embedder(self, **kwargs: Any):
        """The embedding model that made this workspace's vectors (to embed queries the same way)."""
        from .data.embedders import load_embedder
        from .words.lookup import WordLookupEmbedder, word_source

        if word_source(self.manifest) is not None:
            return WordLookupEmbedder(self)
        if not self.can_embed:
            raise WorkspaceError(
                f"workspace {self.path} holds precomputed vectors ('{self.model_id}') and names no model to embed "
                "query texts with: search with a query vector (`query_vector`) or by words (BM25), or make the "
                "workspace again with the vectors and the `model` that made them"
            )
        options = {**self.manifest["model"].get("options", {}), **kwargs}
        emb = load_embedder(self.model_id, normalize=self.manifest["model"].get("normalized", True), **options)
        if emb.dim != self.dim:
            raise ModelMismatchError(f"model '{self.model_id}' gives {emb.dim}-d vectors, the workspace holds {self.dim}-d")
        return emb

    # ---------------------------------------------------------------- SAEs
    @property
    def saes_dir(self) -> Path:
        return self.path / layout.SAES

    def sae_names(self) -> list[str]:
        """Names of the SAEs that finished training, oldest first."""
        if not self.saes_dir.is_dir():
            return []
        done = [p for p in self.saes_dir.iterdir()
                if (p / layout.SAE_WEIGHTS).is_file() and (p / layout.SAE_CONFIG).is_file()]
        return [p.name for p in sorted(done, key=lambda p: (p / layout.SAE_WEIGHTS).stat().st_mtime)]

    def resolve_sae(self, name: str | None = None) -> str:
        """The SAE name to use: the one given (checked), else the latest trained."""
        names = self.sae_names()
        if name is not None:
            if name not in names:
                raise WorkspaceError(
                    f"workspace {self.path} has no trained SAE named '{name}' (it has: {', '.join(names) or 'none'})"
                )
            return name
        self.reload_manifest()
        latest = self.manifest.get("latest_sae")
        if latest in names:
            return latest
        if not names:
            raise StageMissingError(f"workspace {self.path} has no trained SAE yet; train one first", "train")
        return names[-1]

    def sae_dir(self, name: str) -> Path:
        return layout.sae_folder(self.path, name)

    def sae_file(self, name: str, file: str) -> Path:
        """A file of one SAE's folder (file names in embedsae.layout)."""
        return layout.sae_folder(self.path, name) / file

    def load_sae(self, name: str | None = None, device: str = "cpu"):
        """Load a trained SAE of this workspace, checking that it was trained on vectors of this dimension."""
        from .sae import load_sae

        name = self.resolve_sae(name)
        sae = load_sae(self.sae_dir(name), device=device)
        self.check_sae_compatible(sae.cfg)
        return sae

    def check_sae_compatible(self, cfg) -> None:
        """Raise when an SAE's input dimension or embedding model differ from this workspace's."""
        if cfg.d_in != self.dim:
            raise ModelMismatchError(f"the SAE takes {cfg.d_in}-d vectors but workspace {self.path} holds {self.dim}-d vectors")
        if cfg.model_id and cfg.model_id != self.model_id:
            raise ModelMismatchError(
                f"the SAE was trained on vectors of '{cfg.model_id}' but workspace {self.path} holds vectors of "
                f"'{self.model_id}'; train an SAE on this workspace, or embed it with '{cfg.model_id}'"
            )

    def set_latest_sae(self, name: str) -> None:
        self.update_manifest(lambda m: m.__setitem__("latest_sae", name))


class _TitlesFromTable:
    """Display titles by row for a workspace without row stores, from the corpus table's title and text columns."""

    def __init__(self, ws: Workspace) -> None:
        self.title = ws.column("title", convert=None) if "title" in ws.manifest.get("columns", []) else None
        self.text = ws.column("text")
        self.id = ws.column("id")

    def __len__(self) -> int:
        return len(self.text)

    def __getitem__(self, rows):
        many = np.ndim(rows) > 0 or isinstance(rows, slice)
        rows = np.arange(len(self))[rows] if isinstance(rows, slice) else np.asarray(rows, np.int64).reshape(-1)
        titles = self.title.take(rows) if self.title is not None else [None] * len(rows)
        out = [title_of(t, x, i) for t, x, i in zip(titles, self.text.take(rows), self.id.take(rows))]
        return out if many else out[0]


def _read_manifest(path: Path) -> dict[str, Any]:
    """A workspace's manifest; WorkspaceError naming the file when it is damaged."""
    try:
        manifest = read_json(path / MANIFEST)
        manifest["model"]["id"], manifest["model"]["dim"], manifest["counts"]["documents"]  # noqa: B018
    except (ValueError, KeyError, TypeError) as exc:
        raise WorkspaceError(
            f"the manifest of workspace {path} is damaged ({MANIFEST}: {exc}); restore it, or embed the corpus "
            "into a new workspace"
        ) from exc
    return manifest


def _replace_folder(new: Path, target: Path) -> None:
    """Move folder `new` onto `target`, replacing what was there."""
    old = None
    if target.exists():
        old = target.with_name(f".old-{target.name}-{os.getpid()}")
        shutil.rmtree(old, ignore_errors=True)
        target.rename(old)
    new.rename(target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
