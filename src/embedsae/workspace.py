"""The on-disk workspace: one directory per analysis, each pipeline stage writing its own part.

The file names live in `embedsae.layout`. The manifest is updated read-modify-write under a file lock, so
concurrent stages (two processes, or the server's jobs) never lose each other's records.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from . import layout
from ._io import atomic_path, now_iso, read_json, write_json
from ._version import __version__
from .data import shards
from .data.shards import SHARD_ROWS, ShardedVectors
from .data.vectors import ArraySource, VectorSource
from .errors import ModelMismatchError, NotAWorkspaceError, StageMissingError, WorkspaceBusyError, WorkspaceError
from .integrity import reading

MANIFEST = layout.MANIFEST
FORMAT_VERSION = 1
CORPUS_ROW_GROUP = 65_536
"""Rows per row group of corpus.parquet, and per block when a stage reads only some columns (ids, titles)."""


def corpus_fingerprint(corpus: pd.DataFrame) -> str:
    """A short hash of the corpus ids and texts (decides whether stored vectors can be reused)."""
    h = hashlib.sha256()
    for i, t in zip(corpus["id"], corpus["text"]):
        h.update(str(i).encode())
        h.update(b"\x00")
        h.update(str(t).encode())
        h.update(b"\x01")
    return h.hexdigest()[:16]


class Workspace:
    """A workspace directory: manifest, corpus, embeddings and the parts later stages add."""

    def __init__(self, path: str | os.PathLike, manifest: dict[str, Any]) -> None:
        self.path = Path(path)
        self.manifest = manifest
        self._corpus: pd.DataFrame | None = None
        self._embeddings: np.ndarray | None = None
        self._vectors: ShardedVectors | None = None

    # ---------------------------------------------------------------- creation / opening
    @classmethod
    def create(
        cls,
        path: str | os.PathLike,
        corpus: pd.DataFrame,
        vectors: np.ndarray | ShardedVectors,
        *,
        model_id: str,
        normalized: bool,
        settings: dict[str, Any] | None = None,
        model_options: dict[str, Any] | None = None,
        shard_rows: int = SHARD_ROWS,
    ) -> Workspace:
        """Write a new workspace (or replace the corpus and vectors of an existing one) atomically per file.

        The vectors are an array (cut into shards of `shard_rows` rows) or a store finished in the workspace's
        partial folder by `data.shards.ShardJob` (moved into place). `model_options` are what `load_embedder`
        needs besides the model id to embed queries the same way.
        """
        path = Path(path)
        if path.exists() and not path.is_dir():
            raise WorkspaceError(f"{path} exists and is not a directory; choose another workspace path")
        path.mkdir(parents=True, exist_ok=True)
        old = read_json(path / MANIFEST) if (path / MANIFEST).is_file() else None
        if isinstance(vectors, np.ndarray):
            vectors = shards.write_array(path, np.asarray(vectors, dtype=np.float32), model_id=model_id,
                                         shard_rows=shard_rows)
        with atomic_path(path / layout.CORPUS) as tmp:
            _corpus_for_parquet(corpus).to_parquet(tmp, index=False, row_group_size=CORPUS_ROW_GROUP)
        shards.install(path)
        manifest = {
            "format": FORMAT_VERSION,
            "embedsae_version": __version__,
            "created": old["created"] if old else now_iso(),
            "model": {"id": model_id, "dim": int(vectors.shape[1]), "normalized": bool(normalized),
                      **({"options": model_options} if model_options else {})},
            "counts": {"documents": int(len(corpus))},
            "corpus_fingerprint": corpus_fingerprint(corpus),
            "columns": [str(c) for c in corpus.columns],
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
        try:
            manifest = read_json(path / MANIFEST)
            manifest["model"]["id"], manifest["model"]["dim"], manifest["counts"]["documents"]  # noqa: B018
        except (ValueError, KeyError, TypeError) as exc:
            raise WorkspaceError(
                f"the manifest of workspace {path} is damaged ({MANIFEST}: {exc}); restore it, or embed the corpus "
                "into a new workspace"
            ) from exc
        ws = cls(path, manifest)
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
        self.manifest = read_json(self.path / MANIFEST)

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
        """Whether the workspace names a model that can embed new texts (not bare precomputed vectors)."""
        return not self.model_id.startswith("precomputed")

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
    def ids(self) -> list[str]:
        """The document ids, read from the corpus table's id column alone."""
        return [str(i) for part in self.corpus_batches(["id"]) for i in part["id"]]

    @property
    def sharded(self) -> bool:
        """Whether the vectors are a sharded store (WS/embeddings/); older workspaces hold one embeddings.npy."""
        return (self.path / layout.SHARDS / layout.SHARDS_INDEX).is_file()

    @property
    def embeddings(self) -> np.ndarray:
        """All document vectors as one read-only array: memory-mapped for a single-file or one-shard store, a copy
        in memory for a store of several shards (stages that may meet large corpora read `vectors` instead)."""
        if self._embeddings is None:
            if self.sharded:
                arr = self.vectors.to_array()  # type: ignore[attr-defined]
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
            return ArraySource(self.embeddings)
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
        """A short display title per document: the title column, else the text's first line."""
        if self._corpus is not None:
            has_title = "title" in self._corpus.columns
        else:
            import pyarrow.parquet as pq

            with reading(self.path / layout.CORPUS):
                has_title = "title" in pq.read_schema(self.path / layout.CORPUS).names
        out: list[str] = []
        for part in self.corpus_batches(["title", "text"] if has_title else ["text"]):
            if has_title:
                out += [str(t) if isinstance(t, str) and t.strip() else _first_line(x)
                        for t, x in zip(part["title"], part["text"])]
            else:
                out += [_first_line(x) for x in part["text"]]
        return out

    def embedder(self, **kwargs: Any):
        """The embedding model that made this workspace's vectors (to embed queries the same way)."""
        from .data.embedders import load_embedder

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


def _first_line(text: str, width: int = 100) -> str:
    line = str(text).strip().split("\n", 1)[0]
    return line if len(line) <= width else line[: width - 1] + "…"


def _corpus_for_parquet(corpus: pd.DataFrame) -> pd.DataFrame:
    """Make metadata columns Parquet-safe (lists stay lists; mixed objects become strings)."""
    out = corpus.copy()
    for col in out.columns:
        if out[col].dtype == object:
            kinds = {type(v) for v in out[col] if v is not None and not (isinstance(v, float) and np.isnan(v))}
            if kinds and not kinds <= {str} and not kinds <= {list} and not kinds <= {int, float}:
                out[col] = out[col].map(lambda v: None if v is None else (v if isinstance(v, str) else str(v)))
    return out
