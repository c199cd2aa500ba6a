"""Measuring steering: does editing a feature move the results towards (or away from) that feature?

For each query: *raise* a feature absent from the query's code (chosen at random among features that
fire in 1-20 % of documents) by setting it to `strength` x its largest activation over the documents,
and *lower* the query's strongest feature by the same amount (its own largest document activation).
The figure is the share of top-10 hits in whose SAE code the feature fires, before and after the edit.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .steering import Edit, Steering


def steering_effect(
    searcher,
    queries: np.ndarray,
    *,
    form: str = "residual",
    mode: str = "dense",
    strength: float = 1.0,
    top: int = 10,
    seed: int = 0,
) -> dict[str, Any]:
    """Mean share of top-`top` hits where the edited feature fires, before and after, over the queries.

    The edit size is `strength` times the feature's largest activation over the workspace's documents.
    """
    import torch

    from ..sae.codes import workspace_codes

    sae = searcher.sae
    codes = workspace_codes(searcher.ws, searcher.sae_name)
    csr = codes.to_csr().tocsc()
    density = np.asarray((csr > 0).sum(0)).ravel() / csr.shape[0]
    scale = np.asarray(csr.max(0).todense()).ravel()
    candidates = np.flatnonzero((density >= 0.01) & (density <= 0.2))
    rng = np.random.default_rng(seed)

    def fires(rows: np.ndarray, feature: int) -> float:
        col = csr[:, feature]
        active = set(col.indices[col.data > 0].tolist())
        return float(np.mean([r in active for r in rows.tolist()])) if len(rows) else 0.0

    rows_out = []
    for q in np.asarray(queries, np.float32):
        with torch.no_grad():
            z = sae.encode(torch.from_numpy(q[None, :].copy()))[0].numpy()
        present = np.flatnonzero(z > 0)
        strongest = int(np.argmax(z))
        absent = np.setdiff1d(candidates, present)
        if len(absent) == 0:
            continue
        feat_up = int(rng.choice(absent))
        base_rows, _ = searcher.rank(mode, q, None, top)
        up = Steering([Edit(feat_up, "set", float(strength * scale[feat_up]))], form)
        down = Steering([Edit(strongest, "add", -float(strength * scale[strongest]))], form)
        up_res, down_res = up.apply(sae, q), down.apply(sae, q)
        up_rows, _ = searcher.rank(mode, up_res.vector, None, top)
        down_rows, _ = searcher.rank(mode, down_res.vector, None, top)
        rows_out.append({
            "raise_before": fires(base_rows, feat_up), "raise_after": fires(up_rows, feat_up),
            "lower_before": fires(base_rows, strongest), "lower_after": fires(down_rows, strongest),
            "cos_raise": up_res.cosine, "cos_lower": down_res.cosine,
        })
    mean = {k: round(float(np.mean([r[k] for r in rows_out])), 4) for k in rows_out[0]} if rows_out else {}
    return {"form": form, "mode": mode, "strength": strength, "queries": len(rows_out), "top": top, **mean,
            "raise_improved": round(float(np.mean([r["raise_after"] > r["raise_before"] for r in rows_out])), 4),
            "lower_reduced": round(float(np.mean([r["lower_after"] < r["lower_before"] for r in rows_out])), 4)}
