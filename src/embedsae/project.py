"""The service layer: one object per workspace and SAE that every front end calls (CLI, HTTP API, notebooks).

    import embedsae
    p = embedsae.open("ws")                      # the latest trained SAE; embedsae.open("ws", sae="topk-k32-n3072")
    p.features(search="galaxy", sort="score")    # a FeaturePage
    p.feature(12)                                # a feature card (dict)
    p.neighbours(12)
    p.search("black holes", mode="hybrid", steer=["spiral galaxy=-0.4"])

A Project computes what is expensive once (the SAE, its codes, co-occurrence, activation statistics, labels,
the feature table, the searcher) and keeps it while the files it came from are unchanged, so a warm Project
answers a card, neighbours or a search in milliseconds. Reading never writes a file. The stage methods
(train, interpret, families, index, evaluate) write their part of the workspace and refresh what they changed.
A Project is safe to share between threads: parts are built under a lock, and reads do not mutate state.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import layout
from .errors import InputError, StageMissingError
from .progress import ProgressCallback
from .workspace import Workspace

FEATURE_SORTS = ("id", "density", "score")


@dataclass
class FeaturePage:
    """One page of the feature list: the matching features' records and how many matched in all."""

    total: int
    offset: int
    items: list[dict[str, Any]]
    table: Any
    """The page as a pandas DataFrame (for export)."""


