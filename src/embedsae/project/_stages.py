"""The stages a project runs (these write their part of the workspace, then refresh what they changed): embed,
train, evaluate, sweep, the whole pipeline, interpret, families, index, and any of them by kind for a job."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from ..errors import InputError
from ..records import (
    FamiliesSummary,
    IndexSummary,
    InterpretSummary,
    MapSummary,
    Metrics,
    Record,
    TrainSummary,
)
from ._search import Search

if TYPE_CHECKING:
    import pandas as pd

    from ..progress import ProgressCallback


class Stages(Search):
    @classmethod
    def embed(cls, corpus: Any, out: str | os.PathLike, *, demo: bool = False, limit: int | None = None,
              **kwargs: Any):
        """Embed a corpus (a file, a BEIR folder, a DataFrame; `demo`: the Wikipedia demo corpus) into a new
        workspace (embedsae.pipeline.embed takes the rest) and return a project on it."""
        from ..pipeline import embed

        if demo:
            from ..data.demo import load_demo_corpus

            corpus, limit = load_demo_corpus(limit=limit), None
        elif corpus is None:
            raise InputError("give a corpus file or folder, or the demo corpus")
        return cls(embed(corpus, out, limit=limit, **kwargs))

    def train(self, *, progress: ProgressCallback | None = None, train_on: str | os.PathLike | None = None,
              **kwargs: Any):
        """Train an SAE (embedsae.pipeline.train: SAEConfig and TrainConfig settings, name, resume) and return a
        project on it; `train_on`: train on another workspace's vectors (same embedding model). In data-parallel
        training (torchrun) the helper processes return None: rank 0 writes the SAE and returns the project."""
        from ..pipeline import train
        from ..sae import distributed
        from ..workspace import Workspace

        if train_on is not None:
            other = Workspace.open(train_on, expect_model=self.workspace.model_id, expect_dim=self.workspace.dim)
            kwargs["train_vectors"] = other.vectors
        train(self.workspace, progress=progress, **kwargs)
        helper = distributed.rank() != 0
        distributed.finish()
        self.refresh()
        return None if helper else type(self)(self.workspace, self.workspace.resolve_sae(kwargs.get("name")))

    def evaluate(self, *, recompute: bool = True, progress: ProgressCallback | None = None) -> Metrics:
        """Evaluate the SAE on the workspace's vectors (writes metrics.json and density.png); with
        `recompute=False` the stored figures are returned when there are some."""
        from ..pipeline import evaluate_sae

        if not recompute:
            stored = self.metrics()
            if stored is not None:
                return stored
        m = Metrics.from_dict(evaluate_sae(self.workspace, self.sae_name, progress=progress))
        self.refresh()
        return m

    def sweep(self, ks: list[int], latents: list[int], *, progress: ProgressCallback | None = None,
              **kwargs: Any) -> pd.DataFrame:
        """Train and evaluate a grid of k x latents; writes sweep/sweep.md, sweep.csv and sweep.png."""
        from ..pipeline import sweep

        table = sweep(self.workspace, ks, latents, progress=progress, **kwargs)
        self.refresh()
        return table

    @classmethod
    def run(cls, corpus: Any, out: str | os.PathLike, *, progress: ProgressCallback | None = None,
            embed: dict[str, Any] | None = None, **train: Any):
        """The whole pipeline: embed, train, then every registered run stage (interpret, families, index, ...);
        returns a project on the trained SAE."""
        project = cls.embed(corpus, out, progress=progress, **(embed or {}))
        trained = project.train(progress=progress, **train)
        for stage in trained.run_stage_names():
            trained.run_stage_plain(stage, progress=progress)
        trained.refresh()
        return trained

    @staticmethod
    def run_stage_names() -> tuple[str, ...]:
        """The stages `run` calls after training, in order (embedsae.registry.RUN_STAGES)."""
        from ..registry import RUN_STAGES

        return RUN_STAGES.names()

    def run_stage_plain(self, name: str, *, progress: ProgressCallback | None = None) -> None:
        """Run one registered run stage with its defaults."""
        from ..registry import RUN_STAGES

        RUN_STAGES.get(name)(self.workspace, self.sae_name, progress=progress)
        self.refresh()

    def interpret(self, *, progress: ProgressCallback | None = None, **kwargs: Any) -> InterpretSummary:
        """Name, describe and score every alive feature (embedsae.interpret.stage.interpret: settings, llm,
        examples, clean, or keyword overrides of InterpretSettings)."""
        from ..interpret.stage import interpret

        summary = interpret(self.workspace, self.sae_name, progress=progress, **kwargs)
        self.refresh()
        return InterpretSummary.from_dict(summary)

    def build_families(self, *, progress: ProgressCallback | None = None, settings: Any = None,
                       figures: bool = True) -> FamiliesSummary:
        """Find, store and record the feature families (families.json, and with `figures` the sunburst and PNG)."""
        from ..structure.stage import families_stage

        result = families_stage(self.workspace, self.sae_name, progress=progress, settings=settings, figures=figures)
        self.refresh()
        return FamiliesSummary(sae=result.sae, families=len(result.families), label_source=result.label_source,
                               stats=result.stats, seconds=round(result.seconds, 3), files=result.files)

    def index(self, *, progress: ProgressCallback | None = None, sae_from: str | os.PathLike | None = None,
              name: str | None = None, **kwargs: Any) -> IndexSummary:
        """Build the concept, BM25 (and optional ANN) indexes of this SAE (embedsae.search.build_index: settings,
        lexical, dense, ann, backend, milvus); `sae_from`: first copy in the SAE `name` (default: the latest) of
        another workspace of the same embedding model, and index with it."""
        from ..search import adopt_sae, build_index
        from ..workspace import Workspace

        sae = self.sae_name if sae_from is None else adopt_sae(self.workspace, Workspace.open(sae_from), name)
        info = build_index(self.workspace, sae, progress=progress, **kwargs)
        self.refresh()
        return IndexSummary.from_build(info)

    def build_map(self, *, progress: ProgressCallback | None = None, dims: tuple[int, ...] = (2, 3),
                  seed: int = 0) -> MapSummary:
        """The map stage: the UMAP layouts of the documents (2-D and 3-D), stored in the workspace (each computed
        only when the stored one does not match it); embedsae.viz.map.map_stage."""
        from ..viz.map import map_stage

        summary = MapSummary.from_dict(map_stage(self.workspace, dims=dims, seed=seed, progress=progress))
        self.refresh()
        return summary

    # ------------------------------------------------------------------ stages by kind (jobs)
    def check_stage(self, kind: str, **values: Any) -> None:
        """Raise InputError when `values` are not valid settings of a stage on this workspace (before starting it)."""
        from ..settings import fields_of
        from ..stages import stage_classes, stage_settings

        known = {"d_in": self.workspace.dim}
        given = stage_settings(kind, {k: v for k, v in values.items() if v is not None})
        made = {}
        for cls in stage_classes(kind):
            kwargs = given.get(cls, {})
            required = {f.name: known[f.name] for f in fields_of(cls) if f.name in known and f.name not in kwargs}
            made[cls.__name__] = cls(**required, **kwargs)
        if kind == "train":
            from ..pipeline import check_new_sae, default_sae_name

            cfg = made["SAEConfig"]
            name = values.get("name") or default_sae_name(cfg.architecture, cfg.k, cfg.n_latents)
            check_new_sae(self.workspace, name, bool(values.get("overwrite", False)))

    def run_stage(self, kind: str, *, progress: ProgressCallback | None = None, **values: Any) -> Record:
        """Run a stage by kind (`embedsae.stages.STAGES`: train, interpret, families, index, evaluate, ...) with the
        settings a front end collected (`stage_fields(kind)` lists them; None keeps a default); returns the
        stage's summary record."""
        from ..stages import stage_settings, stage_spec

        spec = stage_spec(kind)
        given = {k: v for k, v in values.items() if v is not None}
        own = {f.name: given.get(f.name, f.default) for f in spec.own}
        own = {k: v for k, v in own.items() if v is not None}
        per_class = stage_settings(kind, given)
        project = self.use(given["sae"]) if spec.on_sae and given.get("sae") else self
        if kind == "train":
            kwargs = {k: v for d in per_class.values() for k, v in d.items()}
            if "n_latents" in kwargs:
                kwargs["latents"] = kwargs.pop("n_latents")
            trained = self.train(progress=progress, **kwargs, **own)
            metrics = trained.metrics() if trained is not None else None
            return TrainSummary(sae=trained.sae_name if trained else str(own.get("name")), metrics=metrics)
        if kind == "map":
            return self.build_map(progress=progress)
        settings = next(iter(cls(**kw) for cls, kw in per_class.items()), None)
        if kind == "interpret":
            return project.interpret(progress=progress, **(settings.to_dict() if settings else {}))
        if kind == "families":
            return project.build_families(progress=progress, settings=settings)
        if kind == "index":
            return project.index(progress=progress, settings=settings, **own)
        if kind == "evaluate":
            return project.evaluate()
        return spec.run(project, progress=progress, settings=settings, **own)
