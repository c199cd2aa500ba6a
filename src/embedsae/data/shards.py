"""The sharded embedding store: document vectors as consecutive float32 `.npy` shards plus an index file.

    WS/embeddings/shards.json      {"format", "dim", "dtype", "model", "rows", "shard_rows",
                                    "shards": [{"file", "rows", "bytes", "sha256"}, ...]}
    WS/embeddings/shard-00000.npy  rows [0, shard_rows), then the next block, ... in corpus order

Shards are opened memory-mapped, so a corpus of any size costs no memory until its rows are read. An
unfinished embedding run writes into `WS/.partial-embeddings/` (each shard under a temporary name, then
renamed), and its `job.json` says what is being embedded (model, corpus fingerprint, shard size): a run of
the same job finds the shards already there and writes only the missing ones (`ShardJob`).
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import threading
import uuid
from pathlib import Path
from typing import Any

import numpy as np

from .. import layout
from .._io import read_json, save_npy, write_json
from ..errors import WorkspaceError
from .vectors import gather_rows

logger = logging.getLogger(__name__)

SHARD_ROWS = 65_536
"""Default vectors per shard (96 MiB at 384-d float32): large enough to read at disk speed, small enough to
lose little work when a run is killed."""
STORE_FORMAT = 1


def file_digest(path: str | os.PathLike) -> tuple[int, str]:
    """(bytes, sha256 hex) of a file, read in 1 MiB blocks."""
    h = hashlib.sha256()
    size = 0
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
            size += len(block)
    return size, h.hexdigest()


def shard_bounds(rows: int, shard_rows: int) -> list[tuple[int, int]]:
    """The [start, stop) row range of every shard of a store of `rows` rows (one empty shard when rows is 0)."""
    return [(s, min(s + shard_rows, rows)) for s in range(0, rows, shard_rows)] or [(0, 0)]


_VERIFIED: set[tuple[str, int, int, int, str]] = set()
"""Shard files whose sha256 this process has checked: (path, inode, bytes, mtime in ns, recorded sha256)."""
_VERIFIED_LOCK = threading.Lock()


def check_digest(path: Path, sha256: str) -> None:
    """Raise DamagedFileError unless the file's sha256 is the one recorded. Hashed once per process while the file
    keeps its inode, size and modification time (a 96 MiB shard costs about 0.1 s the first time, nothing after)."""
    st = path.stat()
    key = (os.path.abspath(path), st.st_ino, st.st_size, st.st_mtime_ns, sha256)
    with _VERIFIED_LOCK:
        if key in _VERIFIED:
            return
    if file_digest(path)[1] != sha256:
        from ..integrity import damaged

        raise damaged(path, f"its sha256 differs from the one recorded in {layout.SHARDS_INDEX}")
    with _VERIFIED_LOCK:
        _VERIFIED.add(key)


class ShardedVectors:
    """A folder of memory-mapped `.npy` shards with a `shards.json` index, read as one `VectorSource`."""

    def __init__(self, folder: str | os.PathLike) -> None:
        self.folder = Path(folder)
        index_path = self.folder / layout.SHARDS_INDEX
        try:
            self.index: dict[str, Any] = read_json(index_path)
            entries = self.index["shards"]
            self.dim = int(self.index["dim"])
            counts = [int(e["rows"]) for e in entries]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise WorkspaceError(f"the embedding index {index_path} is missing or damaged ({exc}); embed the corpus "
                                 "again") from exc
        self.files = [self.folder / e["file"] for e in entries]
        self.starts = np.concatenate([[0], np.cumsum(counts, dtype=np.int64)]).astype(np.int64)
        self._maps: list[np.ndarray | None] = [None] * len(entries)
        for path, entry in zip(self.files, entries):
            if not path.is_file() or path.stat().st_size != int(entry["bytes"]):
                found = f"{path.stat().st_size} bytes" if path.is_file() else "missing"
                raise WorkspaceError(
                    f"embedding shard {path} is damaged ({found}, the index says {entry['bytes']} bytes); embed the "
                    "corpus again"
                )

    @property
    def model_id(self) -> str:
        return str(self.index.get("model", ""))

    @property
    def shape(self) -> tuple[int, int]:
        return (int(self.starts[-1]), self.dim)

    def __len__(self) -> int:
        return self.shape[0]

    def shard_bounds(self) -> list[tuple[int, int]]:
        return [(int(a), int(b)) for a, b in zip(self.starts[:-1], self.starts[1:])] or [(0, 0)]

    def shard(self, number: int) -> np.ndarray:
        """One shard, memory-mapped read-only (opened on first use)."""
        arr = self._maps[number]
        if arr is None:
            path = self.files[number]
            recorded = self.index["shards"][number].get("sha256")
            if recorded:
                check_digest(path, recorded)
            try:
                arr = np.load(path, mmap_mode="r")
            except (ValueError, OSError, EOFError) as exc:
                raise WorkspaceError(f"embedding shard {path} is damaged ({exc}); embed the corpus again") from exc
            want = (int(self.starts[number + 1] - self.starts[number]), self.dim)
            if arr.shape != want or arr.dtype != np.float32:
                raise WorkspaceError(f"embedding shard {path} holds {arr.dtype} {arr.shape}, the index says float32 "
                                     f"{want}; embed the corpus again")
            self._maps[number] = arr
        return arr

    def read(self, start: int, stop: int) -> np.ndarray:
        start, stop = max(0, start), min(stop, len(self))
        if stop <= start:
            return np.zeros((0, self.dim), np.float32)
        first = int(np.searchsorted(self.starts, start, side="right")) - 1
        last = int(np.searchsorted(self.starts, stop, side="left")) - 1
        parts = [self.shard(i)[max(start, self.starts[i]) - self.starts[i]: min(stop, self.starts[i + 1]) - self.starts[i]]
                 for i in range(first, last + 1)]
        return np.array(parts[0], dtype=np.float32) if len(parts) == 1 else np.concatenate(parts).astype(np.float32)

    def take(self, rows: np.ndarray) -> np.ndarray:
        rows = np.asarray(rows, dtype=np.int64)
        if len(rows) and (rows.min() < 0 or rows.max() >= len(self)):
            raise IndexError(f"row out of range 0..{len(self) - 1}")
        out = np.empty((len(rows), self.dim), dtype=np.float32)
        which = np.searchsorted(self.starts, rows, side="right") - 1
        for number in np.unique(which):
            sel = np.flatnonzero(which == number)
            out[sel] = gather_rows(self.shard(int(number)), rows[sel] - self.starts[number])
        return out

    def to_array(self) -> np.ndarray:
        """All vectors as one array: the shard's memory map when there is one shard, else a copy in memory."""
        if len(self.files) == 1:
            return self.shard(0)
        size = len(self) * self.dim * 4
        if size > 1 << 30:
            logger.warning("reading all %d vectors of %d shards into memory (%.1f GiB); stages that read the "
                           "vectors shard by shard (`Workspace.vectors`) need no such copy", len(self), len(self.files),
                           size / 2**30)
        out = self.read(0, len(self))
        out.flags.writeable = False
        return out

    def verify(self) -> list[str]:
        """The shard files whose sha256 differs from the index's (an empty list when all are intact)."""
        entries = self.index["shards"]
        return [e["file"] for path, e in zip(self.files, entries) if file_digest(path)[1] != e["sha256"]]


