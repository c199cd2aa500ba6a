"""Damaged workspace files: the one place that turns a file's read error into a DamagedFileError naming the file
and how to make it again (`embedsae.check` reads every file of a workspace to find damage).

Every reader of a workspace file parses inside `reading(path)` (or calls `read_json_object`), so a truncated,
overwritten or foreign file gives one line that front ends show as they show any WorkspaceError (the CLI:
exit 2; the HTTP API: 409), never a traceback.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import sqlite3
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from . import layout
from .errors import DamagedFileError, EmbedSAEError, WorkspaceBusyError

DAMAGE_ERRORS: tuple[type[BaseException], ...] = (
    ValueError,  # json.JSONDecodeError, UnicodeDecodeError, pyarrow.ArrowInvalid, numpy's format errors
    KeyError, TypeError, IndexError, EOFError, zipfile.BadZipFile, sqlite3.DatabaseError,
)
"""What reading a damaged file raises (checked around parsing only, never around the computation after it)."""

DISK_FULL = (errno.ENOSPC, errno.EDQUOT)

FIXES = {
    layout.MANIFEST: "restore it, or embed the corpus into a new workspace",
    layout.CORPUS: "embed the corpus again",
    layout.SHARDS_INDEX: "embed the corpus again",
    layout.EMBEDDINGS: "embed the corpus again",
    layout.SAE_CONFIG: "train (or import) the SAE again",
    layout.SAE_WEIGHTS: "train (or import) the SAE again",
    layout.VAL_INDICES: "train the SAE again",
    layout.METRICS: "evaluate the SAE again (with `recompute`)",
    layout.CODES: "delete it: the codes are computed again from the SAE",
    layout.FEATURES_DB: "delete it and interpret the SAE again",
    layout.FAMILIES_JSON: "find the families again",
    layout.CONCEPT_INDEX: "build the index again",
    layout.INDEX_JSON: "build the index again",
    layout.BM25: "build the index again",
    layout.ANN: "build the index again",
    layout.SHARDS: "embed the corpus again",
}


def fix_for(path: str | os.PathLike) -> str:
    """How to make a workspace file again: by its name, else by the folder it lies in."""
    p = Path(path)
    for part in (p.name, *(q.name for q in p.parents)):
        if part in FIXES:
            return FIXES[part]
    return "restore it from a copy, or run the stage that writes it again"


def damaged(path: str | os.PathLike, cause: BaseException | str, fix: str | None = None) -> DamagedFileError:
    """The error for a damaged file: '<path> is damaged (<what the reader said>); <fix>'."""
    if isinstance(cause, BaseException):
        text = str(cause).strip().splitlines()[0] if str(cause).strip() else type(cause).__name__
        if isinstance(cause, KeyError):
            text = f"{text} is missing"
    else:
        text = cause
    text = text if len(text) <= 160 else text[:157] + "..."
    return DamagedFileError(f"{path} is damaged ({text}); {fix or fix_for(path)}", str(path))


def sqlite_error(path: str | os.PathLike, exc: sqlite3.Error) -> Exception:
    """What an SQLite error on a workspace database means: a full disk (OSError), a lock held by another process
    (WorkspaceBusyError), else damage (DamagedFileError)."""
    text = str(exc).lower()
    if "disk is full" in text:
        return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
    if "database is locked" in text or "database is busy" in text:
        return WorkspaceBusyError(f"{path} is locked by another process; try again when it has finished")
    if "readonly database" in text or "read-only" in text:
        return OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))
    return damaged(path, exc)


@contextlib.contextmanager
def reading(path: str | os.PathLike, fix: str | None = None) -> Iterator[None]:
    """Parse a workspace file inside this block: a read error becomes a DamagedFileError naming `path` (errors
    embedsae raises on purpose, and a missing file or a permission problem, pass through unchanged)."""
    try:
        yield
    except EmbedSAEError:
        raise
    except sqlite3.Error as exc:
        raise sqlite_error(path, exc) from exc
    except DAMAGE_ERRORS as exc:
        raise damaged(path, exc, fix) from exc


def read_json_object(path: str | os.PathLike, required: tuple[str, ...] = (), fix: str | None = None) -> dict[str, Any]:
    """A JSON file that must hold an object (with the `required` keys); DamagedFileError otherwise."""
    with reading(path, fix):
        with open(path, encoding="utf-8") as f:
            value = json.load(f)
    if not isinstance(value, dict):
        raise damaged(path, f"it holds a JSON {type(value).__name__}, not an object", fix)
    missing = [k for k in required if k not in value]
    if missing:
        raise damaged(path, f"'{missing[0]}' is missing", fix)
    return value
