"""Concept groups ("Profession: doctor, nurse, ...") read from a categories CSV or a text file, and matched
against a workspace's vocabulary with every missing word reported."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import InputError

GROUP_COLUMNS = ("category", "group", "concept", "label")
WORD_COLUMNS = ("word", "term", "token", "item")


@dataclass
class ConceptGroups:
    """Named groups of words, in file order (a word may belong to several groups)."""

    groups: dict[str, list[str]]
    source: str = ""

    def __len__(self) -> int:
        return len(self.groups)

    def all_words(self) -> list[str]:
        """Every word of every group, once, in file order."""
        return list(dict.fromkeys(w for words in self.groups.values() for w in words))

    def match(self, vocabulary: list[str]) -> GroupMatch:
        """Find each group's words in `vocabulary` (exactly, else case-insensitively); keep the misses."""
        exact = {}
        lower = {}
        for i, w in enumerate(vocabulary):
            exact.setdefault(w, i)
            lower.setdefault(w.lower(), i)
        members: dict[str, np.ndarray] = {}
        missing: dict[str, list[str]] = {}
        for name, words in self.groups.items():
            found, miss = [], []
            for w in words:
                i = exact.get(w, lower.get(w.lower()))
                (found.append(i) if i is not None else miss.append(w))
            members[name] = np.unique(np.asarray(found, dtype=np.int64))
            missing[name] = miss
        return GroupMatch(names=list(self.groups), members=members, missing=missing, n_vocabulary=len(vocabulary))


@dataclass
class GroupMatch:
    """Groups matched to a vocabulary: member row indices per group and the words that were not found."""

    names: list[str]
    members: dict[str, np.ndarray]
    missing: dict[str, list[str]] = field(default_factory=dict)
    n_vocabulary: int = 0

    def membership(self, names: list[str] | None = None):
        """A sparse (vocabulary x groups) 0/1 matrix, columns in the order of `names` (default: all groups)."""
        import scipy.sparse as sp

        names = self.names if names is None else names
        rows = np.concatenate([self.members[n] for n in names]) if names else np.zeros(0, dtype=np.int64)
        cols = np.concatenate([np.full(len(self.members[n]), j) for j, n in enumerate(names)]) if names else rows
        data = np.ones(len(rows), dtype=np.float32)
        return sp.csc_matrix((data, (rows, cols)), shape=(self.n_vocabulary, len(names)))

    def missing_words(self) -> list[str]:
        """Every word that no group could find in the vocabulary, once."""
        return list(dict.fromkeys(w for ws in self.missing.values() for w in ws))

    def summary(self) -> str:
        """One line: how many group words were found and which were missing (the first few)."""
        found = sum(len(m) for m in self.members.values())
        miss = self.missing_words()
        text = f"{found} group words found in the vocabulary of {self.n_vocabulary}; {len(miss)} missing"
        if miss:
            text += ": " + ", ".join(miss[:12]) + (", ..." if len(miss) > 12 else "")
        return text


def read_groups(path: str | os.PathLike) -> ConceptGroups:
    """Read concept groups from a CSV with a category and a word column, or from `Group: w1, w2, ...` lines."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"groups file not found: {path}; give a CSV (category,word) or a text file of 'Group: w1, w2' lines")
    if path.suffix.lower() in (".csv", ".tsv"):
        return _groups(_read_csv(path), str(path))
    return parse_groups(path.read_text(encoding="utf-8"), source=str(path))


def parse_groups(groups: str | Mapping[str, Sequence[str]], source: str = "groups") -> ConceptGroups:
    """Concept groups from `Group: w1, w2, ...` lines (blank lines and `#` comments skipped) or from a mapping
    group -> words; the same rules as a groups file, errors naming the line."""
    if isinstance(groups, str):
        return _groups(_parse_lines(groups, source), source)
    parsed = {str(g).strip(): [str(w).strip() for w in ws if str(w).strip()] for g, ws in groups.items()}
    empty = [g for g, ws in parsed.items() if not g or not ws]
    if empty:
        raise InputError(f"{source}: group '{empty[0]}' has no name or no words; give each group a name and words")
    return _groups(parsed, source)


def _groups(groups: dict[str, list[str]], source: str) -> ConceptGroups:
    groups = {g: list(dict.fromkeys(ws)) for g, ws in groups.items() if ws}
    if not groups:
        raise InputError(f"{source} defines no groups with words; write one group a line as 'Group: word1, word2, ...'")
    return ConceptGroups(groups, source=source)


def _read_csv(path: Path) -> dict[str, list[str]]:
    import pandas as pd

    try:
        df = pd.read_csv(path, sep="\t" if path.suffix.lower() == ".tsv" else ",", dtype=str, keep_default_na=False)
    except Exception as exc:
        raise InputError(f"could not parse groups file {path}: {exc}") from exc
    cols = {str(c).strip().lower(): c for c in df.columns}
    gcol = next((cols[c] for c in GROUP_COLUMNS if c in cols), None)
    wcol = next((cols[c] for c in WORD_COLUMNS if c in cols), None)
    if gcol is None or wcol is None:
        raise InputError(
            f"groups file {path} needs a group column ({'/'.join(GROUP_COLUMNS)}) and a word column "
            f"({'/'.join(WORD_COLUMNS)}); it has: {', '.join(map(str, df.columns))}"
        )
    groups: dict[str, list[str]] = {}
    for g, w in zip(df[gcol], df[wcol]):
        g, w = str(g).strip(), str(w).strip()
        if g and w:
            groups.setdefault(g, []).append(w)
    return groups


def _parse_lines(text: str, source: str) -> dict[str, list[str]]:
    groups: dict[str, list[str]] = {}
    for lineno, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if ":" not in line:
            raise InputError(
                f"{source}, line {lineno}: expected 'Group: word1, word2, ...', got '{line[:60]}' (no colon)"
            )
        name, _, rest = line.partition(":")
        name = name.strip()
        if not name:
            raise InputError(f"{source}, line {lineno}: the group name before ':' is empty")
        words = [w.strip() for w in rest.split(",") if w.strip()]
        if not words:
            raise InputError(f"{source}, line {lineno}: group '{name}' lists no words after ':'")
        groups.setdefault(name, []).extend(words)
    return groups


def column_groups(ids: list[str], values, column: str, *, max_groups: int = 40, min_size: int = 3) -> ConceptGroups:
    """Concept groups from a corpus column: each value (each item of a list value) names the group of the
    documents that carry it, members given by document id; the `max_groups` most frequent values with at least
    `min_size` documents are kept."""
    from collections import Counter

    members: dict[str, list[str]] = {}
    for doc, value in zip(ids, values):
        items = value if isinstance(value, (list, tuple, np.ndarray)) else [value]
        for item in items:
            if item is None or (isinstance(item, float) and np.isnan(item)) or not str(item).strip():
                continue
            members.setdefault(str(item).strip(), []).append(doc)
    sizes = Counter({g: len(d) for g, d in members.items() if len(d) >= min_size})
    if not sizes:
        raise InputError(f"column '{column}' holds no value shared by {min_size} or more documents: it cannot "
                         "group them; pick a column of categories (e.g. a topic or a year)")
    return ConceptGroups({g: members[g] for g, _ in sizes.most_common(max_groups)}, source=f"column {column}")
