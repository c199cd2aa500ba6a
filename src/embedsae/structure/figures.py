"""Figures of the feature families: an interactive offline sunburst (HTML) and a static PNG."""

from __future__ import annotations

import os
import textwrap
from typing import Any

import numpy as np

from .._io import write_text
from ..plots import _pyplot, _save
from .cooccurrence import Cooccurrence


def _short(text: str, width: int = 48) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def families_sunburst_html(families: list[dict[str, Any]], labels: dict[int, str], path: str | os.PathLike,
                           *, title: str = "") -> None:
    """An interactive sunburst of the families (centre: parents; rings: descendants), self-contained HTML."""
    import plotly.graph_objects as go

    ids, names, parents, hover = [], [], [], []
    for fi, fam in enumerate(families):
        root_id = f"f{fi}:{fam['parent']}"
        ids.append(root_id)
        names.append(_short(fam["label"], 40))
        parents.append("")
        hover.append(f"family {fi + 1}: parent feature {fam['parent']}<br>{fam['label']}<br>{fam['size']} children")
        for c, p in zip(fam["children"], fam["tree_parent"]):
            ids.append(f"f{fi}:{c}")
            names.append(_short(labels.get(c, f"#{c}"), 32))
            parents.append(f"f{fi}:{p}")
            hover.append(f"feature {c}<br>{labels.get(c, '')}")
    fig = go.Figure(go.Sunburst(
        ids=ids, labels=names, parents=parents, values=[1] * len(ids), branchvalues="remainder",
        hovertext=hover, hoverinfo="text", maxdepth=3, insidetextorientation="radial",
    ))
    fig.update_layout(title=title or "feature families", margin={"t": 50, "l": 0, "r": 0, "b": 0}, height=850)
    write_text(path, fig.to_html(include_plotlyjs=True, full_html=True))


def families_png(families: list[dict[str, Any]], cooc: Cooccurrence, path: str | os.PathLike, *,
                 title: str = "", top: int = 20, block_families: int = 12) -> None:
    """Left: the largest families by number of children, labelled. Right: normalised co-occurrence of the
    features of the largest families, ordered family by family (bright squares on the diagonal = families)."""
    plt = _pyplot()
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(15, 7.5), gridspec_kw={"width_ratios": [1.15, 1]})
    shown = families[:top]
    if shown:
        y = np.arange(len(shown))[::-1]
        ax.barh(y, [f["size"] for f in shown], color="#4472c4")
        ax.set_yticks(y)
        ax.set_yticklabels(["\n".join(textwrap.wrap(_short(f["label"], 80), 44)) for f in shown], fontsize=7)
        for yy, f in zip(y, shown):
            ratio = f.get("cooccurrence_ratio")
            ax.text(f["size"], yy, f"  {f['size']}" + (f"  (ratio {ratio:.1f})" if ratio else ""), va="center",
                    fontsize=7)
    ax.set_xlabel("children (descendants of the parent feature)")
    ax.set_title(f"{len(families)} families; the {len(shown)} largest")

    order, bounds = [], []
    seen: set[int] = set()
    for f in families[:block_families]:
        members = [m for m in [f["parent"], *f["children"]] if m not in seen]
        seen.update(members)
        order.extend(members)
        bounds.append(len(order))
    if order:
        mat = cooc.normalised(np.asarray(order, dtype=np.int64)).toarray()
        im = ax2.imshow(mat, cmap="magma", vmin=0, vmax=max(float(np.quantile(mat[mat > 0], 0.95)) if np.any(mat > 0)
                                                          else 1.0, 1e-6), interpolation="nearest")
        start = 0
        for b in bounds:
            ax2.add_patch(plt.Rectangle((start - 0.5, start - 0.5), b - start, b - start, fill=False, color="#2ca02c",
                                        lw=0.8))
            start = b
        fig.colorbar(im, ax=ax2, fraction=0.046, pad=0.04, label="co-occurrence / frequency of the sparser feature")
    ax2.set_title(f"co-occurrence within the {min(block_families, len(families))} largest families (boxes)")
    ax2.set_xlabel("features, family by family")
    fig.suptitle(title)
    _save(fig, path)
