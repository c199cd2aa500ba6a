"""Request bodies of the HTTP API and the bounds on every input (each bound answers a clear 4xx when crossed)."""

from __future__ import annotations

import math
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator

from ..registry import RETRIEVERS
from ..search.steering import MAX_VALUE
from ..stages import SAE_NAME_PATTERN

MAX_QUERY_CHARS = 1000
"""Longest search query, in characters."""
MAX_TOP = 100
"""Most hits, examples or neighbours one request returns."""
MAX_EDITS = 32
"""Most steering edits in one search."""
MAX_TEXTS = 16
"""Most texts in one "activations on given texts" request."""
MAX_TEXT_CHARS = 5000
"""Longest text for "activations on given texts"."""
MAX_PAGE = 500
"""Largest page of the feature list."""
MAX_GROUPS_CHARS = 20000
"""Longest concept-groups text."""
MAX_STEER_VALUE = MAX_VALUE
"""Largest absolute steering value (the library's bound, embedsae.search.steering.MAX_VALUE)."""

SAE_NAME = SAE_NAME_PATTERN


def registered_mode(mode: str) -> str:
    """`mode` when it is a registered search mode (checked when the request arrives, so plug-ins count)."""
    if mode not in RETRIEVERS:
        raise ValueError(f"unknown search mode '{mode[:40]}'; use one of {', '.join(RETRIEVERS)}")
    return mode


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _finite(v: float) -> float:
    if not math.isfinite(v):
        raise ValueError("must be a finite number")
    return v


class SteerEdit(Strict):
    """One edit of a query feature: set its activation to `value` (op "set") or add `value` to it (op "add")."""

    feature: int | None = Field(None, ge=0, description="The feature id (give this or `label`).")
    label: str | None = Field(None, min_length=1, max_length=200,
                              description="A feature label (exact, then substring match), instead of an id.")
    value: float = Field(..., ge=-MAX_STEER_VALUE, le=MAX_STEER_VALUE,
                         description="The new activation (op set, 0 removes the feature) or the change (op add).")
    op: Literal["set", "add"] = "set"

    _v = field_validator("value")(_finite)

    @model_validator(mode="after")
    def _one_target(self) -> SteerEdit:
        if (self.feature is None) == (self.label is None):
            raise ValueError("give exactly one of `feature` (an id) or `label` (label text)")
        if self.label is not None and any(c in self.label for c in '="\''):
            raise ValueError("a label to steer by may not contain '=' or quotes; use the feature id instead")
        if self.op == "set" and self.value < 0:
            raise ValueError("a set activation cannot be negative (activations are 0 or more); use op 'add' to lower it")
        return self

    def spec(self) -> str:
        """The searcher's spec string for this edit ("ID=VALUE", "ID=+X", '"label"=-X')."""
        target = str(self.feature) if self.feature is not None else f'"{self.label}"'
        value = f"{self.value:+.6g}" if self.op == "add" else f"{self.value:.6g}"
        return f"{target}={value}"


class SearchRequest(Strict):
    """A search: query text, mode, number of hits, optional steering edits."""

    query: str = Field(..., min_length=1, max_length=MAX_QUERY_CHARS, description="The query text.")
    mode: Annotated[str, AfterValidator(registered_mode)] = Field(
        "dense", description="A registered search mode (embedsae.registry.RETRIEVERS): dense, concept, hybrid, bm25, ...")
    top: int = Field(10, ge=1, le=MAX_TOP, description="How many hits.")
    steer: list[SteerEdit] = Field(default_factory=list, max_length=MAX_EDITS,
                                   description="Feature edits applied to the query before ranking.")
    explain: bool = Field(True, description="Add to each hit the concepts it shares with the query.")
    query_features: bool = Field(False, description="Also return the query's active features (for sliders).")
    sae: str | None = Field(None, pattern=SAE_NAME, description="The SAE (default: the workspace's latest).")

    @field_validator("query")
    @classmethod
    def _not_blank(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("the query is empty; give some words to search for")
        if "\x00" in v:
            raise ValueError("the query contains a NUL character")
        return v


class ActivationsRequest(Strict):
    """Texts to embed and encode: each text's top features, and the activations of the features asked for."""

    texts: list[Annotated[str, Field(min_length=1, max_length=MAX_TEXT_CHARS)]] = Field(
        ..., min_length=1, max_length=MAX_TEXTS)
    features: list[Annotated[int, Field(ge=0)]] = Field(default_factory=list, max_length=MAX_TOP,
                                                        description="Feature ids whose activation to report.")
    top: int = Field(10, ge=1, le=MAX_TOP, description="How many of each text's top features.")
    sae: str | None = Field(None, pattern=SAE_NAME)

    @field_validator("texts")
    @classmethod
    def _texts(cls, v: list[str]) -> list[str]:
        for i, t in enumerate(v):
            if not t.strip() or "\x00" in t:
                raise ValueError(f"text {i} is empty or contains a NUL character")
        return v


class GroupsRequest(Strict):
    """Concept groups: `Group: w1, w2, ...` lines (or a mapping group -> words), or a corpus column whose values
    group the documents (give one of the two)."""

    groups: str | dict[Annotated[str, Field(min_length=1, max_length=100)],
                       list[Annotated[str, Field(min_length=1, max_length=100)]]] | None = Field(
        None, description="`Group: w1, w2` lines, or {group: [words]}.")
    column: str | None = Field(None, min_length=1, max_length=200,
                               description="A corpus column: each value (e.g. a category) is a group of documents.")
    sae: str | None = Field(None, pattern=SAE_NAME)

    @field_validator("groups")
    @classmethod
    def _size(cls, v):
        if v is None:
            return v
        size = len(v) if isinstance(v, str) else sum(len(g) + sum(len(w) for w in ws) for g, ws in v.items())
        if size > MAX_GROUPS_CHARS:
            raise ValueError(f"the groups are {size} characters long; the limit is {MAX_GROUPS_CHARS}")
        if isinstance(v, dict) and len(v) > 200:
            raise ValueError("at most 200 groups")
        return v

    @model_validator(mode="after")
    def _one_source(self):
        if (self.groups is None) == (self.column is None):
            raise ValueError("give exactly one of `groups` (Group: word lines) or `column` (a corpus column)")
        return self


class ConceptsRequest(GroupsRequest):
    """Concept groups scored against the features, next to the raw-dimension / PCA / ICA baselines."""

    baselines: list[Literal["raw", "pca", "ica"]] = Field(default_factory=lambda: ["raw", "pca"], max_length=3)
