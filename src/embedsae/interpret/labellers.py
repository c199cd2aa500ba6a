"""The labeller protocol and registry.

A labeller turns the selected examples of a batch of features into labels: per feature a name (one phrase of
at most six words) and, optionally, a description (a sentence of at most 30 words). Every labeller implements
`Labeller`; `interpret()` looks one up by name in `LABELLERS` and builds it once per run from the run's
`LabelContext`. Adding a labeller is one new module with a factory plus one `register_labeller` line:

    from embedsae.interpret.labellers import register_labeller

    class ShoutingLabeller:
        name = "shout"
        def label_batch(self, examples, context):
            return [(context.texts[ex.top[0]].split()[0].upper(), {}) for ex in examples]

    register_labeller("shout", lambda context: ShoutingLabeller())

Built-in labellers are listed in `embedsae.registry.LABELLERS` as "module:function" strings, imported only
when used.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

from ..registry import LABELLERS

if TYPE_CHECKING:
    from ..data.vectors import UnitRows
    from ..progress import ProgressCallback
    from ..workspace import Workspace
    from .examples import FeatureExamples
    from .keywords import PhraseEmbeddings
    from .llm import LLMConfig


@dataclass
class Label:
    """A feature's label: its name, its description (None when the labeller gives none) and details (candidates,
    scores, the model's answer) kept in the feature store."""

    name: str | None
    description: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)


LabelResult = Label | tuple[str | None, dict[str, Any]] | None
"""What a labeller returns per feature: a `Label` (or a (name, detail) pair, a label without description); a
name of None when it could not label the feature (stored as failed); or None when it did not get to the feature
(left for the next run)."""

MAX_NAME_WORDS = 6
"""Longest name, in words."""
MAX_DESCRIPTION_WORDS = 30
"""Longest description, in words."""


_LIST = re.compile(r"[,;/:]|\s(?:and|or|&)\s", re.IGNORECASE)


def is_one_phrase(name: str) -> bool:
    """Whether a name is one phrase: 1 to MAX_NAME_WORDS words, no list ("A, B", "A and B", "A / B", "mixed: A")."""
    return 1 <= len(name.split()) <= MAX_NAME_WORDS and not _LIST.search(name)


def as_label(result: LabelResult) -> Label | None:
    """A labeller's result for one feature as a `Label` (None stays None), name and description cut to their
    lengths (MAX_NAME_WORDS, MAX_DESCRIPTION_WORDS)."""
    if result is None:
        return None
    lab = result if isinstance(result, Label) else Label(result[0], None, dict(result[1] or {}))
    name = " ".join(lab.name.split()[:MAX_NAME_WORDS]) if lab.name else None
    desc = lab.description
    if desc:
        words = desc.split()
        desc = " ".join(words[:MAX_DESCRIPTION_WORDS])
        if len(words) > MAX_DESCRIPTION_WORDS:
            desc = desc.rstrip(",;:") + "…"
    return Label(name or None, desc or None, lab.detail)


@dataclass
class LabelContext:
    """What a run gives its labeller: the workspace, the SAE and the shared, expensive pieces."""

    ws: Workspace
    sae: str
    texts: list[str]
    """The corpus texts, by document row."""
    doc_vectors: np.ndarray | UnitRows
    """Unit-norm document embeddings, by document row (read block by block when the corpus is large)."""
    phrase_emb: PhraseEmbeddings
    """Embeddings of phrases and labels, shared with the scorers (each phrase embedded once)."""
    llm: LLMConfig | None = None
    """The chat model (an endpoint or a local model), for labellers and scorers that need one."""
    store: Any = None
    """The run's FeatureStore (LLM labellers cache responses in it)."""
    chat: Any = None
    """The run's chat client (`llm.make_chat_client`) when an LLM is configured (shared by labeller and scorer)."""
    progress: ProgressCallback | None = None
    options: dict[str, Any] = field(default_factory=dict)
    """Labeller-specific options passed to `interpret(..., labeller_options=)`."""


@runtime_checkable
class Labeller(Protocol):
    """Labels features from their examples."""

    name: str
    """The labeller's name as stored with each label (e.g. "keywords", "llm:gpt-4o-mini")."""
    # A labeller may also carry `version` (a string, stored with each label): features labelled by another
    # version, or by one from before versions were stored, are labelled again by the next run (see
    # `labeller_version`); bump it whenever what the labeller writes changes.

    def label_batch(self, examples: Sequence[FeatureExamples], context: LabelContext) -> list[LabelResult]:
        """One result per feature of the batch, in order (see `LabelResult`)."""
        ...


class LabellingStopped(Exception):
    """Raised by a labeller that has to stop mid-batch (an endpoint that went away): carries the results it did
    make, which the stage stores before re-raising `cause`."""

    def __init__(self, results: list[LabelResult], cause: Exception) -> None:
        super().__init__(str(cause))
        self.results = results
        self.cause = cause


LabellerFactory = Callable[[LabelContext], Labeller]

def register_labeller(name: str, factory: LabellerFactory | str, *, replace: bool = True) -> None:
    """Make a labeller available to `interpret(labeller=name)`, the CLI's --labeller and the app's interpret form."""
    LABELLERS.register(name, factory, replace=replace)


def labeller_names() -> tuple[str, ...]:
    """The registered labellers, built-ins first."""
    return LABELLERS.names()


def labeller_version(labeller: Labeller) -> str | None:
    """The version a labeller stamps on its labels (None for a labeller that has none)."""
    version = getattr(labeller, "version", None)
    return None if version is None else str(version)


def make_labeller(name: str, context: LabelContext) -> Labeller:
    """Build the labeller registered as `name` for one run."""
    labeller = LABELLERS.get(name)(context)
    if not isinstance(labeller, Labeller):
        raise TypeError(f"labeller factory '{name}' returned {type(labeller).__name__}, which has no name and "
                        "label_batch(examples, context)")
    return labeller
