"""A UMAP map of a workspace's documents (or words): an offline Plotly HTML page with hover text, and a PNG.

Points are coloured by concept group, by one SAE feature's activation, or by a metadata column. The map stage
(`map_stage`: `embedsae map WS`, `embedsae run`, the app's map job) stores the UMAP layouts in WS/map/; views read
them and colour them as asked, never computing a layout in a request.
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .. import layout
from .._io import atomic_path, read_json, save_npy, write_json
from ..errors import InputError, WorkspaceError, check_feature, require
from ..progress import ProgressCallback, Tracker
from ..workspace import Workspace
from .map_png import OTHER, plot_map_png

logger = logging.getLogger(__name__)

SVG_MAX_POINTS = 25000
"""Above this many points the 2-D map uses WebGL (scattergl) instead of SVG."""


@dataclass
class Coloring:
    """How points are coloured: `kind` is 'group' / 'column' (categorical labels) or 'feature' (values)."""

    kind: str
    title: str
    labels: list[str] | None = None
    values: np.ndarray | None = None


MAP_DIMS = (2, 3)
"""The layouts the map stage computes: the app's 2-D and 3-D views."""
_UMAP_PATCH = threading.Lock()


def map_settings(ws: Workspace, dims: int, *, seed: int = 0, n_neighbors: int = 15, min_dist: float = 0.1) -> dict[str, Any]:
    """What a stored layout was made from: it is reused only while these match the workspace."""
    if dims not in (2, 3):
        raise InputError(f"`dims` must be 2 or 3, got {dims}")
    return {"dims": dims, "seed": seed, "n_neighbors": n_neighbors, "min_dist": min_dist,
            "fingerprint": ws.manifest.get("corpus_fingerprint"), "n": ws.n_documents, "model": ws.model_id}


def _map_files(ws: Workspace, dims: int) -> tuple[Path, Path]:
    folder = ws.path / layout.MAP
    return folder / f"umap-{dims}d.npy", folder / f"umap-{dims}d.json"


def map_is_stored(ws: Workspace, dims: int = 2, *, seed: int = 0) -> bool:
    """Whether the map stage stored a `dims`-D layout for the workspace as it is (the files are not read)."""
    path, meta = _map_files(ws, dims)
    return path.is_file() and meta.is_file() and read_json(meta) == map_settings(ws, dims, seed=seed)


def stored_map(ws: Workspace, dims: int = 2, *, seed: int = 0, n_neighbors: int = 15,
               min_dist: float = 0.1) -> np.ndarray | None:
    """The stored layout (documents x dims) when the map stage made one for the workspace as it is, else None."""
    path, meta = _map_files(ws, dims)
    settings = map_settings(ws, dims, seed=seed, n_neighbors=n_neighbors, min_dist=min_dist)
    if not (path.is_file() and meta.is_file()) or read_json(meta) != settings:
        return None
    coords = np.load(path)
    if coords.shape != (ws.n_documents, dims):
        raise WorkspaceError(f"workspace {ws.path}: {path.relative_to(ws.path)} holds {coords.shape} coordinates for "
                             f"{ws.n_documents} documents; run the map stage again")
    return coords


def umap_coords(ws: Workspace, dims: int = 2, *, seed: int = 0, n_neighbors: int = 15, min_dist: float = 0.1,
                save: bool = True, progress: ProgressCallback | None = None) -> np.ndarray:
    """UMAP coordinates (documents x dims) of the workspace's vectors: the stored layout, else computed (with
    progress, one unit per optimisation epoch) and, with `save`, stored in WS/map/."""
    settings = map_settings(ws, dims, seed=seed, n_neighbors=n_neighbors, min_dist=min_dist)
    coords = stored_map(ws, dims, seed=seed, n_neighbors=n_neighbors, min_dist=min_dist)
    if coords is not None:
        return coords
    if ws.n_documents < 4:
        raise InputError(f"a map needs at least 4 documents; workspace {ws.path} has {ws.n_documents}")
    import umap
    import umap.layouts

    path, meta = _map_files(ws, dims)
    logger.info(f"UMAP of {ws.n_documents} vectors to {dims}-d" + (f" (stored in {path.parent})" if save else ""))
    reducer = umap.UMAP(n_components=dims, n_neighbors=min(n_neighbors, ws.n_documents - 1), min_dist=min_dist,
                        metric="cosine", random_state=seed, verbose=False, tqdm_kwds={"disable": True})
    epochs = 500 if ws.n_documents <= 10000 else 200  # UMAP's own default
    tracker = Tracker(progress, "map", epochs, unit="epoch")
    tracker.set_message(f"{dims}-D: nearest neighbours")

    def epochs_reported(iterable, **_):  # stands in for tqdm in UMAP's optimisation loop
        tracker.set_message(f"{dims}-D: layout")
        for item in iterable:
            yield item
            tracker.update()

    import warnings

    with _UMAP_PATCH, warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*n_jobs.*")  # a fixed seed makes UMAP single-threaded
        original, umap.layouts.tqdm = umap.layouts.tqdm, epochs_reported
        try:
            coords = reducer.fit_transform(np.asarray(ws.embeddings, dtype=np.float32)).astype(np.float32)
        finally:
            umap.layouts.tqdm = original
    tracker.close()
    if save:
        save_npy(path, coords)
        write_json(meta, settings)
    return coords


