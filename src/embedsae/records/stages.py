"""Records of workspaces and stages: workspace and SAE summaries, metrics, stage summaries, file checks, jobs."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .base import Record


@dataclass
class SaeSummary(Record):
    """An SAE of a workspace with its headline figures."""

    name: str
    architecture: str
    k: int
    latents: int
    nmse: float | None = None
    dead_fraction: float | None = None


@dataclass
class WorkspaceInfo(Record):
    """What a workspace holds: its name (the folder's; a server's name for it), model, counts, columns, stages and
    SAEs. No path: a server's clients know workspaces by name."""

    name: str
    model: dict[str, Any]
    documents: int
    columns: list[str]
    stages: dict[str, Any]
    latest_sae: str | None
    saes: list[SaeSummary]


@dataclass
class Metrics(Record):
    """The evaluation of an SAE (metrics.json): reconstruction, sparsity and neighbourhood figures."""

    sae: str
    k: int
    n_latents: int
    n_vectors: int
    nmse: float
    nmse_train: float | None = None
    n_heldout: int | None = None
    l0: float | None = None
    dead_latents: int | None = None
    dead_fraction: float | None = None
    log_feature_density: float | None = None
    act_mean: float | None = None
    neighbour_overlap_at_10: float | None = None
    sample: dict[str, Any] | None = None
    """How the documents were sampled for evaluation on large corpora (None when all were used)."""


@dataclass
class TrainSummary(Record):
    """A training run: the SAE it made and its evaluation (None when it was not evaluated)."""

    sae: str
    metrics: Metrics | None = None


@dataclass
class InterpretSummary(Record):
    """What an interpret run did and how well its labels score."""

    sae: str
    labeller: str
    features: int
    alive: int
    interpreted: int
    skipped: int = 0
    failed: int = 0
    clean: int = 0
    seconds: float = 0.0
    mean_embedding_auc: float | None = None
    median_embedding_auc: float | None = None
    mean_embedding_auc_hard: float | None = None
    mean_description_auc: float | None = None
    mean_description_auc_hard: float | None = None
    single_phrase: float | None = None
    """Share of names that are one phrase (at most six words, not a list)."""
    distinct_names: float | None = None
    """Share of features whose name no other feature has (case, spacing and a plural "s" ignored)."""
    renamed: int | None = None
    """Features this run renamed because another had the same name."""
    mixtures: int | None = None
    mean_llm_f1: float | None = None
    mean_category_f1: float | None = None
    llm_usage: dict[str, Any] | None = None


@dataclass
class FamiliesSummary(Record):
    """A families run: how many families, their statistics and the files written."""

    sae: str
    families: int
    label_source: str | None = None
    stats: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    files: dict[str, str] = field(default_factory=dict)


@dataclass
class IndexSummary(Record):
    """An index build: its parts and their sizes (`parts` names them; each part's figures are under `details`)."""

    sae: str
    documents: int
    parts: list[str]
    seconds: float = 0.0
    backend: str = "embedded"
    details: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_build(cls, info: dict[str, Any]) -> IndexSummary:
        """The record of what `build_index` returned (index.json's content)."""
        parts = list(info.get("parts", []))
        return cls(sae=info["sae"], documents=int(info["documents"]), parts=parts,
                   seconds=float(info.get("seconds", 0.0)), backend=info.get("backend", "embedded"),
                   details={p: info[p] for p in parts if p in info})


@dataclass
class MapSummary(Record):
    """A map stage: the layouts it keeps (2-D, 3-D), those it computed (the others were up to date), seconds."""

    dims: list[int]
    computed: list[int]
    documents: int
    seconds: float = 0.0


@dataclass
class FileCheck(Record):
    """One file of a workspace and what reading it found."""

    path: str
    """The file, relative to the workspace."""
    ok: bool
    message: str = ""
    """Why it is damaged and how to make it again (empty when it reads well)."""


@dataclass
class JobProgress(Record):
    stage: str = ""
    done: int = 0
    total: int | None = None
    unit: str = ""
    message: str = ""
    fraction: float = 0.0


@dataclass
class JobRecord(Record):
    """A background job of the app: one run of a stage on a served workspace."""

    id: str
    workspace: str
    kind: str
    params: dict[str, Any]
    state: str
    """queued, running, done, failed or cancelled."""
    created: float
    started: float | None = None
    finished: float | None = None
    progress: JobProgress = field(default_factory=JobProgress)
    events: int = 0
    error: str | None = None
    result: dict[str, Any] | None = None
    cancel_requested: bool = False
