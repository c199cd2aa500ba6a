"""Readable feature labels for the structure views: the interpreted labels when they exist, else keywords.

The fallback derives a short label per feature from the titles of its top-activating documents: the terms
frequent in those titles and rare in the corpus (count x idf), so the views stay readable before
`embedsae interpret` has run.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import TYPE_CHECKING

import numpy as np
import scipy.sparse as sp

if TYPE_CHECKING:
    from ..sae.codes import Codes

_WORD = re.compile(r"[a-z][a-z0-9\-]+")


def keyword_labels(
    titles: list[str], codes: Codes, *, top_docs: int = 10, n_terms: int = 3, features: np.ndarray | None = None
) -> dict[int, str]:
    """Feature id -> "term, term, term" from the titles of the feature's `top_docs` strongest documents.

    Features that never fire get no label. Terms are single words and two-word phrases (English stop words
    removed), scored by their count among the top titles times their inverse document frequency.
    """
    from sklearn.feature_extraction.text import CountVectorizer

    if len(titles) != len(codes):
        raise ValueError(f"{len(titles)} titles for {len(codes)} codes")
    vec = CountVectorizer(stop_words="english", ngram_range=(1, 2), min_df=2, binary=True,
                          token_pattern=r"(?u)\b[a-zA-Z][a-zA-Z0-9\-]+\b")
    try:
        term_mat = vec.fit_transform(titles).tocsr()
    except ValueError:  # empty vocabulary (tiny or odd corpora)
        return {}
    vocab = vec.get_feature_names_out()
    df = np.asarray(term_mat.sum(axis=0)).ravel()
    idf = np.log((1 + len(titles)) / (1 + df)) + 1.0

    top = _top_documents(codes, top_docs)  # features x docs, 1 where the doc is among the feature's strongest
    if features is not None:
        mask = np.zeros(top.shape[0], dtype=bool)
        mask[np.asarray(features, dtype=np.int64)] = True
        top = sp.diags(mask.astype(np.float32)) @ top
    scores = (top @ term_mat).tocsr().astype(np.float64)
    labels: dict[int, str] = {}
    for f in np.flatnonzero(np.diff(scores.indptr)):
        lo, hi = scores.indptr[f], scores.indptr[f + 1]
        cols, counts = scores.indices[lo:hi], scores.data[lo:hi]
        score = counts * idf[cols] * np.where(np.char.count(vocab[cols].astype(str), " ") > 0, 1.2, 1.0)
        order = np.argsort(-score, kind="stable")
        chosen: list[str] = []
        words: set[str] = set()
        for j in order:
            term = str(vocab[cols[j]])
            parts = set(term.split())
            if counts[j] < 2 and chosen:
                break
            if parts <= words:
                continue
            if " " in term:  # a phrase replaces the single words it contains
                chosen = [c for c in chosen if c not in parts]
            chosen.append(term)
            words |= parts
            if len(chosen) >= n_terms:
                break
        if chosen:
            labels[int(f)] = ", ".join(chosen)
    return labels


def _top_documents(codes: Codes, top_docs: int) -> sp.csr_matrix:
    """Features x documents 0/1 matrix marking each feature's `top_docs` highest-activating documents."""
    acts = codes.to_csr().T.tocsr()  # features x docs
    rows, cols = [], []
    for f in np.flatnonzero(np.diff(acts.indptr)):
        lo, hi = acts.indptr[f], acts.indptr[f + 1]
        vals = acts.data[lo:hi]
        take = np.argsort(-vals, kind="stable")[:top_docs]
        rows.append(np.full(len(take), f))
        cols.append(acts.indices[lo:hi][take])
    if not rows:
        return sp.csr_matrix(acts.shape, dtype=np.float32)
    r, c = np.concatenate(rows), np.concatenate(cols)
    return sp.csr_matrix((np.ones(len(r), np.float32), (r, c)), shape=acts.shape)


def structure_labels(ws, sae: str, codes: Codes) -> tuple[dict[int, str], str]:
    """Labels to show for an SAE's features and where they come from ("interpret" or "keywords")."""
    from ..interpret import feature_labels

    labels = feature_labels(ws, sae)
    if labels:
        return labels, "interpret"
    return keyword_labels(ws.titles(), codes), "keywords"


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
