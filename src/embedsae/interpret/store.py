"""The feature store: one SQLite database per SAE (saes/<name>/features.db) with features, labels, scores,
examples and the LLM response cache.

Writes happen in transactions (one per batch of features), so a killed run keeps every batch it committed.
A store opened for reading (`FeatureStore.read`) never creates or changes a file, and works in a read-only
workspace. Whether an SAE has been interpreted is the `interpreted` flag in the store's meta table (set when
the clean-feature filter has run), not the existence of the file.
"""

from __future__ import annotations

import functools
import json
import os
import sqlite3
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import pandas as pd

from .. import layout
from .._io import atomic_path, now_iso
from ..errors import InputError, WorkspaceError
from ..integrity import DISK_FULL, damaged, sqlite_error
from ..records import INTERPRETED, FeatureScores, FeatureSummary, number, plain

__all__ = ["DISK_FULL", "FeatureStore", "db_path", "remove_database"]
F = TypeVar("F", bound=Callable[..., Any])

DB_NAME = layout.FEATURES_DB

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE IF NOT EXISTS features (
    id INTEGER PRIMARY KEY,
    label TEXT,
    description TEXT,
    labeller TEXT,
    density REAL,
    act_mean REAL,
    act_max REAL,
    n_active INTEGER,
    category TEXT,
    clean INTEGER DEFAULT 0,
    status TEXT,
    run INTEGER,
    updated TEXT
);
CREATE TABLE IF NOT EXISTS labels (
    feature INTEGER, labeller TEXT, label TEXT, description TEXT, detail TEXT, created TEXT,
    PRIMARY KEY (feature, labeller)
);
CREATE TABLE IF NOT EXISTS scores (
    feature INTEGER, scorer TEXT, value REAL,
    PRIMARY KEY (feature, scorer)
);
CREATE TABLE IF NOT EXISTS examples (
    feature INTEGER, doc INTEGER, kind TEXT, split TEXT, activation REAL
);
CREATE INDEX IF NOT EXISTS examples_feature ON examples (feature);
CREATE TABLE IF NOT EXISTS llm_cache (
    key TEXT PRIMARY KEY, response TEXT, prompt_tokens INTEGER, completion_tokens INTEGER, created TEXT
);
"""

SCORE_NAMES = FeatureScores.names()
"""Every score a feature can have (the columns the feature table always carries)."""

MIGRATIONS = (("features", "description", "TEXT"), ("labels", "description", "TEXT"),
              ("features", "labeller_version", "TEXT"))
"""Columns added since the first schema: (table, column, type). A store opened for writing gains the missing ones;
one opened for reading shows them as empty."""


def db_path(sae_dir: str | os.PathLike) -> Path:
    """Where an SAE's feature database lives."""
    return Path(sae_dir) / DB_NAME


