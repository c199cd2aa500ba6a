"""Typed records: what `embedsae.Project` returns and every front end renders.

The CLI's `--json`, the HTTP API (its OpenAPI schema is generated from these classes) and the web templates all
show the same records, so a front end cannot ask for a key the library does not have: a score that was not
computed is `None` (shown as "–"), never a missing key. Records are plain dataclasses with no dependency beyond
the standard library; `to_dict()` gives their JSON form (NaN and infinities as null, numpy values as numbers).
"""

from __future__ import annotations

import dataclasses
import math
import typing
from dataclasses import InitVar, dataclass, field
from typing import Any, ClassVar, TypeVar

R = TypeVar("R", bound="Record")

INTERPRETED = "interpret"
"""`label_source` of names made by the interpret stage."""
KEYWORDS = "keywords"
"""`label_source` of the quick title keywords given to the features of an SAE that was never interpreted."""


def plain(value: Any) -> Any:
    """A JSON-ready copy: records and mappings as dicts, numpy scalars and arrays as numbers and lists, NaN and
    infinities as None."""
    if isinstance(value, Record):
        return value.to_dict()
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if hasattr(value, "tolist") and not isinstance(value, str | bytes):  # numpy arrays and scalars
        return plain(value.tolist())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


class Record:
    """Base of the records: JSON round trips that keep every field (None where there is no value)."""

    def to_dict(self) -> dict[str, Any]:
        return {f.name: plain(getattr(self, f.name)) for f in dataclasses.fields(self)}  # type: ignore[arg-type]

    @classmethod
    def from_dict(cls: type[R], data: dict[str, Any] | None) -> R:
        """A record from a mapping: unknown keys are ignored, nested records are built from their dicts."""
        data = data or {}
        hints = typing.get_type_hints(cls)
        kwargs = {}
        for f in dataclasses.fields(cls):  # type: ignore[arg-type]
            if f.name not in data or not f.init:
                continue
            kwargs[f.name] = _build(hints.get(f.name), data[f.name])
        return cls(**kwargs)


def _build(tp: Any, value: Any) -> Any:
    """`value` converted to type `tp` where `tp` is a record, a list of records or an optional record."""
    if value is None:
        return None
    origin = typing.get_origin(tp)
    if origin in (typing.Union, __import__("types").UnionType):
        inner = [a for a in typing.get_args(tp) if a is not type(None)]
        return _build(inner[0], value) if len(inner) == 1 else value
    if origin is list:
        (inner,) = typing.get_args(tp) or (Any,)
        return [_build(inner, v) for v in value]
    if isinstance(tp, type) and issubclass(tp, Record) and isinstance(value, dict):
        return tp.from_dict(value)
    return value


# ---------------------------------------------------------------------------- features
@dataclass
class FeatureScores(Record):
    """Every score a feature can have; None where the stage that computes it did not run or could not score it
    (e.g. coherence needs a few activating documents)."""

    embedding_auc: float | None = None
    """AUC of the name's embedding: held-out activating documents against random non-activating ones."""
    embedding_auc_hard: float | None = None
    """AUC of the name's embedding against hard negatives (non-activating documents near the activating ones)."""
    embedding_auc_combined: float | None = None
    """Mean of the two name AUCs (the sort order of "by score")."""
    description_auc: float | None = None
    """AUC of the description's embedding against random non-activating documents."""
    description_auc_hard: float | None = None
    """AUC of the description's embedding against hard negatives."""
    coherence: float | None = None
    """Mean cosine similarity between the feature's top documents."""
    mixture: bool | None = None
    """The activating documents form two clearly separate groups."""
    llm_f1: float | None = None
    """F1 of an LLM predicting from the label which held-out documents activate the feature."""
    llm_pearson: float | None = None
    """Pearson correlation of the LLM's predictions with the activations."""
    category_f1: float | None = None
    """F1 of the feature as a detector of its best corpus category (where the corpus has categories)."""
    category_precision: float | None = None
    category_recall: float | None = None

    TITLES: ClassVar[dict[str, str]] = {
        "embedding_auc": "AUC", "embedding_auc_hard": "AUC hard", "embedding_auc_combined": "AUC comb.",
        "description_auc": "descr. AUC", "description_auc_hard": "descr. hard", "coherence": "coherence",
        "mixture": "mixture", "llm_f1": "LLM F1", "llm_pearson": "LLM r", "category_f1": "cat. F1",
        "category_precision": "cat. P", "category_recall": "cat. R",
    }
    """Short column titles of the scores."""
    LISTED: ClassVar[tuple[str, ...]] = ("embedding_auc", "embedding_auc_hard", "description_auc", "coherence")
    """The scores a feature list shows as columns (a card shows them all)."""

    @classmethod
    def columns(cls, names: tuple[str, ...] | None = None) -> list[tuple[str, str, str]]:
        """(name, short title, help text) of each score, in order (all, or those of `names`)."""
        from .settings import field_docs

        docs = field_docs(cls)
        return [(n, cls.TITLES.get(n, n), docs.get(n, "")) for n in (names or cls.names())]

    @classmethod
    def names(cls) -> tuple[str, ...]:
        """The score names, in order (the columns of the feature table)."""
        return tuple(f.name for f in dataclasses.fields(cls))

    @classmethod
    def from_values(cls, values: dict[str, Any]) -> FeatureScores:
        """Scores from stored values: NaN and missing become None, `mixture` a bool."""
        out: dict[str, Any] = {}
        for name in cls.names():
            v = _number(values.get(name))
            if v is not None and name == "mixture":
                v = bool(v)
            out[name] = v
        return cls(**out)