def map_stage(ws: Workspace, *, dims: tuple[int, ...] = MAP_DIMS, seed: int = 0,
              progress: ProgressCallback | None = None) -> dict[str, Any]:
    """The map stage: the UMAP layouts of the documents (2-D and 3-D by default) stored in WS/map/, each computed
    only when the stored one does not match the workspace; recorded in the manifest. Returns its summary."""
    import time

    t0 = time.perf_counter()
    computed = []
    for d in dims:
        if stored_map(ws, d, seed=seed) is None:
            umap_coords(ws, d, seed=seed, progress=progress)
            computed.append(d)
    summary = {"dims": list(dims), "computed": computed, "documents": ws.n_documents,
               "seconds": round(time.perf_counter() - t0, 1)}
    if computed:
        ws.record_stage("map", {"dims": list(dims), "seed": seed}, documents=ws.n_documents)
    return summary


def run_stage(ws: Workspace, sae: str | None = None, *, progress: ProgressCallback | None = None) -> dict[str, Any]:
    """The map stage as a stage of `embedsae run` (the map does not depend on the SAE)."""
    return map_stage(ws, progress=progress)


def coloring(ws: Workspace, color_by: str | None, *, groups=None, sae: str | None = None) -> Coloring | None:
    """The colouring asked for: 'group' (needs groups), 'feature:ID', 'column:NAME', or None / 'none'."""
    if color_by in (None, "", "none"):
        return None
    if color_by == "group":
        if groups is None:
            raise InputError("colouring by group needs `groups` (a categories CSV or 'Group: w1, w2' lines)")
        match = groups.match(ws.ids)
        labels = [OTHER] * ws.n_documents
        for name in match.names:
            for i in match.members[name]:
                labels[i] = name if labels[i] == OTHER else labels[i]
        if match.missing_words():
            logger.info(match.summary())
        return Coloring("group", "group", labels=labels)
    if color_by.startswith("feature:"):
        try:
            feature = int(color_by.split(":", 1)[1])
        except ValueError as exc:
            raise InputError(f"`color_by` feature:ID takes a whole-number feature id, got '{color_by}'") from exc
        from ..sae.codes import workspace_codes

        codes = workspace_codes(ws, sae)
        check_feature(feature, codes.n_latents, ws.resolve_sae(sae))
        values = np.where(codes.indices == feature, codes.values, 0).max(axis=1).astype(np.float32)
        return Coloring("feature", f"feature {feature}", values=values)
    if color_by.startswith("column:"):
        col = color_by.split(":", 1)[1]
        have = ws.manifest.get("columns") or list(ws.corpus.columns)
        if col not in have:
            raise InputError(f"the corpus has no column '{col}'; it has: {', '.join(map(str, have))}")
        labels = [first_label(v) for part in ws.corpus_batches([col]) for v in part[col]]
        return Coloring("column", col, labels=labels)
    raise InputError(f"unknown `color_by` '{color_by}': use group, feature:ID, column:NAME or none")


def first_label(value: Any) -> str:
    """A column value as one label: a list's first item, a missing value "other"."""
    if isinstance(value, (list, tuple, np.ndarray)):
        return str(value[0]) if len(value) else OTHER
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return OTHER
    return str(value)