def remove_database(path: str | os.PathLike) -> None:
    """Delete a feature database with its side files (-wal, -shm, -journal)."""
    for suffix in ("", "-wal", "-shm", "-journal"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


def _guarded(method: F) -> F:
    """SQLite errors of a store method as embedsae errors: damage names the file and the fix, a full disk is an
    OSError (ENOSPC), a lock held elsewhere a WorkspaceBusyError (pandas wraps sqlite's error: its cause counts)."""

    @functools.wraps(method)
    def wrapper(self: FeatureStore, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        except Exception as exc:
            cause = exc if isinstance(exc, sqlite3.Error) else exc.__cause__
            if isinstance(cause, sqlite3.Error):
                raise sqlite_error(self.path, cause) from exc
            raise

    return wrapper  # type: ignore[return-value]


class FeatureStore:
    """The SQLite feature database of one SAE.

    `FeatureStore(path)` opens it for writing (creating it with its schema); `FeatureStore.read(path)` opens an
    existing one read-only."""

    def __init__(self, path: str | os.PathLike, *, readonly: bool = False) -> None:
        self.path = Path(path)
        self.readonly = readonly
        if readonly:
            self.con = _connect_readonly(self.path)
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.con = sqlite3.connect(self.path, timeout=30, check_same_thread=False)
        try:
            self._create()
        except BaseException:
            self.con.close()
            raise

    @_guarded
    def _create(self) -> None:
        self.con.execute("PRAGMA journal_mode=WAL")
        self.con.execute("PRAGMA synchronous=NORMAL")
        self.con.executescript(SCHEMA)
        for table, column, kind in MIGRATIONS:
            if column not in _columns(self.con, table):
                self.con.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")
        self.con.commit()

    @classmethod
    def read(cls, path: str | os.PathLike) -> FeatureStore | None:
        """The store at `path` opened read-only, or None when there is none."""
        return cls(path, readonly=True) if Path(path).is_file() else None

    @_guarded
    def is_interpreted(self) -> bool:
        """True once an interpret run has finished (its clean-feature filter has run). Stores written before
        the flag existed count as interpreted when some feature was labelled."""
        if self.get_meta("interpreted", False):
            return True
        return self.con.execute("SELECT 1 FROM features WHERE status = 'done' LIMIT 1").fetchone() is not None

    @_guarded
    def check(self) -> None:
        """Read the whole database (SQLite's integrity check and every table): DamagedFileError when it is damaged."""
        problems = [r[0] for r in self.con.execute("PRAGMA integrity_check").fetchall() if r[0] != "ok"]
        if problems:
            raise damaged(self.path, problems[0])
        self.table()
        self.con.execute("SELECT count(*) FROM examples").fetchone()

    # ------------------------------------------------------------------ lifecycle
    def close(self, *, checkpoint: bool = True) -> None:
        """Close; a writer leaves the database in rollback-journal mode, so readers later touch no file
        (`checkpoint` False skips that, e.g. on a full disk)."""
        if not self.readonly and checkpoint:
            try:
                self.con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                self.con.execute("PRAGMA journal_mode=DELETE")
            except sqlite3.Error:
                pass  # another connection is open: it switches back when it closes
        self.con.close()

    def __enter__(self) -> FeatureStore:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # ------------------------------------------------------------------ meta
    @_guarded
    def get_meta(self, key: str, default: Any = None) -> Any:
        row = self.con.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else default

    @_guarded
    def set_meta(self, key: str, value: Any) -> None:
        self.con.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, json.dumps(value)))
        self.con.commit()

    @_guarded
    def new_run(self) -> int:
        """A fresh run number (each interpret call gets one; rows note the run that wrote them)."""
        run = int(self.get_meta("runs", 0)) + 1
        self.set_meta("runs", run)
        return run

    # ------------------------------------------------------------------ writes
    @_guarded
    def write_stats(self, rows: Iterable[tuple[int, float, float, float, int]]) -> None:
        """Insert or refresh (id, density, act_mean, act_max, n_active) of features, keeping labels and scores."""
        self.con.executemany(
            "INSERT INTO features (id, density, act_mean, act_max, n_active) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT(id) DO UPDATE SET density=excluded.density, act_mean=excluded.act_mean, "
            "act_max=excluded.act_max, n_active=excluded.n_active",
            [(int(a), float(b), float(c), float(d), int(e)) for a, b, c, d, e in rows],
        )
        self.con.commit()

    @_guarded
    def write_batch(
        self,
        *,
        labels: dict[int, tuple[str | None, str, dict[str, Any]]],
        scores: dict[int, dict[str, float | None]],
        examples: dict[int, list[tuple[int, str, str, float]]] | None = None,
        categories: dict[int, str | None] | None = None,
        run: int = 0,
        status: str = "done",
        descriptions: dict[int, str | None] | None = None,
        version: str | None = None,
    ) -> None:
        """Store the labels (name, labeller, detail), descriptions, scores and examples of a batch of features in
        one transaction; `version`: the labeller's version, stamped on each feature."""
        ts = now_iso()
        descriptions = descriptions or {}
        with self.con:
            for fid, (label, labeller, detail) in labels.items():
                desc = descriptions.get(fid)
                self.con.execute(
                    "INSERT OR REPLACE INTO labels (feature, labeller, label, description, detail, created) "
                    "VALUES (?, ?, ?, ?, ?, ?)", (int(fid), labeller, label, desc, json.dumps(detail), ts),
                )
                self.con.execute(
                    "UPDATE features SET label = ?, description = ?, labeller = ?, labeller_version = ?, status = ?, "
                    "run = ?, updated = ? WHERE id = ?",
                    (label, desc, labeller, version, status if label is not None else "failed", run, ts, int(fid)),
                )
            for fid, vals in scores.items():
                for name, value in vals.items():
                    if value is None:
                        continue
                    self.con.execute(
                        "INSERT OR REPLACE INTO scores (feature, scorer, value) VALUES (?, ?, ?)",
                        (int(fid), name, float(value)),
                    )
            for fid, cat in (categories or {}).items():
                self.con.execute("UPDATE features SET category = ? WHERE id = ?", (cat, int(fid)))
            if examples:
                self.con.executemany(
                    "DELETE FROM examples WHERE feature = ?", [(int(f),) for f in examples]
                )
                self.con.executemany(
                    "INSERT INTO examples (feature, doc, kind, split, activation) VALUES (?, ?, ?, ?, ?)",
                    [(int(f), int(d), k, s, float(a)) for f, rows in examples.items() for d, k, s, a in rows],
                )

    @_guarded
    def rename(self, feature: int, labeller: str, label: str, description: str | None,
               scores: dict[str, float | None], detail: dict[str, Any]) -> None:
        """Give a labelled feature another name and description (with their scores and the labeller's detail)."""
        ts = now_iso()
        with self.con:
            self.con.execute("UPDATE features SET label = ?, description = ?, updated = ? WHERE id = ?",
                             (label, description, ts, int(feature)))
            self.con.execute("UPDATE labels SET label = ?, description = ?, detail = ?, created = ? "
                             "WHERE feature = ? AND labeller = ?",
                             (label, description, json.dumps(detail), ts, int(feature), labeller))
            for name, value in scores.items():
                if value is None:
                    self.con.execute("DELETE FROM scores WHERE feature = ? AND scorer = ?", (int(feature), name))
                else:
                    self.con.execute("INSERT OR REPLACE INTO scores (feature, scorer, value) VALUES (?, ?, ?)",
                                     (int(feature), name, float(value)))

    @_guarded
    def set_clean(self, clean_ids: Sequence[int]) -> None:
        """Mark exactly these features as clean; the SAE counts as interpreted from then on."""
        with self.con:
            self.con.execute("UPDATE features SET clean = 0")
            self.con.executemany("UPDATE features SET clean = 1 WHERE id = ?", [(int(i),) for i in clean_ids])
            self.con.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('interpreted', 'true')")

    # ------------------------------------------------------------------ reads
    @_guarded
    def done_ids(self, labeller: str, version: str | None = None) -> set[int]:
        """Features already labelled and scored by this labeller at this version (skipped on a resumed run)."""
        rows = self.con.execute(
            "SELECT f.id FROM features f JOIN scores s ON s.feature = f.id AND s.scorer = 'embedding_auc' "
            "WHERE f.status = 'done' AND f.labeller = ? AND f.labeller_version IS ?",
            (labeller, version),
        ).fetchall()
        return {int(r[0]) for r in rows}

    @_guarded
    def details(self, features: Sequence[int], labeller: str) -> dict[int, dict[str, Any]]:
        """The labeller's stored detail of each of `features` that has one."""
        out: dict[int, dict[str, Any]] = {}
        for f in features:
            row = self.con.execute("SELECT detail FROM labels WHERE feature = ? AND labeller = ?",
                                   (int(f), labeller)).fetchone()
            if row and row[0]:
                out[int(f)] = json.loads(row[0])
        return out

    @_guarded
    def table(self) -> pd.DataFrame:
        """All features with their stats, label and scores (one column per scorer)."""
        desc = "description" if "description" in _columns(self.con, "features") else "NULL AS description"
        feats = pd.read_sql_query(
            f"SELECT id, label, {desc}, labeller, density, act_mean, act_max, n_active, category, clean, status, run "
            "FROM features ORDER BY id",
            self.con,
        )
        scores = pd.read_sql_query("SELECT feature, scorer, value FROM scores", self.con)
        if len(scores):
            wide = scores.pivot(index="feature", columns="scorer", values="value")
            feats = feats.merge(wide, left_on="id", right_index=True, how="left")
        for name in SCORE_NAMES:
            if name not in feats.columns:
                feats[name] = float("nan")
        feats["clean"] = feats["clean"].fillna(0).astype(bool)
        return feats

    @_guarded
    def examples(self, feature: int) -> pd.DataFrame:
        """The stored examples of one feature (doc, kind, split, activation)."""
        return pd.read_sql_query(
            "SELECT doc, kind, split, activation FROM examples WHERE feature = ? ORDER BY kind, activation DESC",
            self.con, params=(int(feature),),
        )

    @_guarded
    def labels(self) -> dict[int, str]:
        """Feature id -> label of every labelled feature."""
        rows = self.con.execute("SELECT id, label FROM features WHERE label IS NOT NULL").fetchall()
        return {int(i): str(label) for i, label in rows}

    @_guarded
    def clean_ids(self) -> set[int]:
        """Ids of the features marked clean."""
        return {int(r[0]) for r in self.con.execute("SELECT id FROM features WHERE clean = 1").fetchall()}

    # ------------------------------------------------------------------ LLM cache
    @_guarded
    def cache_get(self, key: str) -> tuple[str, int, int] | None:
        row = self.con.execute(
            "SELECT response, prompt_tokens, completion_tokens FROM llm_cache WHERE key = ?", (key,)
        ).fetchone()
        return (row[0], int(row[1] or 0), int(row[2] or 0)) if row else None

    @_guarded
    def cache_put(self, key: str, response: str, prompt_tokens: int, completion_tokens: int) -> None:
        with self.con:
            self.con.execute(
                "INSERT OR REPLACE INTO llm_cache (key, response, prompt_tokens, completion_tokens, created) "
                "VALUES (?, ?, ?, ?, ?)",
                (key, response, int(prompt_tokens), int(completion_tokens), now_iso()),
            )