@dataclass
class FeatureSummary(Record):
    """One row of the feature list: name, description, statistics and scores."""

    id: int
    label: str | None = None
    """The feature's name (one short phrase), None before it is labelled."""
    description: str | None = None
    """What the feature's documents share and what sets them apart (a sentence), where the labeller wrote one."""
    labeller: str | None = None
    label_source: str | None = None
    """"interpreted" for stored labels; else where a provisional name came from (e.g. title keywords)."""
    density: float | None = None
    """Share of the documents the feature fires on."""
    act_mean: float | None = None
    act_max: float | None = None
    n_active: int = 0
    """Documents the feature fires on."""
    category: str | None = None
    clean: bool = False
    """Passed the clean-feature filter."""
    scores: FeatureScores = field(default_factory=FeatureScores)


@dataclass
class HistogramRecord(Record):
    """An activation histogram: counts per bin and the bin edges (one more than the counts)."""

    counts: list[int] = field(default_factory=list)
    edges: list[float] = field(default_factory=list)


@dataclass
class DocumentRef(Record):
    """A document as a list shows it: its row in the workspace, id, title and an activation or score."""

    row: int
    id: str
    title: str
    activation: float | None = None


@dataclass
class FeatureCard(FeatureSummary):
    """Everything about one feature: its summary, histogram and top documents."""

    sae: str = ""
    histogram: HistogramRecord = field(default_factory=HistogramRecord)
    top_documents: list[DocumentRef] = field(default_factory=list)


@dataclass
class FeaturePage(Record):
    """One page of the feature list and how many features matched in all."""

    total: int
    offset: int
    items: list[FeatureSummary]
    sae: str = ""
    limit: int | None = None
    table: InitVar[Any] = None
    """The page as a pandas DataFrame (kept for export as `.table`; not part of the record's fields)."""

    def __post_init__(self, table: Any) -> None:
        self.table = table


@dataclass
class LabelHit(Record):
    """A feature found by label search."""

    id: int
    label: str
    description: str | None = None


@dataclass
class LabelSearch(Record):
    """The features whose name contains some text."""

    sae: str
    items: list[LabelHit]


@dataclass
class FeatureActivation(Record):
    """A feature firing on a text or a document: its id, name and activation."""

    id: int
    label: str
    activation: float


@dataclass
class TextActivations(Record):
    """A text's top features and the activations of the features asked for (by id, as text keys)."""

    text: str
    top_features: list[FeatureActivation]
    activations: dict[str, float] = field(default_factory=dict)


@dataclass
class ActivationsResponse(Record):
    """The features of given texts."""

    sae: str
    results: list[TextActivations]


@dataclass
class DocumentView(Record):
    """One document: its row, id, title, the start of its text and the features that fire on it."""

    row: int
    id: str
    title: str
    text: str
    features: list[FeatureActivation] = field(default_factory=list)


# ---------------------------------------------------------------------------- search
@dataclass
class HitConcept(Record):
    """A feature a hit shares with the query and its share of the hit's concept score."""

    feature: int
    label: str
    contribution: float
    share: float


@dataclass
class SearchHit(Record):
    """One ranked document."""

    rank: int
    id: str
    title: str
    score: float
    row: int | None = None
    concepts: list[HitConcept] | None = None
    """The shared concepts that explain the hit (None when explanations were not asked for or not available)."""


@dataclass
class SearchResponse(Record):
    """The hits of one query, with the steering report when it was steered."""

    query: str
    mode: str
    hits: list[SearchHit]
    seconds: float = 0.0
    sae: str | None = None
    steering: dict[str, Any] | None = None
    """The edits applied to the query's features and the cosine between the original and steered query."""
    query_features: list[FeatureActivation] | None = None
    """The query's active features (id, name, activation), when asked for (the steering sliders)."""


@dataclass
class RetrievalRow(Record):
    """One mode's figures on a retrieval benchmark (JSON keys as ranx names them: "ndcg@10", ...)."""

    mode: str
    queries: int
    ndcg_at_10: float
    mrr_at_10: float
    recall_at_100: float
    latency_ms: dict[str, float] = field(default_factory=dict)
    """Per-query ranking time, milliseconds: median and p95 (query embedding not included)."""
    query_embedding_ms: float = 0.0
    index_bytes: int = 0
    split: str = "test"
    documents: int = 0
    sae: str | None = None
    details: dict[str, Any] = field(default_factory=dict)
    """What else the mode reports (the hybrid's parts and fusion, ...)."""

    def to_dict(self) -> dict[str, Any]:
        out = {k.replace("_at_", "@"): v for k, v in super().to_dict().items() if k != "details"}
        return {**out, **plain(self.details)}

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> RetrievalRow:
        data = {k.replace("@", "_at_"): v for k, v in (data or {}).items()}
        known = {f.name for f in dataclasses.fields(cls)}
        extra = {k.replace("_at_", "@"): v for k, v in data.items() if k not in known}
        return cls(**{k: v for k, v in data.items() if k in known and k != "details"}, details=extra)


# ---------------------------------------------------------------------------- stages
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
    """Share of names that are one phrase (not a mixture "A / B")."""
    distinct_names: float | None = None
    """Share of features whose name no other feature has."""
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


def _number(v: Any) -> float | None:
    if v is None:
        return None
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return None if not math.isfinite(f) else round(f, 6)
