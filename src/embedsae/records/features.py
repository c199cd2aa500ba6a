"""Records of features: scores, summaries, cards, pages, label hits, activations and documents."""

from __future__ import annotations

import dataclasses
from dataclasses import InitVar, dataclass, field
from typing import Any, ClassVar

from .base import Record, number


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
        from ..settings import field_docs

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
            v = number(values.get(name))
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