def _columns(con: sqlite3.Connection, table: str) -> set[str]:
    """The column names of a table."""
    return {row[1] for row in con.execute(f"PRAGMA table_info({table})").fetchall()}


def _connect_readonly(path: Path) -> sqlite3.Connection:
    """A read-only connection; in a read-only folder (no WAL side files can be made) the file is read as
    immutable."""
    if not path.is_file():
        raise WorkspaceError(f"no feature database at {path}")
    uri = path.resolve().as_uri()
    error: sqlite3.Error | None = None
    for suffix in ("?mode=ro", "?mode=ro&immutable=1"):
        con = sqlite3.connect(uri + suffix, uri=True, timeout=30, check_same_thread=False)
        try:
            con.execute("SELECT count(*) FROM sqlite_master").fetchone()
            return con
        except sqlite3.OperationalError as exc:  # e.g. no WAL side files can be made in a read-only folder
            con.close()
            error = exc
        except sqlite3.DatabaseError as exc:  # not a database, or a damaged one
            con.close()
            raise sqlite_error(path, exc) from exc
    raise sqlite_error(path, error) if error is not None else damaged(path, "it cannot be opened")


def stored_labels(path: str | os.PathLike) -> dict[int, str]:
    """Feature id -> label from the store at `path`; empty when there is no store or no label yet."""
    store = FeatureStore.read(path)
    if store is None:
        return {}
    try:
        return store.labels()
    finally:
        store.close()


