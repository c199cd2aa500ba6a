"""Example selection per feature: top-activating documents, samples across activation quantiles, random
non-activating documents and hard negatives, with held-out examples kept apart from those a labeller sees.

Split rule: the activating documents of a feature, sorted by activation, are taken in consecutive pairs and
one of each pair (at random) is held out, so both halves span the same activation range. Negatives shown to
the labeller and held-out negatives are disjoint random draws.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..data.vectors import UnitRows, blocks
from ..settings import Settings, check


@dataclass
class ExampleConfig(Settings):
    """How many examples of each kind to select per feature."""

    n_top: int = 12
    """Top-activating documents shown to the labeller."""
    n_quantile: int = 8
    """Further activating documents sampled evenly across activation quantiles (shown to the labeller)."""
    n_random_neg: int = 20
    """Random non-activating documents shown to the labeller."""
    n_hard_neg: int = 8
    """Non-activating documents nearest to the mean embedding of the top documents (shown to the labeller)."""
    n_heldout_pos: int = 40
    """Held-out activating documents (for scoring; never shown to the labeller)."""
    n_heldout_neg: int = 40
    """Held-out random non-activating documents (for scoring)."""
    n_heldout_hard: int = 10
    """Held-out hard negatives (for scoring)."""
    seed: int = 0
    """Seed of the random draws (held-out split, random negatives)."""

    def validate(self) -> None:
        super().validate()
        for name in ("n_top", "n_quantile", "n_random_neg", "n_hard_neg", "n_heldout_pos", "n_heldout_neg",
                     "n_heldout_hard"):
            check(getattr(self, name) >= 0, f"example setting '{name}' must not be negative, got {getattr(self, name)}")
        check(self.n_top >= 1, f"n_top must be at least 1, got {self.n_top}")


@dataclass
class FeatureExamples:
    """The selected examples of one feature: document row numbers and their activations."""

    feature: int
    top: np.ndarray
    top_act: np.ndarray
    quantile: np.ndarray
    quantile_act: np.ndarray
    random_neg: np.ndarray
    hard_neg: np.ndarray
    heldout_pos: np.ndarray
    heldout_pos_act: np.ndarray
    heldout_neg: np.ndarray
    heldout_hard: np.ndarray

    @property
    def shown_pos(self) -> np.ndarray:
        """Activating documents the labeller may see (top, then quantile samples)."""
        return np.concatenate([self.top, self.quantile])

    @property
    def shown_neg(self) -> np.ndarray:
        return np.concatenate([self.random_neg, self.hard_neg])

    def rows(self) -> list[tuple[int, str, str, float]]:
        """(doc, kind, split, activation) rows for the feature store."""
        out: list[tuple[int, str, str, float]] = []
        out += [(int(d), "top", "shown", float(a)) for d, a in zip(self.top, self.top_act)]
        out += [(int(d), "quantile", "shown", float(a)) for d, a in zip(self.quantile, self.quantile_act)]
        out += [(int(d), "random_neg", "shown", 0.0) for d in self.random_neg]
        out += [(int(d), "hard_neg", "shown", 0.0) for d in self.hard_neg]
        out += [(int(d), "pos", "heldout", float(a)) for d, a in zip(self.heldout_pos, self.heldout_pos_act)]
        out += [(int(d), "random_neg", "heldout", 0.0) for d in self.heldout_neg]
        out += [(int(d), "hard_neg", "heldout", 0.0) for d in self.heldout_hard]
        return out


def split_activating(docs: np.ndarray, acts: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Indices (into docs) of the shown and held-out halves: one of each consecutive pair by activation is held out.

    A feature with a single activating document keeps it on the shown side (nothing is left to score it).
    """
    order = np.argsort(-acts, kind="stable")
    n = len(order)
    if n < 2:
        return order, order[:0]
    pairs = n // 2
    flip = rng.random(pairs) < 0.5
    first, second = order[0 : 2 * pairs : 2], order[1 : 2 * pairs : 2]
    shown = np.where(flip, second, first)
    held = np.where(flip, first, second)
    if n % 2:
        shown = np.append(shown, order[-1])
    return shown, held


def _quantile_pick(n_avail: int, n: int) -> np.ndarray:
    """n positions spread evenly over 0..n_avail-1 (all when n_avail <= n)."""
    if n_avail <= n:
        return np.arange(n_avail)
    return np.unique(np.linspace(0, n_avail - 1, n).round().astype(int))


