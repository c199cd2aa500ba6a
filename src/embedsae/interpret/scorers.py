"""Scorers: how well a feature's label predicts where the feature fires.

- embedding scorer (delphi's, offline): AUC of the cosine similarity between the embedding of the label (its
  name, or its description) and held-out activating documents (up to 40, spread over the activation range) vs.
  held-out random non-activating documents (200), and vs. their per-document hard negatives (each held-out
  activating document's nearest document the feature does not fire on);
- quality (no label needed): coherence of the top documents and a flag for features that are mixtures;
- category scorer: precision, recall and F1 of the feature as a detector of its best-matching document
  category (where documents carry categories);
- LLM detection scorer: see `llm.detection_scores` (Pearson r and F1 of an LLM's predictions).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def auc_matrix(pos: np.ndarray, neg: np.ndarray) -> np.ndarray:
    """Row-wise ROC AUC: share of (positive, negative) pairs ranked correctly, ties counting one half.

    `pos` is (m, a) and `neg` is (m, b): scores of a positives and b negatives under m scorers.
    """
    pos, neg = np.atleast_2d(np.asarray(pos)), np.atleast_2d(np.asarray(neg))
    a, b = pos.shape[1], neg.shape[1]
    if a == 0 or b == 0:
        return np.full(pos.shape[0], np.nan)
    if pos.dtype == neg.dtype == np.float32 and not (np.isnan(pos).any() or np.isnan(neg).any()):
        return _auc_float32(pos, neg)
    from scipy.stats import rankdata

    pos, neg = pos.astype(np.float64), neg.astype(np.float64)
    ranks = rankdata(np.concatenate([pos, neg], axis=1), axis=1)  # ties share their mean rank
    return (ranks[:, :a].sum(1) - a * (a + 1) / 2) / (a * b)


def _sort_keys(x: np.ndarray) -> np.ndarray:
    """uint64 keys of float32 scores ordered as (row, score): the row in the high 32 bits, above the score's bits
    mapped to an unsigned integer of the same order (-0.0 made +0.0 so that the two tie)."""
    bits = np.ascontiguousarray(x + np.float32(0.0)).view(np.uint32)
    bits = bits ^ np.where(bits >> 31, np.uint32(0xFFFFFFFF), np.uint32(0x80000000))
    rows = np.arange(x.shape[0], dtype=np.uint64)[:, None] << np.uint64(32)
    return rows | bits.astype(np.uint64)


def _auc_float32(pos: np.ndarray, neg: np.ndarray) -> np.ndarray:
    """`auc_matrix` of float32 scores without NaNs: each positive counted against its row's sorted negatives (a
    row-wise sort and two binary searches over all rows at once), the same figures as by ranks."""
    m, a = pos.shape
    b = neg.shape[1]
    sorted_neg = _sort_keys(np.sort(neg, axis=1)).ravel()  # rows sorted, row-major: sorted as a whole
    keys = _sort_keys(pos).ravel()
    start = np.repeat(np.arange(m, dtype=np.int64) * b, a)
    below = np.searchsorted(sorted_neg, keys, "left") - start
    ties = np.searchsorted(sorted_neg, keys, "right") - start - below
    u = (below + 0.5 * ties).reshape(m, a).sum(1)
    return u / (a * b)


def auc(pos: Sequence[float], neg: Sequence[float]) -> float:
    """ROC AUC of scores given to positives vs. negatives (NaN when either side is empty)."""
    return float(auc_matrix(np.asarray(pos)[None, :], np.asarray(neg)[None, :])[0])


def embedding_scores(label_vec: np.ndarray, doc_vectors: np.ndarray, ex, prefix: str = "embedding_auc"
                     ) -> dict[str, float | None]:
    """Delphi's embedding scorer on held-out examples: AUC against random (`<prefix>`) and against the per-document
    hard negatives (`<prefix>_hard`), and for the name (prefix `embedding_auc`) their mean
    (`embedding_auc_combined`), which rewards names that are precise as well as on topic. The description is
    scored with prefix `description_auc`."""
    v = np.asarray(label_vec, dtype=np.float32)
    v = v / max(float(np.linalg.norm(v)), 1e-12)
    pos = doc_vectors[ex.heldout_pos] @ v
    rand, hard = prefix, f"{prefix}_hard"
    out: dict[str, float | None] = {rand: None, hard: None}
    if len(pos) and len(ex.heldout_neg):
        out[rand] = auc(pos, doc_vectors[ex.heldout_neg] @ v)
    if len(pos) and len(ex.heldout_hard):
        out[hard] = auc(pos, doc_vectors[ex.heldout_hard] @ v)
    if prefix == "embedding_auc" and out[rand] is not None and out[hard] is not None:
        out["embedding_auc_combined"] = (out[rand] + out[hard]) / 2
    return out


def pearson(x: Sequence[float], y: Sequence[float]) -> float | None:
    """Pearson correlation, or None when either side is constant."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    if len(x) < 2 or x.std() == 0 or y.std() == 0:
        return None
    return float(np.corrcoef(x, y)[0, 1])


def f1_score(pred: Sequence[bool], truth: Sequence[bool]) -> tuple[float, float, float]:
    """Precision, recall and F1 of boolean predictions (0 where undefined)."""
    pred, truth = np.asarray(pred, bool), np.asarray(truth, bool)
    tp = float((pred & truth).sum())
    p = tp / pred.sum() if pred.sum() else 0.0
    r = tp / truth.sum() if truth.sum() else 0.0
    return p, r, (2 * p * r / (p + r) if p + r else 0.0)