def hover_texts(ws: Workspace, color: Coloring | None, sae: str | None = None, n_features: int = 3) -> list[str]:
    """Per point: its title, its group or activation, and its strongest SAE features (with labels if any)."""
    import html

    titles = [html.escape(t) for t in ws.titles()]
    extra = [""] * len(titles)
    if ws.sae_names():
        from ..interpret import feature_labels
        from ..sae.codes import workspace_codes

        name = ws.resolve_sae(sae)
        codes = workspace_codes(ws, name)
        labels = feature_labels(ws, name)
        order = np.argsort(-codes.values, axis=1)[:, :n_features]
        idx = np.take_along_axis(codes.indices, order, axis=1)
        val = np.take_along_axis(codes.values, order, axis=1)
        extra = [
            "<br>" + ", ".join(f"f{j}{' ' + html.escape(labels[j]) if j in labels else ''} ({v:.2f})"
                               for j, v in zip(row_i, row_v) if v > 0)
            for row_i, row_v in zip(idx, val)
        ]
    if color is not None and color.labels is not None:
        return [f"<b>{t}</b><br>{html.escape(c)}{e}" for t, c, e in zip(titles, color.labels, extra)]
    if color is not None and color.values is not None:
        return [f"<b>{t}</b><br>{color.title}: {v:.3f}{e}" for t, v, e in zip(titles, color.values, extra)]
    return [f"<b>{t}</b>{e}" for t, e in zip(titles, extra)]


def build_figure(coords: np.ndarray, hover: list[str], color: Coloring | None, title: str = ""):
    """The Plotly figure: one trace per group (legend toggles them), or one trace coloured by values."""
    import plotly.graph_objects as go

    dims = coords.shape[1]
    webgl = dims == 2 and len(coords) > SVG_MAX_POINTS
    hover = np.asarray(hover, dtype=object)

    def trace(mask, **kw):
        xyz = {"x": coords[mask, 0], "y": coords[mask, 1]}
        if dims == 3:
            xyz["z"] = coords[mask, 2]
            cls = go.Scatter3d
        else:
            cls = go.Scattergl if webgl else go.Scatter
        return cls(mode="markers", text=hover[mask], hovertemplate="%{text}<extra></extra>", **xyz, **kw)

    size = 3 if dims == 3 else 5
    fig = go.Figure()
    if color is None:
        fig.add_trace(trace(np.ones(len(coords), bool), marker={"size": size, "color": "#4472c4", "opacity": 0.7},
                            name="documents"))
    elif color.labels is not None:
        labels = np.asarray(color.labels, dtype=object)
        names = sorted(set(color.labels) - {OTHER})
        if OTHER in set(color.labels):
            fig.add_trace(trace(labels == OTHER, marker={"size": size - 1, "color": "#d0d0d0", "opacity": 0.5}, name=OTHER))
        from plotly.colors import qualitative

        palette = qualitative.Dark24 + qualitative.Alphabet + qualitative.Light24
        for i, name in enumerate(names):
            fig.add_trace(trace(labels == name, marker={"size": size + 1, "opacity": 0.9, "color": palette[i % len(palette)]},
                                name=name))
    else:
        vals = color.values
        order = np.argsort(vals, kind="stable")  # strongest drawn last, on top
        fig.add_trace(trace(order, marker={"size": size, "color": vals[order], "colorscale": "Viridis",
                                           "colorbar": {"title": color.title}, "opacity": 0.8}, name=color.title))
    fig.update_layout(title=title, template="plotly_white", height=800, legend={"itemsizing": "constant"},
                      margin={"l": 10, "r": 10, "t": 50, "b": 10})
    return fig


def write_map(
    ws: Workspace,
    out: str | os.PathLike,
    *,
    color_by: str | None = None,
    groups=None,
    dims: int = 2,
    sae: str | None = None,
    seed: int = 0,
    progress: ProgressCallback | None = None,
) -> tuple[Path, Path]:
    """Write the interactive map (self-contained HTML, plotly.js inlined: works offline) and a PNG beside it."""
    require("plotly", "The interactive map", extra=None)
    out = Path(out)
    if out.suffix.lower() not in (".html", ".htm"):
        raise InputError(f"the map is an HTML page: give an output path ending in .html, got '{out}'")
    color = coloring(ws, color_by, groups=groups, sae=sae)
    coords = umap_coords(ws, dims, seed=seed, progress=progress)
    hover = hover_texts(ws, color, sae=sae)
    title = f"{ws.path.name}: UMAP of {ws.n_documents} vectors ({ws.model_id})" + (f", coloured by {color.title}" if color else "")
    fig = build_figure(coords, hover, color, title=title)
    with atomic_path(out) as tmp:
        fig.write_html(str(tmp), include_plotlyjs=True, full_html=True, config={"displaylogo": False})
    png = out.with_suffix(".png")

    plot_map_png(coords, color, png, title=title)
    return out, png