class Project:
    """One workspace and one of its SAEs, with the operations a user has. Build with `embedsae.open`."""

    def __init__(self, workspace: Workspace | str | os.PathLike, sae: str | None = None) -> None:
        self.workspace = workspace if isinstance(workspace, Workspace) else Workspace.open(workspace)
        self._requested_sae = sae
        self._parts: dict[str, tuple[Any, Any]] = {}
        self._lock = threading.RLock()

    # ------------------------------------------------------------------ identity
    @property
    def path(self) -> Path:
        return self.workspace.path

    @property
    def sae_name(self) -> str:
        """The SAE this project works on (the latest trained one unless another was asked for)."""
        return self._part("sae_name", (layout.MANIFEST,), lambda: self.workspace.resolve_sae(self._requested_sae),
                          sae_files=False)

    def use(self, sae: str) -> Project:
        """A project on another SAE of the same workspace."""
        return Project(self.workspace, self.workspace.resolve_sae(sae))

    def info(self) -> dict[str, Any]:
        """Model, counts, columns, stages and the SAEs with their headline metrics."""
        from .pipeline import describe

        return describe(self.workspace)

    def metrics(self) -> dict[str, Any] | None:
        """The stored evaluation of the SAE (None before `evaluate`)."""
        from .pipeline import load_metrics

        return load_metrics(self.workspace, self.sae_name)

    # ------------------------------------------------------------------ cached parts
    def _stamp(self, files: Sequence[str], sae_files: bool = True) -> tuple:
        """What a cached part depends on: size and mtime of its files (missing files count too)."""
        folder = self.workspace.sae_dir(self.sae_name) if sae_files else self.path
        out: list[tuple] = [(str(folder),)]
        for name in files:
            path = folder / name
            try:
                st = path.stat()
                out.append((name, st.st_mtime_ns, st.st_size))
            except OSError:
                out.append((name, None, None))
        return tuple(out)

    def _part(self, key: str, files: Sequence[str], build: Callable[[], Any], *, sae_files: bool = True) -> Any:
        stamp = self._stamp(files, sae_files) if files else ()
        hit = self._parts.get(key)
        if hit is not None and hit[0] == stamp:
            return hit[1]
        with self._lock:
            hit = self._parts.get(key)
            if hit is not None and hit[0] == stamp:
                return hit[1]
            value = build()
            self._parts[key] = (stamp, value)
            return value

    def refresh(self) -> None:
        """Forget every cached part (they are rebuilt on next use)."""
        with self._lock:
            self._parts.clear()

    @property
    def sae(self):
        """The SAE model (torch), on the CPU."""
        return self._part("sae", (layout.SAE_WEIGHTS, layout.SAE_CONFIG), lambda: self.workspace.load_sae(self.sae_name))

    @property
    def sae_config(self) -> dict[str, Any]:
        """The SAE's cfg.json (architecture, k, n_latents, ...), read without loading the model."""
        from .sae.base import read_config

        return self._part("cfg", (layout.SAE_CONFIG,), lambda: read_config(self.workspace.sae_dir(self.sae_name)).to_dict())

    @property
    def codes(self):
        """The documents' sparse codes (stored ones when they match the SAE, else computed in memory)."""
        from .sae.codes import stored_codes, workspace_codes

        def build():
            return stored_codes(self.workspace, self.sae_name) or workspace_codes(self.workspace, self.sae_name)

        return self._part("codes", (layout.SAE_WEIGHTS, layout.CODES), build)

    @property
    def activation_stats(self):
        """Per-feature activation columns and statistics (embedsae.structure.cooccurrence.ActivationStats)."""
        from .structure.cooccurrence import ActivationStats

        return self._part("stats", (layout.SAE_WEIGHTS, layout.CODES), lambda: ActivationStats(self.codes))

    @property
    def labels(self) -> dict[int, str]:
        """Feature id -> label, the same in every view (interpreted labels, else quick title keywords)."""
        return self._labels()[0]

    def _labels(self) -> tuple[dict[int, str], str]:
        from .interpret import feature_labels

        def build():
            labels = feature_labels(self.workspace, self.sae_name, codes=self.codes)
            return labels, labels.source

        return self._part("labels", (layout.SAE_WEIGHTS, layout.FEATURES_DB, layout.FEATURES_DB + "-wal"), build)

    def feature_table(self):
        """Every feature with stats, label and scores (a DataFrame), or None before `interpret`."""
        from .interpret.store import FeatureStore

        def build():
            store = FeatureStore.read(self.workspace.sae_file(self.sae_name, layout.FEATURES_DB))
            if store is None:
                return None
            try:
                return store.table()
            finally:
                store.close()

        return self._part("table", (layout.FEATURES_DB, layout.FEATURES_DB + "-wal"), build)

    @property
    def titles(self) -> list[str]:
        return self._part("titles", (layout.CORPUS,), self.workspace.titles, sae_files=False)

    @property
    def ids(self) -> list[str]:
        return self._part("ids", (layout.CORPUS,), lambda: self.workspace.ids, sae_files=False)

    @property
    def searcher(self):
        """The searcher of this SAE (indexes load on first use)."""
        from .search import Searcher

        return self._part("searcher", (layout.SAE_WEIGHTS, layout.CONCEPT_INDEX, layout.FEATURES_DB),
                          lambda: Searcher(self.workspace, self.sae_name))

    def _neighbour_finder(self):
        from .structure.neighbours import NeighbourFinder

        def build():
            labels, source = self._labels()
            return NeighbourFinder(self.sae_name, self.sae, self.codes, labels, source)

        return self._part("neighbours", (layout.SAE_WEIGHTS, layout.CODES, layout.FEATURES_DB), build)

    # ------------------------------------------------------------------ features
    def features(self, *, search: str | None = None, sort: str = "id", clean: bool = False, offset: int = 0,
                 limit: int | None = None) -> FeaturePage:
        """The interpreted features that fire, filtered by label text and the clean filter, sorted and paged.

        `sort`: "id", "density" (most frequent first) or "score" (the combined embedding AUC, random and hard
        negatives, where stored, else the AUC against random documents; ties go to the feature that fires on more
        documents)."""
        from .interpret.store import feature_records

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
        return FeaturePage(total=int(len(t)), offset=offset, items=feature_records(page), table=page)

    def feature(self, feature: int, *, top: int = 8, bins: int = 20) -> dict[str, Any]:
        """A feature card: label, labeller, scores, density, activations, histogram and top documents."""
        from .interpret.card import build_card, feature_record
        from .structure.neighbours import check_feature

        if top < 1:
            raise InputError(f"top must be at least 1, got {top}")
        f = check_feature(feature, int(self.sae_config["n_latents"]), self.sae_name)
        docs, acts = self.activation_stats.column(f)
        card = build_card(feature_record(self.feature_table(), f), docs, acts, self.titles, self.ids,
                          self.workspace.n_documents, self.sae_name, top=top, bins=bins)
        if not card.get("label"):
            labels, source = self._labels()
            card["label"], card["label_source"] = labels.get(f), source
        return card

    def neighbours(self, feature: int, *, top: int = 10, min_count: int = 3) -> dict[str, Any]:
        """A feature's neighbours by decoder cosine, co-occurrence (count, PMI) and activation correlation."""
        return self._neighbour_finder().find(feature, top=top, min_count=min_count)

    def families(self) -> dict[str, Any] | None:
        """The stored families of the SAE (None before the families stage)."""
        from .structure.stage import load_families

        return self._part("families", (layout.FAMILIES_JSON,), lambda: load_families(self.workspace, self.sae_name))

    # ------------------------------------------------------------------ search
    def search(self, query: Any, mode: str = "dense", top: int = 10, **kwargs: Any):
        """Search the documents (embedsae.search.Searcher.search): text or a query vector, optional steering."""
        return self.searcher.search(query, mode, top, **kwargs)

    # ------------------------------------------------------------------ words, maps
    def concepts(self, groups, **kwargs: Any):
        """How well features (and raw-dimension / PCA / ICA baselines) detect concept groups (a ConceptReport)."""
        from .words.concepts import concept_report

        return concept_report(self.workspace, groups, sae=self.sae_name, **kwargs)

    def column_groups(self, column: str, **kwargs: Any):
        """Concept groups from a corpus column: one group per value (e.g. per category), members the documents
        that carry it (embedsae.words.groups.column_groups)."""
        from .words.groups import column_groups

        corpus = self.workspace.corpus
        usable = [c for c in corpus.columns if c not in ("id", "text")]
        if column not in usable:
            raise InputError(f"no column '{column}' to group the documents by; the corpus has: {', '.join(map(str, usable))}")
        return column_groups(self.ids, corpus[column], column, **kwargs)

    def group_labels(self, groups) -> tuple[list[str], Any]:
        """Each document's concept group (its first group; "other" for none) and the match of the groups' words."""
        from .viz.map import coloring

        match = groups.match(self.ids)
        return coloring(self.workspace, "group", groups=groups).labels, match

    def map_points(self, dims: int = 2, *, seed: int = 0) -> Any:
        """The stored UMAP coordinates of the documents (documents x dims); StageMissingError before the map stage."""
        from .viz.map import stored_map

        def build():
            coords = stored_map(self.workspace, dims, seed=seed)
            if coords is None:
                raise StageMissingError(f"workspace {self.path} has no {dims}-D map yet", "map")
            return coords

        return self._part(f"map{dims}-{seed}", (f"{layout.MAP}/umap-{dims}d.npy", f"{layout.MAP}/umap-{dims}d.json"),
                          build, sae_files=False)

    # ------------------------------------------------------------------ stages (these write)
    @classmethod
    def embed(cls, corpus: Any, out: str | os.PathLike, **kwargs: Any) -> Project:
        """Embed a corpus into a new workspace (embedsae.pipeline.embed) and return a project on it."""
        from .pipeline import embed

        return cls(embed(corpus, out, **kwargs))

    def train(self, *, progress: ProgressCallback | None = None, **kwargs: Any) -> Project:
        """Train an SAE on the workspace (embedsae.pipeline.train) and return a project on it."""
        from .pipeline import train

        train(self.workspace, progress=progress, **kwargs)
        return Project(self.workspace, self.workspace.resolve_sae(kwargs.get("name")))

    def evaluate(self) -> dict[str, Any]:
        """Evaluate the SAE on the workspace's vectors; writes metrics.json and density.png."""
        from .pipeline import evaluate_sae

        return evaluate_sae(self.workspace, self.sae_name)

    def interpret(self, *, progress: ProgressCallback | None = None, **kwargs: Any) -> dict[str, Any]:
        """Label and score every alive feature (embedsae.interpret.stage.interpret); returns its summary."""
        from .interpret.stage import interpret

        summary = interpret(self.workspace, self.sae_name, progress=progress, **kwargs)
        self.refresh()
        return summary

    def build_families(self, *, progress: ProgressCallback | None = None, settings: Any = None):
        """Find, store and record the feature families (the families stage); returns the FamiliesResult."""
        from .structure.stage import families_stage

        result = families_stage(self.workspace, self.sae_name, progress=progress, settings=settings)
        self.refresh()
        return result

    def build_map(self, *, progress: ProgressCallback | None = None, **kwargs: Any) -> dict[str, Any]:
        """Compute and store the UMAP layouts of the documents (the map stage, embedsae.viz.map.map_stage)."""
        from .viz.map import map_stage

        return map_stage(self.workspace, progress=progress, **kwargs)

    def index(self, *, progress: ProgressCallback | None = None, **kwargs: Any) -> dict[str, Any]:
        """Build the concept, BM25 (and optional ANN) indexes for this SAE; returns index.json's content."""
        from .search.index import build_index

        info = build_index(self.workspace, self.sae_name, progress=progress, **kwargs)
        self.refresh()
        return info


def open(path: str | os.PathLike, sae: str | None = None) -> Project:  # noqa: A001 - the natural name
    """Open a workspace (and one of its SAEs, the latest trained by default) as a Project."""
    return Project(path, sae)
