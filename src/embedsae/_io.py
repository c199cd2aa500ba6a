"""Atomic file writes: every file is written under a temporary name, then renamed into place."""

from __future__ import annotations

import contextlib
import datetime as _dt
import errno
import functools
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np


def now_iso() -> str:
    """The current UTC time as an ISO-8601 string."""
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")


@functools.cache
def file_mode() -> int:
    """The mode new files get: 0666 less the process's umask (read without changing it, so thread-safe)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return 0o666 & ~int(line.split()[1], 8)
    except OSError:
        pass
    return 0o644


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it onto `path` only if the block succeeds.

    The file gets the usual permissions (0666 less the umask), not mkstemp's private 0600."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        if tmp_path.is_file():
            os.chmod(tmp_path, file_mode())
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def disk_error(exc: BaseException) -> OSError | None:
    """The OSError behind a write error: the error itself, or the full disk, read-only file system or denied
    permission that a foreign writer (safetensors, torch) reports in its own exception type; None otherwise."""
    if isinstance(exc, OSError):
        return exc
    text = str(exc)
    for code in (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES):
        if f"os error {code})" in text or os.strerror(code) in text:
            return OSError(code, os.strerror(code))
    return None


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Atomically write bytes."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text(path: str | os.PathLike, text: str) -> None:
    """Atomically write UTF-8 text."""
    write_bytes(path, text.encode("utf-8"))


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Atomically write an object as indented JSON."""
    write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n")


def read_json(path: str | os.PathLike) -> Any:
    """Read a JSON file."""
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def save_npy(path: str | os.PathLike, array: np.ndarray) -> None:
    """Atomically save an array as .npy."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.save(f, array)


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"cannot serialise {type(obj).__name__} to JSON")


def advise_random(array: np.ndarray) -> np.ndarray:
    """Tell the kernel a memory-mapped array is read at scattered rows (no read-ahead): a row read then brings in its
    own pages, not the next megabytes of the file, so resident memory follows what is used. Returns the array."""
    import mmap

    m = getattr(array, "_mmap", None)
    if m is not None and hasattr(m, "madvise") and hasattr(mmap, "MADV_RANDOM"):
        try:
            m.madvise(mmap.MADV_RANDOM)
        except (OSError, ValueError):  # not every file system supports it; read-ahead only costs memory
            pass
    return array


def release(array: np.ndarray) -> None:
    """Drop the pages of a read-only memory-mapped array from this process's resident memory (they stay in the page
    cache): for a pass over a large file that is done with the part it read."""
    import mmap

    m = getattr(array, "_mmap", None)
    if m is not None and hasattr(m, "madvise") and hasattr(mmap, "MADV_DONTNEED"):
        try:
            m.madvise(mmap.MADV_DONTNEED)
        except (OSError, ValueError):
            pass


MMAP_MIN_BYTES = 1 << 16
"""Smaller .npz members are read into memory (a map costs more than it saves)."""


def load_npz(path: str | os.PathLike, mmap: bool = True) -> dict[str, np.ndarray]:
    """The arrays of an .npz file by name; with `mmap`, the uncompressed ones (what `np.savez` writes) are
    memory-mapped read-only, so reading some rows of a large array reads only those rows from disk."""
    import zipfile

    out: dict[str, np.ndarray] = {}
    with zipfile.ZipFile(path) as z, open(path, "rb") as f:
        for info in z.infolist():
            name = info.filename.removesuffix(".npy")
            if not (mmap and info.compress_type == zipfile.ZIP_STORED and info.file_size > MMAP_MIN_BYTES):
                with z.open(info) as member:
                    out[name] = np.lib.format.read_array(member, allow_pickle=False)
                continue
            f.seek(info.header_offset)  # the local header: 30 bytes, then the name and extra fields of its own length
            local = f.read(30)
            start = info.header_offset + 30 + int.from_bytes(local[26:28], "little") + int.from_bytes(local[28:30], "little")
            f.seek(start)
            version = np.lib.format.read_magic(f)
            if version not in ((1, 0), (2, 0)):
                with z.open(info) as member:
                    out[name] = np.lib.format.read_array(member, allow_pickle=False)
                continue
            read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            shape, fortran, dtype = read_header(f)
            if dtype.hasobject:
                raise ValueError(f"{path}: member {name} holds Python objects")
            out[name] = advise_random(np.memmap(path, dtype=dtype, mode="r", offset=f.tell(), shape=shape,
                                                order="F" if fortran else "C"))
    return out
