"""The `families` stage: build an SAE's feature families, their statistics and figures, and store them.

Writes into saes/<name>/: families.json (families, statistics, settings), families.html (interactive
sunburst, works offline) and families.png.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .. import layout
from .._io import write_json
from ..progress import ProgressCallback
from ..workspace import Workspace
from .cooccurrence import Cooccurrence, cooccurrence
from .families import Family, FamilySettings, family_stats, find_families
from .labels import family_label, structure_labels

logger = logging.getLogger(__name__)

FAMILIES_JSON = layout.FAMILIES_JSON


@dataclass
class FamiliesResult:
    """Families of one SAE with their statistics and the labels used."""

    sae: str
    families: list[Family]
    stats: dict[str, Any]
    settings: FamilySettings
    labels: dict[int, str]
    label_source: str
    cooc: Cooccurrence
    seconds: float = 0.0
    files: dict[str, str] = field(default_factory=dict)
    """What the families stage wrote: json, and html / png with figures."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "sae": self.sae, "label_source": self.label_source, "settings": self.settings.to_dict(),
            "stats": self.stats, "seconds": round(self.seconds, 3), "families": [f.to_dict() for f in self.families],
        }


def feature_sets(ws: Workspace, sae: str, cooc: Cooccurrence, settings: FamilySettings) -> tuple[np.ndarray, np.ndarray]:
    """(candidates, base): the features families are built from, and those coverage is measured on.

    The base is the clean features (all features that fire, when the SAE is not interpreted); candidates are
    the base features firing in at most `max_density` of the documents.
    """
    from ..interpret import clean_features

    alive = np.flatnonzero(cooc.freq > 0)
    clean = clean_features(ws, sae)
    base = alive if clean is None else np.intersect1d(alive, np.asarray(sorted(clean), dtype=np.int64))
    candidates = base[cooc.density[base] <= settings.max_density]
    return candidates, base


def build_families(
    ws: Workspace, sae: str | None = None, settings: FamilySettings | None = None, *,
    progress: ProgressCallback | None = None, save_codes: bool = False,
) -> FamiliesResult:
    """Find the feature families of an SAE of the workspace, label them, and compute their statistics."""
    from ..sae.codes import workspace_codes

    t0 = time.perf_counter()
    settings = settings or FamilySettings()
    name = ws.resolve_sae(sae)
    codes = workspace_codes(ws, name, progress=progress, save=save_codes)
    cooc = cooccurrence(codes)
    candidates, base = feature_sets(ws, name, cooc, settings)
    families = find_families(cooc, candidates, settings, progress=progress)
    labels, source = structure_labels(ws, name, codes)
    for fam in families:
        fam.parent_label = labels.get(fam.parent, f"feature {fam.parent}")
        fam.child_labels = [labels.get(c, f"feature {c}") for c in fam.children]
        direct = [lab for lab, p in zip(fam.child_labels, fam.tree_parent) if p == fam.parent]
        fam.label = family_label(fam.parent_label, direct or fam.child_labels)
    stats = family_stats(cooc, families, candidates, base, settings)
    return FamiliesResult(name, families, stats, settings, labels, source, cooc, time.perf_counter() - t0)


def write_families(ws: Workspace, result: FamiliesResult, *, figures: bool = True) -> dict[str, str]:
    """Store families.json (and the figures) in the SAE's folder; returns the paths written."""
    from .figures import families_png, families_sunburst_html

    folder = ws.sae_dir(result.sae)
    data = result.to_dict()
    paths = {"json": str(folder / FAMILIES_JSON)}
    if figures:
        title = (f"{result.sae}: {len(result.families)} families, coverage {result.stats['coverage']:.0%}, "
                 f"labels: {result.label_source}")
        html, png = folder / layout.FAMILIES_HTML, folder / layout.FAMILIES_PNG
        families_sunburst_html(data["families"], result.labels, html, title=title)
        families_png(data["families"], result.cooc, png, title=title)
        paths.update(html=str(html), png=str(png))
    write_json(folder / FAMILIES_JSON, data)
    return paths


def load_families(ws: Workspace, sae: str | None = None) -> dict[str, Any] | None:
    """The stored families of an SAE (as written by the stage), or None when the stage has not run
    (DamagedFileError when the file is damaged)."""
    from ..integrity import damaged, read_json_object, reading

    path = ws.sae_dir(ws.resolve_sae(sae)) / FAMILIES_JSON
    if not path.is_file():
        return None
    data = read_json_object(path, required=("families",))
    with reading(path):
        for i, fam in enumerate(data["families"]):
            members = [int(fam["parent"]), *map(int, fam["children"])]
            if len(fam["tree_parent"]) != len(fam["children"]) or any(m < 0 for m in members):
                raise damaged(path, f"family {i} is not a tree of feature ids")
    return data


def families_stage(ws: Workspace, sae_name: str | None = None, progress: ProgressCallback | None = None,
                   settings: FamilySettings | None = None, *, figures: bool = True) -> FamiliesResult:
    """The families stage: build, store (families.json, and with `figures` the sunburst and PNG) and record the
    families of an SAE (the latest trained by default)."""
    name = ws.resolve_sae(sae_name)
    with ws.sae_lock(name, "find families"):
        result = build_families(ws, name, settings, progress=progress, save_codes=True)
        paths = result.files = write_families(ws, result, figures=figures)
        ws.record_stage(f"families:{result.sae}", result.settings.to_dict(), seconds=round(result.seconds, 2),
                        families=len(result.families))
    s = result.stats
    logger.info(f"families of '{result.sae}': {len(result.families)} families, coverage {s['coverage']:.1%}, "
        f"co-occurrence ratio {_fmt(s['cooccurrence_ratio'])}, block ratio {_fmt(s['block_ratio'])} "
        f"(random {_fmt(s['block_ratio_random'])}); see {paths.get('html', paths['json'])}")
    return result


def _fmt(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f}"
