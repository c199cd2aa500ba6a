"""Quick labels for an SAE that was never interpreted: a phrase from the titles of each feature's strongest
documents (no embeddings; what every view shows, marked `labels: keywords`, until `interpret` runs)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .phrases import build_vocabulary


def top_documents(codes_csc, features: np.ndarray, n: int) -> list[np.ndarray]:
    """Rows of each feature's `n` highest-activating documents, strongest first."""
    out = []
    for f in features:
        lo, hi = codes_csc.indptr[f], codes_csc.indptr[f + 1]
        order = np.argsort(-codes_csc.data[lo:hi], kind="stable")[:n]
        out.append(codes_csc.indices[lo:hi][order].astype(np.int64))
    return out


def title_keyword_labels(titles: Sequence[str], codes_csc, *, top_docs: int = 10) -> dict[int, str]:
    """Quick labels for an SAE that was never interpreted: per feature, the standalone phrase of the phrase
    vocabulary (built over the titles) most frequent in the titles of its `top_docs` strongest documents and
    rare in the corpus (share of those titles x idf; longer phrases win ties), one that two of the titles share
    where there is one. No embeddings, a second or two."""
    vocab = build_vocabulary(titles, min_df=2, max_df=0.1)
    if not vocab.phrases:
        return {}
    idf = np.log(vocab.n_docs / np.maximum(vocab.df, 1)) * (1 + 0.1 * np.char.count(vocab.phrases, " "))
    idf = np.where(vocab.standalone, idf, 0.0)
    feats = np.flatnonzero(np.diff(codes_csc.indptr))
    labels: dict[int, str] = {}
    for f, docs in zip(feats, top_documents(codes_csc, feats, top_docs)):
        counts = np.asarray(vocab.rows(docs).sum(0)).ravel()
        score = counts * idf
        shared = score * (counts >= min(2, len(docs)))
        best = int(np.argmax(shared)) if shared.max() > 0 else int(np.argmax(score))
        if score[best] > 0:
            labels[int(f)] = vocab.display[best]
    return labels
