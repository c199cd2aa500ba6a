"""What a project shows without writing anything: the workspace and its SAEs, features, cards, neighbours,
families, documents, label search, activations of given texts and stored maps."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from .. import layout
from ..errors import InputError, StageMissingError, check_feature, check_row
from ..records import (
    DocumentView,
    FeatureActivation,
    FeatureCard,
    FeaturePage,
    FileCheck,
    LabelHit,
    Metrics,
    SaeSummary,
    TextActivations,
    WorkspaceInfo,
)
from ._parts import Parts

FEATURE_SORTS = ("id", "density", "score")
PLOTS = (layout.TRAIN_LOG_PNG, layout.DENSITY_PNG, layout.FAMILIES_PNG)
"""The plots the stages store per SAE."""


class Reads(Parts):
    # ------------------------------------------------------------------ the workspace
    def info(self) -> WorkspaceInfo:
        """Model, counts, columns, stages and the SAEs with their headline metrics."""
        from ..pipeline import describe

        return WorkspaceInfo.from_dict({**describe(self.workspace), "name": self.path.name})

    def saes(self) -> list[SaeSummary]:
        """The workspace's SAEs with their headline metrics, oldest first."""
        return self.info().saes

    @staticmethod
    def check(path: str | os.PathLike) -> list[FileCheck]:
        """Read every file of the workspace at `path` as the stages would and verify the shards' sha256: one record
        per file, damaged ones with the message a reader would give (a damaged manifest too). Writes nothing."""
        from ..check import check_workspace

        return check_workspace(path)

    def sae_names(self) -> list[str]:
        """The names of the workspace's trained SAEs (none before `train`)."""
        return list(self.workspace.sae_names())

    def metrics(self) -> Metrics | None:
        """The stored evaluation of the SAE (None before `evaluate`)."""
        from ..pipeline import load_metrics

        m = load_metrics(self.workspace, self.sae_name)
        return Metrics.from_dict(m) if m is not None else None

    def columns(self) -> list[str]:
        """The corpus's metadata columns (title, categories, year, ...; not the text)."""
        return [c for c in self.workspace.manifest.get("columns", []) if c not in ("text", "id")]

    # ------------------------------------------------------------------ features
    def check_feature(self, feature: int) -> int:
        """The feature id, or a NotFoundError naming the ids this SAE has."""
        return check_feature(feature, int(self.sae_config["n_latents"]), self.sae_name)

    def features(self, *, search: str | None = None, sort: str = "id", clean: bool = False, offset: int = 0,
                 limit: int | None = None) -> FeaturePage:
        """The interpreted features that fire, filtered by name text and the clean filter, sorted and paged.

        `sort`: "id", "density" (most frequent first) or "score" (the combined name AUC, random and hard
        negatives, where stored, else the AUC against random documents; ties go to the feature that fires on more
        documents)."""
        from ..interpret.store import feature_records

        if sort not in FEATURE_SORTS:
            raise InputError(f"unknown feature order '{sort}'; use one of {', '.join(FEATURE_SORTS)}")
        if offset < 0:
            raise InputError(f"the page offset must be 0 or more, got {offset}")
        if limit is not None and limit < 0:
            raise InputError(f"the page size must be 0 or more, got {limit}")
        t = self.feature_table()
        if t is None:
            raise StageMissingError(f"SAE '{self.sae_name}' of workspace {self.path} has not been interpreted yet",
                                    "interpret")
        t = t[t["n_active"] > 0]
        if search:
            t = t[t["label"].fillna("").str.contains(search, case=False, regex=False)]
        if clean:
            t = t[t["clean"]]
        if sort == "density":
            t = t.sort_values("density", ascending=False, kind="stable")
        elif sort == "score":
            combined = "embedding_auc_combined" in t and t["embedding_auc_combined"].notna().any()
            score = "embedding_auc_combined" if combined else "embedding_auc"
            t = t.sort_values([score, "n_active"], ascending=[False, False], na_position="last", kind="stable")
        page = t.iloc[offset:] if limit is None else t.iloc[offset : offset + limit]
        return FeaturePage(total=int(len(t)), offset=offset, items=feature_records(page), sae=self.sae_name,
                           table=page)

    def export_features(self, path: str, **query: Any) -> tuple[str, int]:
        """Write the features `features(**query)` lists to a .csv, .json or .parquet file; (path, how many)."""
        from ..interpret.store import export_table

        page = self.features(**query)
        return str(export_table(page.table, path)), len(page.items)

    def feature(self, feature: int, *, top: int = 8, bins: int = 20) -> FeatureCard:
        """A feature card: name, description, labeller, scores, density, histogram and top documents."""
        from ..interpret.card import build_card, feature_record

        if top < 1:
            raise InputError(f"top must be at least 1, got {top}")
        f = self.check_feature(feature)
        docs, acts = self.activation_stats.column(f)
        record = feature_record(self.feature_table(), f)
        if not record.label:
            labels = self._labels()
            record.label, record.label_source = labels.get(f), labels.source
        return build_card(record, docs, acts, self.titles, self.ids, self.workspace.n_documents, self.sae_name,
                          top=top, bins=bins)

    def quantile_documents(self, feature: int, n: int = 5) -> list[dict[str, Any]]:
        """Documents at evenly spaced activation quantiles of a feature (weakest to strongest)."""
        docs, acts = self.activation_stats.column(self.check_feature(feature))
        if not len(acts):
            return []
        order = np.argsort(acts, kind="stable")
        picks = sorted(set(np.linspace(0, len(order) - 1, min(n, len(order))).round().astype(int).tolist()))
        titles = self.titles
        return [{"row": int(docs[order[i]]), "title": titles[docs[order[i]]],
                 "activation": round(float(acts[order[i]]), 4), "quantile": round(i / max(len(order) - 1, 1), 2)}
                for i in picks]

    def activation_bands(self, feature: int, n: int = 5) -> dict[str, list[dict[str, Any]]]:
        """The documents (words, in a word workspace) a feature fires on, in three bands of its activations: strong
        (the top third), medium and weak; the strongest `n` of each band."""
        docs, acts = self.activation_stats.column(self.check_feature(feature))
        order = np.argsort(-acts, kind="stable")
        titles = self.titles
        return {band: [{"row": int(docs[i]), "title": titles[docs[i]], "activation": round(float(acts[i]), 4)}
                       for i in part[:n]] for band, part in zip(("strong", "medium", "weak"), np.array_split(order, 3))}

    def alive_features(self) -> list[int]:
        """The ids of the features that fire (interpreted ones when the SAE was interpreted), in order."""
        table = self.feature_table()
        if table is None:
            return list(range(int(self.sae_config["n_latents"])))
        return sorted(table.loc[table["n_active"] > 0, "id"].astype(int).tolist())

    def neighbours(self, feature: int, *, top: int = 10, min_count: int = 3) -> dict[str, Any]:
        """A feature's neighbours by decoder cosine, co-occurrence (count, PMI) and activation correlation."""
        return self._neighbour_finder().find(feature, top=top, min_count=min_count)

    def families(self) -> dict[str, Any] | None:
        """The stored families of the SAE (None before the families stage)."""
        from ..structure.stage import load_families

        return self._part("families", (layout.FAMILIES_JSON,), lambda: load_families(self.workspace, self.sae_name))

    def family_files(self) -> dict[str, str]:
        """The files the families stage wrote for this SAE that exist (json, html, png)."""
        folder = self.workspace.sae_dir(self.sae_name)
        files = (("json", layout.FAMILIES_JSON), ("html", layout.FAMILIES_HTML), ("png", layout.FAMILIES_PNG))
        return {kind: str(folder / f) for kind, f in files if (folder / f).is_file()}

    def plot_file(self, name: str) -> Path | None:
        """One of the SAE's stored plots (train_log.png, density.png, families.png) when it exists, else None."""
        if name not in PLOTS:
            return None
        path = self.workspace.sae_dir(self.sae_name) / name
        return path if path.is_file() else None

    def families_of(self, feature: int) -> list[dict[str, Any]]:
        """The families a feature belongs to, with its parent, siblings and children in each."""
        out = []
        for i, fam in enumerate((self.families() or {}).get("families", [])):
            if feature not in (fam["parent"], *fam["children"]):
                continue
            tree = dict(zip(fam["children"], fam["tree_parent"]))
            parent = tree.get(feature)
            siblings = [c for c, tp in tree.items() if tp == parent and c != feature] if parent is not None else []
            out.append({"index": i, "label": fam.get("label", ""), "root": fam["parent"], "parent": parent,
                        "siblings": siblings, "children": [c for c, tp in tree.items() if tp == feature],
                        "size": fam.get("size")})
        return out

    def find_labels(self, text: str, *, limit: int = 10) -> list[LabelHit]:
        """Features whose name contains `text`: exact names first, then names starting with it, then by id."""
        needle = text.strip().lower()
        if not needle:
            raise InputError("give some text to look for in the feature names")
        hits = [(f, label) for f, label in sorted(self.labels.items()) if needle in label.lower()]
        hits.sort(key=lambda h: (h[1].lower() != needle, not h[1].lower().startswith(needle), h[0]))
        descriptions = self._descriptions()
        return [LabelHit(id=f, label=label, description=descriptions.get(f)) for f, label in hits[:limit]]

    def _descriptions(self) -> dict[int, str]:
        t = self.feature_table()
        if t is None or "description" not in t:
            return {}
        rows = t[t["description"].notna()]
        return dict(zip(rows["id"].astype(int), rows["description"].astype(str)))

    # ------------------------------------------------------------------ documents and texts
    def document(self, row: int, *, chars: int = 2000) -> DocumentView:
        """One document by row (as map points and hits give them): id, title, the start of its text, and the
        features that fire on it, strongest first."""
        r = check_row(row, self.workspace.n_documents, f"'{self.path.name}'")
        idx, vals = self.codes.indices[r], self.codes.values[r]
        order = np.argsort(-vals, kind="stable")
        labels = self.labels
        text = str(self.workspace.texts[r])
        return DocumentView(row=r, id=self.ids[r], title=self.titles[r], text=text[:chars], features=[
            FeatureActivation(id=int(idx[i]), label=labels.get(int(idx[i]), ""), activation=round(float(vals[i]), 5))
            for i in order if vals[i] > 0])

    def activations(self, texts: list[str], features: list[int] | None = None, *, top: int = 10,
                    vectors: np.ndarray | None = None) -> list[TextActivations]:
        """For each text (embedded with the workspace's model, or looked up as a word in a word workspace): its top
        features and the activations of `features`. `vectors`: the texts' vectors when already embedded."""
        import torch

        features = [self.check_feature(f) for f in features or []]
        if not texts:
            raise InputError("give at least one text")
        searcher = self.searcher
        if vectors is None:
            vectors = self.embed_queries(list(texts))
        with torch.no_grad(), searcher.single_thread():
            z = searcher.query_sae().encode(torch.from_numpy(np.asarray(vectors, np.float32))).numpy()
        labels = self.labels
        out = []
        for text, row in zip(texts, z):
            active = np.flatnonzero(row > 0)
            order = active[np.argsort(-row[active], kind="stable")][:top]
            out.append(TextActivations(
                text=text,
                top_features=[FeatureActivation(id=int(j), label=labels.get(int(j), ""),
                                                activation=round(float(row[j]), 5)) for j in order],
                activations={str(f): round(float(row[f]), 5) for f in features}))
        return out

    # ------------------------------------------------------------------ maps
    def map_points(self, dims: int = 2, *, seed: int = 0) -> Any:
        """The stored UMAP coordinates of the documents (documents x dims); StageMissingError before the map stage
        (`build_map`, `embedsae map`, `embedsae run`)."""
        from .. import layout
        from ..errors import StageMissingError
        from ..viz.map import stored_map

        def build():
            coords = stored_map(self.workspace, dims, seed=seed)
            if coords is None:
                raise StageMissingError(f"workspace {self.path} has no {dims}-D map yet", "map")
            return coords

        return self._part(f"map{dims}-{seed}", (f"{layout.MAP}/umap-{dims}d.npy", f"{layout.MAP}/umap-{dims}d.json"),
                          build, sae_files=False)

    def map_dims(self, *, seed: int = 0) -> list[int]:
        """The dimensions (2, 3) whose layout the map stage stored for the workspace as it is."""
        from ..viz.map import map_is_stored

        return [d for d in (2, 3) if map_is_stored(self.workspace, d, seed=seed)]

    def feature_values(self, feature: int) -> np.ndarray:
        """One feature's activation on every document (0 where it does not fire)."""
        docs, acts = self.activation_stats.column(self.check_feature(feature))
        values = np.zeros(self.workspace.n_documents, np.float32)
        values[docs] = acts
        return values

    def column_values(self, column: str) -> list[str]:
        """A corpus column's values as text, one per document (for colouring and grouping): a list value (several
        categories) gives its first item, a missing one "other"."""
        from ..viz.map import coloring

        if column not in self.columns():
            raise InputError(f"no column '{column}'; the corpus has: {', '.join(self.columns()) or 'none'}")
        return coloring(self.workspace, f"column:{column}").labels