def select_examples(
    codes_csc,
    features: np.ndarray,
    embeddings: np.ndarray | UnitRows,
    cfg: ExampleConfig | None = None,
) -> list[FeatureExamples]:
    """Examples for each feature in `features`, from the documents x latents CSC matrix of codes.

    `embeddings` are the (normalised) document vectors, used for hard negatives.
    """
    cfg = cfg or ExampleConfig()
    n_docs = codes_csc.shape[0]
    per: list[dict] = []
    firing = np.zeros(n_docs, bool)
    for f in features:
        f = int(f)
        lo, hi = codes_csc.indptr[f], codes_csc.indptr[f + 1]
        docs = codes_csc.indices[lo:hi].astype(np.int64)
        acts = codes_csc.data[lo:hi].astype(np.float32)
        rng = np.random.default_rng([cfg.seed, f])
        shown, held = split_activating(docs, acts, rng)
        s_docs, s_acts = docs[shown], acts[shown]  # sorted by activation, descending
        h_docs, h_acts = docs[held], acts[held]
        top = s_docs[: cfg.n_top]
        rest = np.arange(cfg.n_top, len(s_docs))
        q = rest[_quantile_pick(len(rest), cfg.n_quantile)] if len(rest) else rest
        hp = _quantile_pick(len(h_docs), cfg.n_heldout_pos)
        # random negatives: draw from documents where the feature does not fire
        n_neg = cfg.n_random_neg + cfg.n_heldout_neg
        cand = rng.choice(n_docs, size=min(n_docs, n_neg * 2 + len(docs)), replace=False)
        firing[docs] = True  # a lookup table instead of np.isin: two sorts per feature cost seconds at 1 M
        cand = cand[~firing[cand]][:n_neg]
        firing[docs] = False
        per.append(dict(
            feature=f, top=top, top_act=s_acts[: cfg.n_top], quantile=s_docs[q], quantile_act=s_acts[q],
            random_neg=cand[: cfg.n_random_neg], heldout_neg=cand[cfg.n_random_neg:],
            heldout_pos=h_docs[hp], heldout_pos_act=h_acts[hp], active=docs,
        ))
    _add_hard_negatives(per, embeddings, cfg)
    out = []
    for p in per:
        p.pop("active")
        out.append(FeatureExamples(**p))
    return out


def _add_hard_negatives(per: list[dict], embeddings: np.ndarray | UnitRows, cfg: ExampleConfig) -> None:
    """Hard negatives: non-activating documents most similar to the mean of each feature's top documents."""
    n_hard = cfg.n_hard_neg + cfg.n_heldout_hard
    if not per or n_hard == 0:
        for p in per:
            p["hard_neg"] = p["heldout_hard"] = np.zeros(0, np.int64)
        return
    dim = embeddings.shape[1]
    means = np.stack([np.asarray(embeddings[p["top"]], np.float32).mean(0) if len(p["top"]) else np.zeros(dim, np.float32)
                      for p in per])
    for p, best in zip(per, _nearest(per, embeddings, means, n_hard)):
        # alternate so shown and held-out hard negatives are equally hard
        rng = np.random.default_rng([cfg.seed, p["feature"], 1])
        perm = rng.permutation(len(best))
        held_mask = np.zeros(len(best), bool)
        held_mask[perm[: min(cfg.n_heldout_hard, len(best))]] = True
        p["hard_neg"] = best[~held_mask][: cfg.n_hard_neg]
        p["heldout_hard"] = best[held_mask]


def _excluded(p: dict) -> np.ndarray:
    return np.unique(np.concatenate([p["active"], p["random_neg"], p["heldout_neg"]]).astype(np.int64))


def _nearest(per: list[dict], docs: np.ndarray | UnitRows, means: np.ndarray, n_hard: int) -> list[np.ndarray]:
    """Per feature j, its `n_hard` documents most similar to `means[j]` outside its excluded ones, best first;
    the documents are read block by block, so memory stays bounded by a block whatever the corpus size."""
    excluded = [_excluded(p) for p in per]
    best_rows = [np.zeros(0, np.int64) for _ in per]
    best_sims = [np.zeros(0, np.float32) for _ in per]
    for start, block in blocks(docs):
        sims = block @ means.T
        for j in range(len(per)):
            col = sims[:, j].copy()
            lo, hi = np.searchsorted(excluded[j], [start, start + len(block)])
            col[excluded[j][lo:hi] - start] = -np.inf
            take = min(n_hard, int(np.isfinite(col).sum()))
            if not take:
                continue
            top = np.argpartition(-col, take - 1)[:take]
            rows = np.concatenate([best_rows[j], top + start])
            vals = np.concatenate([best_sims[j], col[top]])
            keep = np.argsort(-vals, kind="stable")[:n_hard]
            best_rows[j], best_sims[j] = rows[keep], vals[keep]
    return best_rows
