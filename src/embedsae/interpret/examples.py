"""Example selection per feature: top-activating documents, samples across activation quantiles, random
non-activating documents and hard negatives, with held-out examples kept apart from those a labeller sees.

Split rule: the activating documents of a feature, sorted by activation, are taken in consecutive pairs and
one of each pair (at random) is held out, so both halves span the same activation range. Negatives shown to
the labeller and held-out negatives are disjoint random draws.

Hard negatives are per document (`hard.NearestDocuments`): the held-out hard negatives are, for each held-out
activating document, its nearest document the feature does not fire on (and not shown as a random negative);
the shown hard negatives are the same for the shown activating documents, never a held-out document.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..data.vectors import UnitRows
from ..settings import Settings, check
from .hard import NearestDocuments


@dataclass
class ExampleConfig(Settings):
    """How many examples of each kind to select per feature."""

    n_top: int = 12
    """Top-activating documents shown to the labeller."""
    n_quantile: int = 8
    """Further activating documents sampled evenly across activation quantiles (shown to the labeller)."""
    n_random_neg: int = 20
    """Random non-activating documents shown to the labeller."""
    n_hard_neg: int = 20
    """Shown activating documents (strongest first) whose nearest non-activating document is shown as a hard negative."""
    n_heldout_pos: int = 40
    """Held-out activating documents, spread over the activation range (for scoring; never shown to the labeller);
    each one's nearest non-activating document is its held-out hard negative."""
    n_heldout_neg: int = 200
    """Held-out random non-activating documents (for scoring)."""
    hard_pool: int = 50_000
    """Hard negatives are searched among at most this many documents: all of a smaller corpus, a seeded sample of a
    larger one (held in memory: this many vectors)."""
    seed: int = 0
    """Seed of the random draws (held-out split, random negatives)."""

    def validate(self) -> None:
        super().validate()
        for name in ("n_top", "n_quantile", "n_random_neg", "n_hard_neg", "n_heldout_pos", "n_heldout_neg"):
            check(getattr(self, name) >= 0, f"example setting '{name}' must not be negative, got {getattr(self, name)}")
        check(self.n_top >= 1, f"n_top must be at least 1, got {self.n_top}")
        check(self.hard_pool >= 1, f"hard_pool must be at least 1, got {self.hard_pool}")


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
        """(doc, kind, split, activation) rows for the feature store. The held-out random negatives (200 seeded
        draws; `select_examples` draws them again) are left out: they would be two thirds of the rows."""
        out: list[tuple[int, str, str, float]] = []
        out += [(int(d), "top", "shown", float(a)) for d, a in zip(self.top, self.top_act)]
        out += [(int(d), "quantile", "shown", float(a)) for d, a in zip(self.quantile, self.quantile_act)]
        out += [(int(d), "random_neg", "shown", 0.0) for d in self.random_neg]
        out += [(int(d), "hard_neg", "shown", 0.0) for d in self.hard_neg]
        out += [(int(d), "pos", "heldout", float(a)) for d, a in zip(self.heldout_pos, self.heldout_pos_act)]
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
    nearest: NearestDocuments | None = None,
) -> list[FeatureExamples]:
    """Examples for each feature in `features`, from the documents x latents CSC matrix of codes.

    `embeddings` are the (normalised) document vectors, used for hard negatives; `nearest` (built from them when
    not given) finds and keeps each document's nearest documents: pass the same one to every batch of a run.
    """
    cfg = cfg or ExampleConfig()
    nearest = nearest if nearest is not None else NearestDocuments(embeddings, pool=cfg.hard_pool, seed=cfg.seed)
    n_docs = codes_csc.shape[0]
    per: list[dict] = []
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
        cand = cand[~np.isin(cand, docs)][:n_neg]
        per.append(dict(
            feature=f, top=top, top_act=s_acts[: cfg.n_top], quantile=s_docs[q], quantile_act=s_acts[q],
            random_neg=cand[: cfg.n_random_neg], heldout_neg=cand[cfg.n_random_neg:], heldout_pos=h_docs[hp],
            heldout_pos_act=h_acts[hp], active=np.sort(docs),
        ))
    _add_hard_negatives(per, nearest, cfg.n_hard_neg)
    out = []
    for p in per:
        p.pop("active")
        out.append(FeatureExamples(**p))
    return out


def _add_hard_negatives(per: list[dict], nearest: NearestDocuments, n_shown: int) -> None:
    """Per-document hard negatives (see the module docstring) of each feature in `per`."""
    asked = [p["heldout_pos"] for p in per] + [np.concatenate([p["top"], p["quantile"]])[:n_shown] for p in per]
    nearest.neighbours(np.concatenate(asked) if asked else np.zeros(0, np.int64))  # one search for the batch
    for p in per:
        held = nearest.nearest_outside(p["heldout_pos"], np.union1d(p["active"], p["random_neg"]))
        p["heldout_hard"] = held[held >= 0]
        apart = np.union1d(np.union1d(p["active"], p["heldout_neg"]), p["heldout_hard"])
        shown = nearest.nearest_outside(np.concatenate([p["top"], p["quantile"]])[:n_shown], apart)
        p["hard_neg"] = shown[shown >= 0]