def stored_clean_ids(path: str | os.PathLike) -> set[int] | None:
    """Ids of the clean features, or None when the SAE has not been interpreted (no store, or no finished run)."""
    store = FeatureStore.read(path)
    if store is None:
        return None
    try:
        return store.clean_ids() if store.is_interpreted() else None
    finally:
        store.close()


def feature_records(table: pd.DataFrame) -> list[FeatureSummary]:
    """The rows of a feature table as records (every score a field, None where it was not computed)."""
    out = []
    for row in table.to_dict("records"):
        out.append(FeatureSummary(
            id=int(row["id"]), label=_text(row.get("label")), description=_text(row.get("description")),
            labeller=_text(row.get("labeller")), label_source=INTERPRETED if _text(row.get("label")) else None,
            density=number(row.get("density")), act_mean=number(row.get("act_mean")),
            act_max=number(row.get("act_max")), n_active=int(row.get("n_active") or 0),
            category=_text(row.get("category")), clean=bool(row.get("clean")),
            scores=FeatureScores.from_values(row),
        ))
    return out


def _text(v: Any) -> str | None:
    return v if isinstance(v, str) else None


EXPORT_FORMATS = {".csv": "csv", ".json": "json", ".parquet": "parquet"}


def export_table(table: pd.DataFrame, path: str | os.PathLike) -> Path:
    """Write the feature table to CSV, JSON (array of objects) or Parquet, chosen by the file's suffix."""
    path = Path(path)
    fmt = EXPORT_FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise InputError(
            f"cannot export to '{path.name}': the file name must end in .csv, .json or .parquet"
        )
    with atomic_path(path) as tmp:
        if fmt == "csv":
            table.to_csv(tmp, index=False)
        elif fmt == "parquet":
            table.to_parquet(tmp, index=False)
        else:
            tmp.write_text(json.dumps(plain(feature_records(table)), indent=1) + "\n", encoding="utf-8")
    return path