def document_categories(corpus) -> list[list[str]] | None:
    """Per document, its list of categories (empty when it has none); None when the corpus has no categories."""
    if "categories" not in corpus.columns:
        return None
    out: list[list[str]] = []
    for v in corpus["categories"]:
        if v is None or (isinstance(v, float) and v != v):
            out.append([])
        elif isinstance(v, str):
            out.append([c.strip() for c in v.split(",") if c.strip()])
        else:
            out.append([str(c) for c in v])
    return out if any(out) else None


def category_scores(
    codes_csr, categories: list[list[str]], features: Sequence[int], *, min_docs: int = 3
) -> dict[int, dict]:
    """For each feature, P/R/F1 as a detector of its best-matching category over the documents with categories.

    A feature "detects" a document when it fires on it. Features firing on fewer than `min_docs` categorised
    documents get no category score.
    """
    import scipy.sparse as sp

    labelled = np.asarray([i for i, c in enumerate(categories) if c], dtype=np.int64)
    if len(labelled) == 0:
        return {}
    names = sorted({c for cs in categories for c in cs})
    col = {c: j for j, c in enumerate(names)}
    rows = [r for r, i in enumerate(labelled) for _ in categories[i]]
    cols = [col[c] for i in labelled for c in categories[i]]
    cat = sp.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(len(labelled), len(names)))
    fired = codes_csr[labelled][:, np.asarray(features, dtype=np.int64)]
    fired.data[:] = 1.0
    fired = fired.tocsc()
    inter = (fired.T @ cat).toarray()  # features x categories
    n_fired = np.asarray(fired.sum(0)).ravel()
    n_cat = np.asarray(cat.sum(0)).ravel()
    out: dict[int, dict] = {}
    for j, f in enumerate(features):
        if n_fired[j] < min_docs:
            continue
        p = inter[j] / n_fired[j]
        r = inter[j] / np.maximum(n_cat, 1)
        f1 = np.where(p + r > 0, 2 * p * r / np.maximum(p + r, 1e-12), 0.0)
        best = int(np.argmax(f1))
        out[int(f)] = {"category": names[best], "category_precision": float(p[best]),
                       "category_recall": float(r[best]), "category_f1": float(f1[best])}
    return out


MIXTURE_GAP = 0.15
"""A feature is a mixture when its top documents split into two groups whose within-group similarity beats the
similarity across groups by this much (and the smaller group holds at least MIXTURE_MIN_SHARE of them). Read on
the default arXiv SAE: at gaps of 0.12-0.15 most splits are of incoherent features (no two topics), from 0.15 on
most are two topics ("gaze" / "attention", "conversational AI" / "reinforcement learning"); 13 % are flagged."""
MIXTURE_MIN_SHARE = 0.25


def coherence(doc_vectors: np.ndarray, docs: np.ndarray) -> float | None:
    """Mean cosine similarity between distinct pairs of the documents `docs` (unit vectors); None under two."""
    if len(docs) < 2:
        return None
    x = np.asarray(doc_vectors[docs], dtype=np.float64)
    g = x @ x.T
    n = len(docs)
    return float((g.sum() - np.trace(g)) / (n * (n - 1)))


def mixture_split(doc_vectors: np.ndarray, docs: np.ndarray, *, iters: int = 10) -> tuple[np.ndarray, float] | None:
    """Two-means (cosine) split of the documents: (group of each document, within- minus across-group mean
    similarity); None for fewer than four documents."""
    if len(docs) < 4:
        return None
    x = np.asarray(doc_vectors[docs], dtype=np.float64)
    g = x @ x.T
    a, b = np.unravel_index(np.argmin(g), g.shape)  # start from the two least similar documents
    centres = x[[a, b]]
    group = np.zeros(len(x), int)
    for _ in range(iters):
        new = np.argmax(x @ centres.T, axis=1)
        if min(np.bincount(new, minlength=2)) == 0 or (new == group).all():
            group = new
            break
        group = new
        centres = np.stack([x[group == k].mean(0) for k in (0, 1)])
    if min(np.bincount(group, minlength=2)) < 2:
        return group, 0.0
    same = group[:, None] == group[None, :]
    np.fill_diagonal(same, False)
    across = group[:, None] != group[None, :]
    return group, float(g[same].mean() - g[across].mean())


def is_mixture(doc_vectors: np.ndarray, docs: np.ndarray) -> bool:
    """Whether the documents form two clearly separate groups (see MIXTURE_GAP)."""
    split = mixture_split(doc_vectors, docs)
    if split is None:
        return False
    group, gap = split
    return gap >= MIXTURE_GAP and np.bincount(group, minlength=2).min() >= MIXTURE_MIN_SHARE * len(group)


def quality_scores(doc_vectors: np.ndarray, ex) -> dict[str, float | None]:
    """Label-free quality of a feature from its shown activating documents: coherence (of the top documents)
    and the mixture flag (1.0 when they form two separate groups)."""
    return {"coherence": coherence(doc_vectors, ex.top),
            "mixture": float(is_mixture(doc_vectors, ex.shown_pos)) if len(ex.shown_pos) >= 4 else None}
