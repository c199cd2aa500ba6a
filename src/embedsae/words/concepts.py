"""Which features detect which concept groups: precision / recall / F1 of every feature as a detector of
every group, the seed tool's selectivity score, and the same figures for baseline directions.

A feature "detects" a group when the words it fires on are the group's words: precision = share of its
firing words in the group, recall = share of the group's words it fires on. Selectivity (the seed tool's
monosemanticity score) = the feature's mean activation per group, normalised over the groups, maximum.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError
from ..progress import ProgressCallback
from ..workspace import Workspace
from .groups import ConceptGroups, GroupMatch

logger = logging.getLogger(__name__)

BANDS = ("strong", "medium", "weak")
"""The thirds of a feature's activations whose words a report shows."""
COVERAGE_F1 = 0.3
COVERAGE_F1_HIGH = 0.5


@dataclass
class MethodScores:
    """Detector figures of one method (SAE features or a baseline's directions) against the groups."""

    method: str
    feature_names: list[str]
    groups: list[str]
    group_sizes: np.ndarray
    tp: np.ndarray
    n_fired: np.ndarray
    selectivity: np.ndarray
    selective_group: np.ndarray
    activations: Any = field(repr=False)
    """Sparse (words x features) non-negative activations, CSC."""

    @property
    def precision(self) -> np.ndarray:
        return self.tp / np.maximum(self.n_fired, 1)[:, None]

    @property
    def recall(self) -> np.ndarray:
        return self.tp / np.maximum(self.group_sizes, 1)[None, :]

    @property
    def f1(self) -> np.ndarray:
        return 2 * self.tp / np.maximum(self.n_fired[:, None] + self.group_sizes[None, :], 1)

    def best_f1_per_group(self) -> np.ndarray:
        f1 = self.f1
        return f1.max(axis=0) if len(f1) else np.zeros(len(self.groups))

    def summary(self) -> dict[str, float]:
        """median_best_f1, coverage (share of groups with a detector of F1 >= 0.3) and coverage_at_0_5."""
        best = self.best_f1_per_group()
        return {
            "median_best_f1": round(float(np.median(best)), 4) if len(best) else 0.0,
            "coverage": round(float(np.mean(best >= COVERAGE_F1)), 4) if len(best) else 0.0,
            "coverage_at_0_5": round(float(np.mean(best >= COVERAGE_F1_HIGH)), 4) if len(best) else 0.0,
        }

    def band_rows(self, feature: int, n: int = 6) -> dict[str, np.ndarray]:
        """Rows where a feature fires, in three bands of its activations (strongest third, middle, weakest), the
        strongest `n` of each band first."""
        col = self.activations.getcol(feature)
        order = np.argsort(-col.data, kind="stable")
        return {band: col.indices[part[:n]] for band, part in zip(BANDS, np.array_split(order, 3))}

    def top_rows(self, feature: int, n: int = 8) -> np.ndarray:
        """Rows (words) where a feature is most active, strongest first."""
        col = self.activations.getcol(feature)
        order = np.argsort(-col.data, kind="stable")[:n]
        return col.indices[order]


def score_detectors(method: str, activations, feature_names: list[str], match: GroupMatch, groups: list[str]) -> MethodScores:
    """F1, precision, recall and selectivity of every column of a sparse non-negative activation matrix."""
    import scipy.sparse as sp

    act = sp.csc_matrix(activations, dtype=np.float32)
    act.eliminate_zeros()
    fires = act.copy()
    fires.data = np.ones_like(fires.data)
    member = match.membership(groups)
    sizes = np.asarray(member.sum(axis=0)).ravel()
    tp = np.asarray((fires.T @ member).todense(), dtype=np.float64)
    n_fired = np.diff(fires.indptr).astype(np.float64)
    mass = np.asarray((act.T @ member).todense(), dtype=np.float64) / np.maximum(sizes, 1)[None, :]
    total = mass.sum(axis=1)
    selectivity = np.where(total > 0, mass.max(axis=1) / np.where(total > 0, total, 1), 0.0)
    return MethodScores(method, feature_names, groups, sizes.astype(np.float64), tp, n_fired, selectivity,
                        mass.argmax(axis=1), act)


