"""Figure of a concept report: each group's best detector F1, for the SAE and for each baseline."""

from __future__ import annotations

import os

import numpy as np

from ..plots import _pyplot, _save

METHOD_STYLE = {"sae": ("#c0392b", "o"), "raw": ("#7f7f7f", "s"), "pca": ("#2e86c1", "^"), "ica": ("#27ae60", "D")}


def plot_best_f1_per_group(report, path: str | os.PathLike, title: str = "") -> None:
    """Dot plot: one row per group (sorted by the SAE's best F1), one marker per method."""
    plt = _pyplot()
    groups = report.groups
    best = {name: m.best_f1_per_group() for name, m in report.methods.items()}
    order = np.argsort(best.get("sae", next(iter(best.values()))), kind="stable")
    fig, ax = plt.subplots(figsize=(7, max(3.0, 0.19 * len(groups) + 1.2)))
    y = np.arange(len(groups))
    for name, values in best.items():
        colour, marker = METHOD_STYLE.get(name, ("black", "x"))
        summary = report.methods[name].summary()
        ax.scatter(values[order], y, s=18, color=colour, marker=marker,
                   label=f"{name} (median {summary['median_best_f1']:.2f}, coverage {summary['coverage']:.2f})")
    ax.axvline(0.3, color="grey", linestyle=":", linewidth=1)
    ax.set_yticks(y)
    ax.set_yticklabels([groups[i] for i in order], fontsize=7)
    ax.set_xlabel("best detector F1 for the group")
    ax.set_xlim(0, 1)
    ax.grid(axis="x", alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    ax.set_title(title or "best detector per concept group", fontsize=9)
    _save(fig, path)
