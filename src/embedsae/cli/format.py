"""Text formatting of the records the CLI prints (the library returns records; this file turns them into text)."""

from __future__ import annotations

import numpy as np

from ..project import INTERPRETED, FeatureCard, FeatureScores

_BARS = " ▁▂▃▄▅▆▇█"


def fmt(v: float | None, digits: int = 3) -> str:
    """A number with `digits` decimals, or "–" where there is none."""
    return "–" if v is None else f"{v:.{digits}f}"


def render_card(card: FeatureCard) -> str:
    """The card as terminal text."""
    label = card.label or "(not labelled)"
    if card.label and (card.label_source or INTERPRETED) != INTERPRETED:
        label += f"   ({card.label_source}: not interpreted yet)"
    lines = [f"feature {card.id} of {card.sae}: {label}"]
    if card.description:
        lines.append(f"  description  {card.description}")
    if card.labeller:
        lines.append(f"  labeller     {card.labeller}{'   (clean)' if card.clean else ''}")
    lines.append(f"  density      {card.density or 0:.4f} ({card.n_active} documents)")
    if card.act_mean is not None:
        lines.append(f"  activation   mean {card.act_mean:.4f}, max {card.act_max or 0:.4f}")
    sc = card.scores
    if sc.embedding_auc is not None:
        lines.append(f"  name AUC     {sc.embedding_auc:.3f} against random documents"
                     + (f", {sc.embedding_auc_hard:.3f} against hard negatives" if sc.embedding_auc_hard is not None
                        else ""))
    if sc.description_auc is not None:
        lines.append(f"  descr. AUC   {sc.description_auc:.3f} against random documents"
                     + (f", {sc.description_auc_hard:.3f} against hard negatives"
                        if sc.description_auc_hard is not None else ""))
    if sc.coherence is not None:
        lines.append(f"  coherence    {sc.coherence:.3f}"
                     + ("   mixture: its top documents form two separate groups" if sc.mixture else ""))
    shown = {"embedding_auc", "embedding_auc_hard", "embedding_auc_combined", "description_auc",
             "description_auc_hard", "coherence", "mixture"}
    for k in FeatureScores.names():
        v = getattr(sc, k)
        if k not in shown and v is not None:
            lines.append(f"  {k:<12} {v:.3f}")
    if card.category:
        lines.append(f"  category     {card.category}")
    counts = card.histogram.counts
    if sum(counts):
        peak = max(counts)
        bars = "".join(_BARS[int(np.ceil(c / peak * (len(_BARS) - 1)))] for c in counts)
        e = card.histogram.edges
        lines.append(f"  histogram    {e[0]:.3f} |{bars}| {e[-1]:.3f}")
    lines.append("  top documents:")
    for d in card.top_documents:
        lines.append(f"    {d.activation:.4f}  {d.title}  [{d.id}]")
    return "\n".join(lines)