@dataclass
class ConceptReport:
    """Detector figures of an SAE and of baselines against concept groups on one word workspace."""

    sae_name: str
    methods: dict[str, MethodScores]
    match: GroupMatch
    groups: list[str]
    skipped: dict[str, int]
    words: list[str]
    selectivity_threshold: float
    settings: dict[str, Any]

    def rows(self) -> list[dict[str, Any]]:
        """One summary row per method: method, median_best_f1, coverage, coverage_at_0_5, selective features."""
        out = []
        for name, m in self.methods.items():
            out.append({"method": name, **m.summary(), "features": len(m.feature_names),
                        "selective": int(self._selective(m).sum())})
        return out

    def _selective(self, m: MethodScores) -> np.ndarray:
        """Features whose selectivity reaches the threshold and that fire on at least 3 group words."""
        return (m.selectivity >= self.selectivity_threshold) & (m.tp.sum(axis=1) >= 3)

    def top_words(self, m: MethodScores, feature: int, n: int = 8) -> list[str]:
        return [self.words[i] for i in m.top_rows(feature, n)]

    def best_matches(self, method: str = "sae", n: int = 5) -> list[dict[str, Any]]:
        """The `n` best group -> feature matches of a method (by F1), each with the feature's top words."""
        m = self.methods[method]
        f1 = m.f1
        best_feat = f1.argmax(axis=0)
        order = np.argsort(-f1[best_feat, np.arange(len(self.groups))], kind="stable")[:n]
        return [self._detector(m, int(best_feat[g]), int(g)) for g in order]

    def _detector(self, m: MethodScores, j: int, g: int) -> dict[str, Any]:
        return {
            "group": self.groups[g], "feature": j, "name": m.feature_names[j],
            "f1": round(float(m.f1[j, g]), 4), "precision": round(float(m.precision[j, g]), 4),
            "recall": round(float(m.recall[j, g]), 4), "fires_on": int(m.n_fired[j]),
            "selectivity": round(float(m.selectivity[j]), 4), "selective_for": self.groups[int(m.selective_group[j])],
            "top_words": self.top_words(m, j),
        }

    def method_json(self, name: str, detectors_per_group: int = 3, max_features: int = 300) -> dict[str, Any]:
        """One method's figures: summary, per_group (best detectors) and per_feature (best group, selectivity)."""
        m = self.methods[name]
        f1 = m.f1
        per_group = []
        for g, group in enumerate(self.groups):
            best = np.argsort(-f1[:, g], kind="stable")[:detectors_per_group]
            per_group.append({
                "group": group, "n_words": int(m.group_sizes[g]), "n_missing": len(self.match.missing.get(group, [])),
                "best_f1": round(float(f1[best[0], g]), 4) if len(best) else 0.0,
                "detectors": [self._detector(m, int(j), g) for j in best if f1[j, g] > 0],
            })
        best_group = f1.argmax(axis=1) if f1.size else np.zeros(0, dtype=int)
        best_f1 = f1.max(axis=1) if f1.size else np.zeros(0)
        selective = self._selective(m)
        shown = np.flatnonzero((best_f1 >= 0.1) | selective)
        shown = shown[np.argsort(-best_f1[shown], kind="stable")][:max_features]
        per_feature = []
        for j in shown:
            d = self._detector(m, int(j), int(best_group[j]))
            d["best_group"] = d.pop("group")
            d["monosemantic"] = bool(selective[j])
            d["bands"] = {band: [self.words[i] for i in rows] for band, rows in m.band_rows(int(j)).items()}
            per_feature.append(d)
        return {**m.summary(), "n_groups": len(self.groups), "n_features": len(m.feature_names),
                "n_selective": int(selective.sum()), "per_group": per_group, "per_feature": per_feature}

    def to_json(self) -> dict[str, Any]:
        """The whole report as one JSON-ready object (keys `sae`, `raw`, `pca`, `ica` hold the methods)."""
        out: dict[str, Any] = {
            "workspace": self.settings.get("workspace"), "sae_name": self.sae_name,
            "groups": {
                "source": self.settings.get("groups"), "evaluated": len(self.groups), "skipped": self.skipped,
                "n_missing_words": len(self.match.missing_words()),
                "missing": {g: w for g, w in self.match.missing.items() if w},
            },
            "settings": {k: v for k, v in self.settings.items() if k not in ("workspace", "groups")},
            "summary": self.rows(),
        }
        for name in self.methods:
            out[name] = self.method_json(name)
        out["best_matches"] = self.best_matches("sae", 5) if "sae" in self.methods else []
        return out


