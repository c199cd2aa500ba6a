"""Feature interpretation: examples, labels and scores per SAE feature, kept in SQLite in the workspace.

The two accessors below are the contract other stages (families, search, the app) rely on; they work
(returning nothing) before `embedsae interpret` has run.
"""

from __future__ import annotations

import sqlite3

from ..workspace import Workspace

DB_NAME = "features.db"


def _db_path(ws: Workspace, sae: str):
    return ws.sae_dir(sae) / DB_NAME


def feature_labels(ws: Workspace, sae: str | None = None) -> dict[int, str]:
    """Feature id -> label for an interpreted SAE; empty when it has not been interpreted."""
    name = ws.resolve_sae(sae)
    path = _db_path(ws, name)
    if not path.is_file():
        return {}
    with sqlite3.connect(path) as con:
        try:
            rows = con.execute("SELECT id, label FROM features WHERE label IS NOT NULL").fetchall()
        except sqlite3.OperationalError:
            return {}
    return {int(i): str(label) for i, label in rows}


def clean_features(ws: Workspace, sae: str | None = None) -> set[int] | None:
    """Ids of the features that pass the clean-feature filter, or None when the SAE is not interpreted."""
    name = ws.resolve_sae(sae)
    path = _db_path(ws, name)
    if not path.is_file():
        return None
    with sqlite3.connect(path) as con:
        try:
            rows = con.execute("SELECT id FROM features WHERE clean = 1").fetchall()
        except sqlite3.OperationalError:
            return None
    return {int(r[0]) for r in rows}
