"""Static figures (PNG via matplotlib's Agg backend): one function per figure."""

from __future__ import annotations

import os
from typing import Any

import pandas as pd

from ._io import atomic_path


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: str | os.PathLike) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120, bbox_inches="tight")
    _pyplot().close(fig)


def plot_density_histogram(metrics: dict[str, Any], path: str | os.PathLike, title: str = "") -> None:
    """Histogram of log10 feature density over alive latents, with the dead count in the title."""
    plt = _pyplot()
    h = metrics["log_feature_density_histogram"]
    edges, counts = h["edges"], h["counts"]
    fig, ax = plt.subplots(figsize=(6, 3.2))
    ax.bar(edges[:-1], counts, width=[b - a for a, b in zip(edges[:-1], edges[1:])], align="edge", color="#4472c4")
    ax.set_xlabel("log10 feature density (share of documents where the feature fires)")
    ax.set_ylabel("features")
    ax.set_title(f"{title}  NMSE {metrics['nmse']:.3f}, dead {metrics['dead_fraction']:.1%}, L0 {metrics['l0']:.1f}")
    _save(fig, path)


def plot_sweep(table: pd.DataFrame, path: str | os.PathLike) -> None:
    """Held-out NMSE against the number of latents, one line per k."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    for k, group in table.groupby("k"):
        g = group.sort_values("latents")
        ax.plot(g["latents"], g["nmse"], marker="o", label=f"k = {k}")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("latents")
    ax.set_ylabel("held-out NMSE")
    ax.grid(alpha=0.3)
    ax.legend()
    ax.set_title("NMSE against SAE size")
    _save(fig, path)


def plot_training_log(rows: list[dict[str, Any]], path: str | os.PathLike, title: str = "") -> None:
    """Training and validation NMSE and dead fraction over steps."""
    plt = _pyplot()
    steps = [r["step"] for r in rows]
    fig, ax = plt.subplots(figsize=(6, 3.2))
    ax.plot(steps, [r["nmse"] for r in rows], label="train NMSE")
    val = [(r["step"], r["val_nmse"]) for r in rows if "val_nmse" in r]
    if val:
        ax.plot(*zip(*val), marker=".", label="held-out NMSE")
    ax.set_xlabel("step")
    ax.set_ylabel("NMSE (log scale)")
    if all(r["nmse"] > 0 for r in rows) and all(v > 0 for _, v in val):
        ax.set_yscale("log")  # early NMSE can be far above 1; a linear axis flattens the converged curves
    ax2 = ax.twinx()
    ax2.plot(steps, [r["dead_fraction"] for r in rows], color="grey", linestyle=":", label="dead fraction")
    ax2.set_ylabel("dead fraction")
    lines = ax.get_legend_handles_labels()
    more = ax2.get_legend_handles_labels()
    ax.legend(lines[0] + more[0], lines[1] + more[1], loc="upper right")
    ax.set_title(title)
    _save(fig, path)
