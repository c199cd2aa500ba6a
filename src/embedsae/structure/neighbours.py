"""A feature's neighbours: by decoder direction, by co-occurrence (count and PMI), by activation correlation."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..data.embedders import l2_normalise
from ..errors import InputError, check_feature
from ..workspace import Workspace


def decoder_directions(sae) -> np.ndarray:
    """The SAE's decoder rows as unit vectors (n_latents x d), float32 numpy."""
    w = sae.W_dec.detach().float().cpu().numpy()
    return l2_normalise(w)


class NeighbourFinder:
    """What a feature's neighbours are computed from, built once per SAE: decoder directions, co-occurrence,
    activation statistics and labels. `find` then answers in milliseconds."""

    def __init__(self, sae_name: str, model, codes, labels: dict[int, str], label_source: str) -> None:
        from .cooccurrence import ActivationStats, cooccurrence

        self.sae = sae_name
        self.n_latents = model.cfg.n_latents
        self.dirs = decoder_directions(model)
        self.cooc = cooccurrence(codes)
        self.stats = ActivationStats(codes)
        self.labels = labels
        self.label_source = label_source

    def find(self, feature: int, *, top: int = 10, min_count: int = 3) -> dict[str, Any]:
        """The features most similar and most opposite by decoder cosine, most co-occurring (count, PMI) and most
        correlated in activation with `feature`, each with its label."""
        if top < 1:
            raise InputError(f"top must be at least 1, got {top}")
        f = check_feature(feature, self.n_latents, self.sae)
        labels, cooc = self.labels, self.cooc

        def item(j: int, **values: float) -> dict[str, Any]:
            return {"id": int(j), "label": labels.get(int(j), ""), **{k: round(float(v), 4) for k, v in values.items()},
                    "density": round(float(cooc.density[j]), 5)}

        cos = self.dirs @ self.dirs[f]
        cos[f] = np.nan
        order = np.argsort(-np.nan_to_num(cos, nan=-np.inf), kind="stable")
        similar = [item(j, cosine=cos[j]) for j in order[:top]]
        opposite = [item(j, cosine=cos[j]) for j in np.argsort(np.nan_to_num(cos, nan=np.inf), kind="stable")[:top]]

        ids, counts, pmi = cooc.pmi(f)
        by_count = np.lexsort((-pmi, -counts))[:top]
        cooccurring = [item(ids[j], count=counts[j], pmi=pmi[j]) for j in by_count]
        ok = np.flatnonzero(counts >= min_count)
        by_pmi = ok[np.argsort(-pmi[ok], kind="stable")][:top]
        cooccurring_pmi = [item(ids[j], count=counts[j], pmi=pmi[j]) for j in by_pmi]

        corr = self.stats.correlation(f)
        corr[f] = np.nan
        valid = np.flatnonzero(np.isfinite(corr))
        by_corr = valid[np.argsort(-corr[valid], kind="stable")][:top]
        correlated = [item(j, correlation=corr[j]) for j in by_corr]
        return {
            "sae": self.sae, "feature": f, "label": labels.get(f, ""), "label_source": self.label_source,
            "density": round(float(cooc.density[f]), 5), "documents": int(cooc.freq[f]),
            "decoder_similar": similar, "decoder_opposite": opposite, "cooccurring": cooccurring,
            "cooccurring_pmi": cooccurring_pmi, "correlated": correlated,
        }


def feature_neighbours(ws: Workspace, feature: int, sae: str | None = None, *, top: int = 10,
                       min_count: int = 3) -> dict[str, Any]:
    """A feature's neighbours (see NeighbourFinder.find); for many calls keep an `embedsae.Project`."""
    from ..sae.codes import workspace_codes
    from .labels import structure_labels

    name = ws.resolve_sae(sae)
    codes = workspace_codes(ws, name)
    labels, source = structure_labels(ws, name, codes)
    return NeighbourFinder(name, ws.load_sae(name), codes, labels, source).find(feature, top=top, min_count=min_count)
