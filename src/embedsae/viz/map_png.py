"""The static PNG version of the UMAP map (matplotlib Agg)."""

from __future__ import annotations

import os

import numpy as np

from ..plots import _pyplot, _save

OTHER = "other"
"""The colour group of points in no named group."""


def plot_map_png(coords: np.ndarray, color, path: str | os.PathLike, title: str = "", max_legend: int = 20) -> None:
    """Scatter of the map's points (3-D axes for a 3-D map), coloured like the HTML map."""
    plt = _pyplot()
    dims = coords.shape[1]
    fig = plt.figure(figsize=(9, 7.5))
    ax = fig.add_subplot(projection="3d" if dims == 3 else None)

    def scatter(mask, **kw):
        pts = [coords[mask, i] for i in range(dims)]
        ax.scatter(*pts, linewidths=0, **kw)

    if color is None:
        scatter(np.ones(len(coords), bool), s=3, c="#4472c4", alpha=0.6)
    elif color.labels is not None:

        labels = np.asarray(color.labels, dtype=object)
        names = sorted(set(color.labels) - {OTHER})
        scatter(labels == OTHER, s=2, c="#d0d0d0", alpha=0.4, label=OTHER)
        cmap = plt.get_cmap("tab20" if len(names) <= 20 else "hsv")
        for i, name in enumerate(names):
            scatter(labels == name, s=7, color=cmap(i / max(len(names), 1) if len(names) > 20 else i), alpha=0.9,
                    label=name)
        if len(names) <= max_legend:
            ax.legend(fontsize=7, markerscale=2, loc="best")
    else:
        order = np.argsort(color.values, kind="stable")
        pts = [coords[order, i] for i in range(dims)]
        sc = ax.scatter(*pts, c=color.values[order], s=4, cmap="viridis", linewidths=0)
        fig.colorbar(sc, ax=ax, label=color.title, shrink=0.7)
    ax.set_title(title, fontsize=9)
    ax.set_xticks([])
    ax.set_yticks([])
    _save(fig, path)
