"""Baseline detectors on the same words: raw embedding dimensions, PCA and ICA components.

Each direction is used with both signs (a dimension can mean something at its high or its low end), and
a direction "fires" on the words with its top `top_fraction` projections. The activation of a firing word
is how far its projection lies above that cut-off, so the same scoring applies as for SAE features.
"""

from __future__ import annotations

import numpy as np

from ..errors import InputError

BASELINES = ("raw", "pca", "ica")
ICA_MAX_COMPONENTS = 64
"""ICA is fitted on at most this many components (it is cheap on 50-d GloVe, slow on wide vectors)."""


def directions(x: np.ndarray, method: str, *, seed: int = 0) -> tuple[np.ndarray, str]:
    """Per-word projections (words x directions) for a baseline, and the prefix its directions are named with."""
    x = np.asarray(x, dtype=np.float64)
    if method == "raw":
        return x, "dim"
    if method == "pca":
        from sklearn.decomposition import PCA

        return PCA(n_components=min(x.shape), random_state=seed).fit_transform(x), "pc"
    if method == "ica":
        import warnings

        from sklearn.decomposition import FastICA

        n = min(x.shape[1], ICA_MAX_COMPONENTS, x.shape[0])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # convergence warnings: the components are still usable directions
            ica = FastICA(n_components=n, random_state=seed, max_iter=400, whiten="unit-variance")
            return ica.fit_transform(x), "ic"
    raise InputError(f"unknown baseline '{method}': use one of {', '.join(BASELINES)}")


def baseline_activations(
    x: np.ndarray, method: str, *, top_fraction: float = 0.01, seed: int = 0
) -> tuple[object, list[str]]:
    """Sparse non-negative activations (words x 2*directions) of a baseline, and the name of each column.

    Column 2i is direction i read positively ("pc3+"), column 2i+1 negatively ("pc3-").
    """
    import scipy.sparse as sp

    if not 0 < top_fraction < 0.5:
        raise InputError(f"the baseline's firing share must lie between 0 and 0.5, got {top_fraction}")
    proj, prefix = directions(x, method, seed=seed)
    n, d = proj.shape
    keep = max(1, int(round(top_fraction * n)))
    signed = np.empty((n, 2 * d), dtype=np.float64)
    signed[:, 0::2] = proj
    signed[:, 1::2] = -proj
    # the (keep+1)-th largest value is the cut-off; the `keep` words above it fire
    top = np.argpartition(-signed, keep, axis=0)[: keep + 1]
    cut_rows = np.take_along_axis(signed, top, axis=0)
    cut = cut_rows.min(axis=0)
    rows = top[:keep + 1]
    vals = cut_rows - cut
    cols = np.broadcast_to(np.arange(2 * d), rows.shape)
    act = sp.csc_matrix((vals.ravel().astype(np.float32), (rows.ravel(), cols.ravel())), shape=(n, 2 * d))
    act.eliminate_zeros()
    names = [f"{prefix}{i}{s}" for i in range(d) for s in ("+", "-")]
    return act, names
