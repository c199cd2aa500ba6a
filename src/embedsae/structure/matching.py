"""Matching features across two SAEs of one workspace by decoder cosine, and how features split as SAEs grow.

Each feature of the larger SAE is hung under its closest feature of the smaller one (the seed's
nearest-neighbour hierarchy); a small-SAE feature with two or more such children has split.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import InputError
from ..workspace import Workspace


def match_features(a_dirs: np.ndarray, b_dirs: np.ndarray, a_alive: np.ndarray, b_alive: np.ndarray,
                   *, chunk: int = 2048) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Best matches between two sets of unit directions, over alive features only.

    Returns (a_best, a_cos, b_best, b_cos): for each feature of A its closest alive feature of B and their cosine,
    and the same for B towards A (-1 and NaN for dead features).
    """
    a_idx, b_idx = np.flatnonzero(a_alive), np.flatnonzero(b_alive)
    a_best = np.full(len(a_dirs), -1, dtype=np.int64)
    a_cos = np.full(len(a_dirs), np.nan, dtype=np.float64)
    b_best = np.full(len(b_dirs), -1, dtype=np.int64)
    b_cos = np.full(len(b_dirs), -np.inf, dtype=np.float64)
    if len(a_idx) == 0 or len(b_idx) == 0:
        return a_best, a_cos, b_best, np.full(len(b_dirs), np.nan)
    bd = b_dirs[b_idx]
    for s in range(0, len(a_idx), chunk):
        rows = a_idx[s : s + chunk]
        sims = a_dirs[rows] @ bd.T
        j = sims.argmax(axis=1)
        a_best[rows] = b_idx[j]
        a_cos[rows] = sims[np.arange(len(rows)), j]
        i = sims.argmax(axis=0)
        best = sims[i, np.arange(len(b_idx))]
        better = best > b_cos[b_idx]
        b_best[b_idx[better]] = rows[i[better]]
        b_cos[b_idx[better]] = best[better]
    b_cos[~np.isfinite(b_cos)] = np.nan
    return a_best, a_cos, b_best, b_cos


def match_saes(ws: Workspace, from_sae: str, to_sae: str, *, min_cosine: float = 0.35) -> dict[str, Any]:
    """Map each feature of `from_sae` to its closest feature of `to_sae`, and the splitting tree of each.

    A feature of `to_sae` is a child of the `from_sae` feature closest to it when their cosine is at least
    `min_cosine` (else it counts as new; the default 0.35 is well above chance: the best cosine of a random
    384-d direction among 6,144 others is about 0.23). Trees are listed with labels, most children first.
    """
    from ..sae.codes import workspace_codes
    from .labels import structure_labels
    from .neighbours import decoder_directions

    if not -1 <= min_cosine <= 1:
        raise InputError(f"min_cosine must be between -1 and 1, got {min_cosine}")
    a_name, b_name = ws.resolve_sae(from_sae), ws.resolve_sae(to_sae)
    if a_name == b_name:
        raise InputError(f"`from_sae` and `to_sae` name the same SAE ('{a_name}'); give two different SAEs")
    a_sae, b_sae = ws.load_sae(a_name), ws.load_sae(b_name)
    a_codes, b_codes = workspace_codes(ws, a_name), workspace_codes(ws, b_name)
    a_alive, b_alive = a_codes.density() > 0, b_codes.density() > 0
    a_labels, a_source = structure_labels(ws, a_name, a_codes)
    b_labels, b_source = structure_labels(ws, b_name, b_codes)
    a_best, a_cos, b_best, b_cos = match_features(decoder_directions(a_sae), decoder_directions(b_sae), a_alive, b_alive)

    children: dict[int, list[int]] = {}
    for j in np.flatnonzero(b_alive & (np.nan_to_num(b_cos, nan=-2) >= min_cosine)):
        children.setdefault(int(b_best[j]), []).append(int(j))
    matches = []
    for i in np.flatnonzero(a_alive):
        kids = sorted(children.get(int(i), []), key=lambda j: -b_cos[j])
        matches.append({
            "id": int(i), "label": a_labels.get(int(i), ""), "best": int(a_best[i]),
            "cosine": round(float(a_cos[i]), 4), "best_label": b_labels.get(int(a_best[i]), ""),
            "children": [{"id": j, "cosine": round(float(b_cos[j]), 4), "label": b_labels.get(j, "")} for j in kids],
        })
    matches.sort(key=lambda m: (-len(m["children"]), -m["cosine"], m["id"]))
    n_children = np.array([len(m["children"]) for m in matches]) if matches else np.zeros(0)
    finite_a = a_cos[np.isfinite(a_cos)]
    summary = {
        "from_latents": int(a_sae.cfg.n_latents), "to_latents": int(b_sae.cfg.n_latents),
        "from_alive": int(a_alive.sum()), "to_alive": int(b_alive.sum()),
        "mean_best_cosine": float(finite_a.mean()) if len(finite_a) else None,
        "share_cosine_0.9": float((finite_a >= 0.9).mean()) if len(finite_a) else None,
        "split": int((n_children >= 2).sum()), "kept": int((n_children == 1).sum()),
        "without_children": int((n_children == 0).sum()),
        "mean_children_of_split": float(n_children[n_children >= 2].mean()) if (n_children >= 2).any() else 0.0,
        "new": int((b_alive & ~(np.nan_to_num(b_cos, nan=-2) >= min_cosine)).sum()),
        "min_cosine": min_cosine,
        # share of features whose closest match has the same id: high when both SAEs grew from the same random
        # initialisation (same seed), so that matches reflect the shared starting directions
        "same_id_share": float(np.mean(a_best[a_alive] == np.flatnonzero(a_alive))) if a_alive.any() else 0.0,
    }
    return {"from": a_name, "to": b_name, "label_source": {"from": a_source, "to": b_source}, "summary": summary,
            "matches": matches}