class ShardJob:
    """Writes the shards of one embedding run into the workspace's partial folder, resuming an equal earlier run.

    `job` names what is embedded (model, normalisation, corpus fingerprint, rows, shard size); when the partial
    folder holds the shards of an equal job, those are kept and only the missing shards are to be written.
    Anything else found there (another model, corpus or shard size) is discarded, and the log says so."""

    def __init__(self, workspace: str | os.PathLike, job: dict[str, Any]) -> None:
        self.root = Path(workspace)
        self.folder = self.root / layout.SHARDS_PARTIAL
        self.job = dict(job)
        self.rows, self.shard_rows = int(job["rows"]), int(job["shard_rows"])
        self.bounds = shard_bounds(self.rows, self.shard_rows)
        self.entries: dict[int, dict[str, Any]] = {}
        job_path = self.folder / layout.EMBED_JOB
        old = _read_job(job_path)
        if old == self.job:
            for number in range(len(self.bounds)):
                entry = self._existing(number)
                if entry is not None:
                    self.entries[number] = entry
            if self.entries:
                logger.info("resuming the unfinished embedding in %s: %d of %d shards already written, embedding the "
                            "other %d", self.folder, len(self.entries), len(self.bounds),
                            len(self.bounds) - len(self.entries))
        elif self.folder.exists():
            why = "of another model, corpus or shard size" if old else "with no readable job.json"
            logger.info("discarding the unfinished embedding in %s (%s)", self.folder, why)
            shutil.rmtree(self.folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        if old != self.job:
            write_json(job_path, self.job)

    def _existing(self, number: int) -> dict[str, Any] | None:
        path = self.folder / layout.shard_file(number)
        if not path.is_file():
            return None
        start, stop = self.bounds[number]
        try:
            arr = np.load(path, mmap_mode="r")
            ok = arr.shape == (stop - start, int(self.job.get("dim") or arr.shape[1])) and arr.dtype == np.float32
        except (ValueError, OSError, EOFError):
            ok = False
        if not ok:
            logger.info("shard %d in %s is unreadable or of the wrong shape; embedding it again", number, self.folder)
            path.unlink()
            return None
        return _entry(path, stop - start)

    def missing(self) -> list[int]:
        """The numbers of the shards still to write, in order."""
        return [i for i in range(len(self.bounds)) if i not in self.entries]

    def write(self, number: int, vectors: np.ndarray) -> None:
        """Write one shard (temporary name, then rename) and note its size and checksum."""
        start, stop = self.bounds[number]
        if vectors.shape[0] != stop - start:
            raise ValueError(f"shard {number} needs {stop - start} rows, got {vectors.shape[0]}")
        path = self.folder / layout.shard_file(number)
        save_npy(path, np.ascontiguousarray(vectors, dtype=np.float32))
        self.entries[number] = _entry(path, stop - start)
        logger.info("wrote shard %d of %d (rows %d-%d)", number + 1, len(self.bounds), start, stop)

    def finish(self, dim: int, model_id: str) -> ShardedVectors:
        """Write the index once every shard is there; the finished store, still in the partial folder."""
        if self.missing():
            raise RuntimeError(f"shards {self.missing()} were never written")
        index = {
            "format": STORE_FORMAT, "dim": int(dim), "dtype": "float32", "model": model_id, "rows": self.rows,
            "shard_rows": self.shard_rows, "shards": [self.entries[i] for i in range(len(self.bounds))],
        }
        write_json(self.folder / layout.SHARDS_INDEX, index)
        return ShardedVectors(self.folder)


def _read_job(path: Path) -> dict[str, Any] | None:
    try:
        return read_json(path)
    except (OSError, ValueError):
        return None


def _entry(path: Path, rows: int) -> dict[str, Any]:
    size, digest = file_digest(path)
    return {"file": path.name, "rows": int(rows), "bytes": size, "sha256": digest}


def write_array(workspace: str | os.PathLike, vectors: np.ndarray, *, model_id: str, shard_rows: int = SHARD_ROWS,
                job: dict[str, Any] | None = None) -> ShardedVectors:
    """Cut an array into shards in the workspace's partial folder (nothing is resumed: the vectors are at hand)."""
    folder = Path(workspace) / layout.SHARDS_PARTIAL
    if folder.exists():
        shutil.rmtree(folder)
    spec = {**(job or {}), "model": model_id, "rows": int(len(vectors)), "shard_rows": int(shard_rows),
            "dim": int(vectors.shape[1])}
    writer = ShardJob(workspace, spec)
    for number, (start, stop) in enumerate(writer.bounds):
        writer.write(number, vectors[start:stop])
    return writer.finish(vectors.shape[1], model_id)


def install(workspace: str | os.PathLike) -> None:
    """Move the finished store of the partial folder into place as WS/embeddings/ (replacing an older store and
    an older single `embeddings.npy`)."""
    root = Path(workspace)
    done, target = root / layout.SHARDS_PARTIAL, root / layout.SHARDS
    if not (done / layout.SHARDS_INDEX).is_file():
        raise RuntimeError(f"{done} holds no finished embedding store")
    (done / layout.EMBED_JOB).unlink(missing_ok=True)
    old = None
    if target.exists():
        old = root / f".old-embeddings-{uuid.uuid4().hex[:8]}"
        target.rename(old)
    done.rename(target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    (root / layout.EMBEDDINGS).unlink(missing_ok=True)
