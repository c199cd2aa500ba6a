"""Per-hit explanations: the features a document shares with the query and their share of the score.

A document's concept score is ``sum_i w_i z_{d,i}`` (plus a constant per query), with ``w_i`` the query's
projection on feature i and ``z_{d,i}`` the document's activation: each feature's term is its
contribution. A feature is *shared* when it is among the query's own top latents and fires in the
document. Its share is its contribution over the sum of the document's positive contributions.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .concept import ConceptQuery, ConceptStore


def explain_hit(
    index: ConceptStore, doc: int, query: ConceptQuery, labels: Mapping[int, str], *, top: int = 5
) -> list[dict[str, Any]]:
    """The shared features of one hit, largest contribution first, with labels (or 'feature <id>'). Features that
    share a label are one entry (their contributions summed; `features` lists them, `feature` is the largest), so
    an explanation never repeats a name."""
    contrib = index.contributions(doc, query)
    total = sum(v for v in contrib.values() if v > 0)
    query_latents = set(query.latents.tolist())
    shared = [(f, c) for f, c in contrib.items() if c > 0 and f in query_latents]
    shared.sort(key=lambda t: -t[1])
    merged: dict[str, dict[str, Any]] = {}
    for f, c in shared:
        label = labels.get(int(f), f"feature {f}")
        entry = merged.setdefault(label.strip().lower(), {"feature": int(f), "label": label, "contribution": 0.0,
                                                          "features": []})
        entry["contribution"] += float(c)
        entry["features"].append(int(f))
    out = sorted(merged.values(), key=lambda e: -e["contribution"])[:top]
    for e in out:
        e["share"] = round(e["contribution"] / total, 4) if total > 0 else 0.0
        e["contribution"] = round(e["contribution"], 5)
    return out
