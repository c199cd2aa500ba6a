"""Feature labels for the structure views (from `embedsae.interpret.feature_labels`, which falls back to quick
title keywords before `embedsae interpret` has run) and family labels combined from them."""

from __future__ import annotations

import re
from collections import Counter
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..sae.codes import Codes

_WORD = re.compile(r"[a-z][a-z0-9\-]+")


def structure_labels(ws, sae: str, codes: Codes) -> tuple[dict[int, str], str]:
    """Labels to show for an SAE's features and where they come from ("interpret" or "keywords"): those of
    `embedsae.interpret.feature_labels`, the one source of labels of every view."""
    from ..interpret import feature_labels

    labels = feature_labels(ws, sae, codes=codes)
    return labels, labels.source


def label_words(label: str) -> list[str]:
    """Content words of a label (lower case, short stop words dropped), for combining labels."""
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

    return [w for w in _WORD.findall(label.lower()) if w not in ENGLISH_STOP_WORDS and len(w) > 2]


def family_label(parent_label: str, child_labels: list[str], *, n_terms: int = 3) -> str:
    """A family's label: the parent's label, then the terms most shared by its children's labels."""
    parent_words = set(label_words(parent_label))
    counts: Counter[str] = Counter()
    for lab in child_labels:
        counts.update(set(label_words(lab)) - parent_words)
    common = [w for w, c in counts.most_common(n_terms * 2) if c >= 2][:n_terms]
    if not common:
        common = [w for w, _ in counts.most_common(n_terms)]
    base = parent_label or "?"
    return f"{base} [{', '.join(common)}]" if common else base
