"""Feature cards: everything known about one feature, as a dict and as terminal text."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import InputError
from . import INTERPRETED, feature_labels
from .store import FeatureStore, feature_records

_BARS = " ▁▂▃▄▅▆▇█"


def feature_card(ws, sae: str, store: FeatureStore | None, feature: int, *, top: int = 8, bins: int = 20) -> dict[str, Any]:
    """A feature's label, scores, density, activation histogram and top documents with activations.

    For many cards keep an `embedsae.Project`, which computes the codes and tables once."""
    from ..sae.codes import workspace_codes
    from ..structure.cooccurrence import ActivationStats

    codes = workspace_codes(ws, sae)
    if not 0 <= feature < codes.n_latents:
        raise InputError(f"feature {feature} does not exist: SAE '{sae}' has features 0..{codes.n_latents - 1}")
    table = store.table() if store is not None else None
    record = feature_record(table, feature)
    if not record.get("label"):
        labels = feature_labels(ws, sae, codes=codes)
        record["label"], record["label_source"] = labels.get(feature), labels.source
    docs, acts = ActivationStats(codes).column(feature)
    return build_card(record, docs, acts, ws.titles(), ws.ids, ws.n_documents, sae, top=top, bins=bins)


def feature_record(table, feature: int) -> dict[str, Any]:
    """The stored record of one feature (label, stats, scores), or an empty one when it has none."""
    row = table[table["id"] == feature] if table is not None else None
    if row is None or not len(row):
        return {"id": feature, "label": None, "scores": {}}
    return {**feature_records(row)[0], "label_source": INTERPRETED}


def build_card(record: dict[str, Any], docs: np.ndarray, acts: np.ndarray, titles: list[str], ids: list[str],
               n_docs: int, sae: str, *, top: int = 8, bins: int = 20) -> dict[str, Any]:
    """A card from a feature's record and the documents (rows) it fires on with their activations."""
    order = np.argsort(-acts, kind="stable")[:top]
    counts, edges = np.histogram(acts, bins=bins) if len(acts) else (np.zeros(bins, int), np.zeros(bins + 1))
    return {
        **record, "sae": sae, "n_active": int(len(docs)), "density": float(len(docs) / max(n_docs, 1)),
        "histogram": {"counts": counts.tolist(), "edges": [float(e) for e in edges]},
        "top_documents": [{"row": int(docs[i]), "id": ids[docs[i]], "title": titles[docs[i]],
                           "activation": float(acts[i])} for i in order],
    }


def render_card(card: dict[str, Any]) -> str:
    """The card as terminal text."""
    label = card.get("label") or "(not labelled)"
    if card.get("label") and card.get("label_source", INTERPRETED) != INTERPRETED:
        label += f"   ({card['label_source']}: not interpreted yet)"
    lines = [f"feature {card['id']} of {card.get('sae', '')}: {label}"]
    if card.get("description"):
        lines.append(f"  {card['description']}")
    if card.get("labeller"):
        lines.append(f"  labeller     {card['labeller']}{'   (clean)' if card.get('clean') else ''}")
    lines.append(f"  density      {card['density']:.4f} ({card['n_active']} documents)")
    if card.get("act_mean") is not None:
        lines.append(f"  activation   mean {card['act_mean']:.4f}, max {card.get('act_max') or 0:.4f}")
    scores = {k: v for k, v in (card.get("scores") or {}).items() if v is not None}
    if scores.get("embedding_auc") is not None:
        hard = scores.pop("embedding_auc_hard", None)
        comb = scores.pop("embedding_auc_combined", None)
        lines.append(f"  name AUC     {scores.pop('embedding_auc'):.3f} against random documents"
                     + (f", {hard:.3f} against hard negatives (combined {comb:.3f})" if hard is not None else ""))
    if scores.get("description_auc") is not None:
        hard = scores.pop("description_auc_hard", None)
        lines.append(f"  description  {scores.pop('description_auc'):.3f} against random documents"
                     + (f", {hard:.3f} against hard negatives" if hard is not None else ""))
    if scores.get("coherence") is not None:
        mix = scores.pop("mixture", None)
        lines.append(f"  coherence    {scores.pop('coherence'):.3f}"
                     + ("   mixture: its top documents form two separate groups" if mix == 1 else ""))
    scores.pop("mixture", None)
    for k, v in scores.items():
        lines.append(f"  {k:<12} {v:.3f}")
    if card.get("category"):
        lines.append(f"  category     {card['category']}")
    counts = card["histogram"]["counts"]
    if sum(counts):
        peak = max(counts)
        bars = "".join(_BARS[int(np.ceil(c / peak * (len(_BARS) - 1)))] for c in counts)
        e = card["histogram"]["edges"]
        lines.append(f"  histogram    {e[0]:.3f} |{bars}| {e[-1]:.3f}")
    lines.append("  top documents:")
    for d in card["top_documents"]:
        lines.append(f"    {d['activation']:.4f}  {d['title']}  [{d['id']}]")
    return "\n".join(lines)