def sae_activations(ws: Workspace, sae: str | None = None, *, progress: ProgressCallback | None = None):
    """The SAE codes of all words as a sparse (words x latents) matrix, and the latents' names."""
    from ..interpret import feature_labels
    from ..sae.codes import workspace_codes

    name = ws.resolve_sae(sae)
    codes = workspace_codes(ws, name, progress=progress)
    labels = feature_labels(ws, name)
    names = [f"f{j}" + (f" {labels[j]}" if j in labels else "") for j in range(codes.n_latents)]
    return codes.to_csr(), names


def concept_report(
    ws: Workspace,
    groups: ConceptGroups,
    *,
    sae: str | None = None,
    baselines: tuple[str, ...] = ("raw", "pca", "ica"),
    top_fraction: float = 0.01,
    selectivity_threshold: float = 0.5,
    min_group_words: int = 3,
    progress: ProgressCallback | None = None,
) -> ConceptReport:
    """Score the SAE's features and the baselines' directions as detectors of each concept group.

    Groups with fewer than `min_group_words` words in the workspace are skipped (and listed); missing
    words are kept in the report's `match.missing`.
    """
    from .baselines import baseline_activations

    if not 0 < selectivity_threshold <= 1:
        raise InputError(f"the selectivity threshold must lie in (0, 1], got {selectivity_threshold}")
    words = ws.corpus["id"].astype(str).tolist()
    match = groups.match(words)
    if match.missing_words():
        logger.info(match.summary())
    kept = [g for g in match.names if len(match.members[g]) >= min_group_words]
    skipped = {g: int(len(match.members[g])) for g in match.names if g not in kept}
    if not kept:
        raise InputError(
            f"none of the {len(match.names)} groups has {min_group_words} or more words in workspace {ws.path} "
            f"({match.summary()}); use groups of words the workspace holds"
        )
    if not ws.sae_names():
        from ..errors import WorkspaceError
        from .sources import RECOMMENDED_TRAIN as rec

        raise WorkspaceError(
            f"workspace {ws.path} has no trained SAE yet; for word vectors train one with the recommended settings "
            f"(`k` {rec['k']}, `latents` {rec['latents']}, `epochs` {rec['epochs']}, `lr` {rec['lr']}, "
            f"`batch_size` {rec['batch_size']}, `init` {rec['init']})"
        )
    name = ws.resolve_sae(sae)
    methods: dict[str, MethodScores] = {}
    act, names = sae_activations(ws, name, progress=progress)
    methods["sae"] = score_detectors("sae", act, names, match, kept)
    x = np.asarray(ws.embeddings, dtype=np.float32)
    for b in baselines:
        act, names = baseline_activations(x, b, top_fraction=top_fraction)
        methods[b] = score_detectors(b, act, names, match, kept)
    settings = {"workspace": str(ws.path), "groups": groups.source, "baseline_top_fraction": top_fraction,
                "selectivity_threshold": selectivity_threshold, "min_group_words": min_group_words,
                "coverage_f1": COVERAGE_F1}
    return ConceptReport(name, methods, match, kept, skipped, [str(t) for t in ws.titles()], selectivity_threshold,
                         settings)


def concepts_stage(ws: Workspace, groups, groups_name: str, sae: str | None = None,
                   **kwargs: Any) -> tuple[ConceptReport, dict[str, Path]]:
    """The concepts stage: the concept report of `groups` (named `groups_name`), written as
    saes/<name>/concepts/<groups_name>.json and .png and recorded in the manifest."""
    from .._io import write_json
    from ..viz.concepts_plot import plot_best_f1_per_group

    report = concept_report(ws, groups, sae=sae, **kwargs)
    data = report.to_json()
    folder = ws.sae_dir(report.sae_name) / "concepts"
    files = {"json": folder / f"{groups_name}.json", "png": folder / f"{groups_name}.png"}
    write_json(files["json"], data)
    plot_best_f1_per_group(report, files["png"], title=f"{report.sae_name} on {ws.path.name}: {groups_name}")
    ws.record_stage(f"concepts:{report.sae_name}:{groups_name}", {**data["settings"], "groups": groups_name})
    return report, files
