"""The retriever registry: every search mode is one `Retriever` registered by name.

A retriever builds its index into the workspace (`build`), reads it back (`load`), ranks documents for
one query (`rank`) and says how many bytes its index takes (`size`). The Searcher, `build_index` and
`evaluate_retrieval` all read the registry, so a new mode is one new file with a `Retriever` subclass
plus one registration: a line in `embedsae.registry.RETRIEVERS` for a built-in, or `register_retriever(MyRetriever)`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from ..errors import InputError
from ..registry import RETRIEVERS

if TYPE_CHECKING:
    from ..progress import ProgressCallback
    from ..workspace import Workspace
    from .concept import ConceptSettings
    from .milvus import MilvusSettings
    from .searcher import Searcher
    from .storage import IndexStore



@dataclass
class Query:
    """One query as the retrievers see it: its text (None for a vector query) and its (possibly steered) vector."""

    text: str | None
    vector: np.ndarray | None


@dataclass
class BuildContext:
    """What building an index needs: the workspace, the SAE, the concept settings and a progress callback."""

    ws: Workspace
    sae: str
    concept: ConceptSettings
    ann: bool = False
    """Also build the approximate dense index."""
    progress: ProgressCallback | None = None
    cache: dict[str, Any] = field(default_factory=dict)
    """Shared between the retrievers of one build (e.g. the loaded SAE)."""
    parts: tuple[str, ...] = ()
    """The retrievers this build builds."""
    backend: str = "embedded"
    """Where the concept index and dense vectors go: "embedded" (files in the workspace) or "milvus"."""
    milvus: MilvusSettings | None = None
    """Where in Milvus, for the Milvus backend."""
    store: IndexStore | None = None
    """The backend's store, which writes the concept index and the dense vectors' index."""


class Retriever:
    """One search mode. Subclasses set `name` and implement `rank`; those that keep an index also implement
    `build`, `load` and `size`. One instance serves one Searcher; `load` runs once, on first use."""

    name: ClassVar[str] = ""
    needs_text: ClassVar[bool] = False
    """Ranks from the query text (BM25); a vector-only query cannot use it."""
    needs_vector: ClassVar[bool] = True
    """Ranks from the query vector (dense, concept)."""
    fusable: ClassVar[bool] = True
    """May be a part of the hybrid."""
    index_part: ClassVar[bool] = True
    """Has an index of its own that `build_index` builds (the hybrid has none)."""

    def __init__(self, searcher: Searcher) -> None:
        self.searcher = searcher

    @classmethod
    def build(cls, ctx: BuildContext) -> dict[str, Any] | None:
        """Write this retriever's index into the workspace; return what index.json records about it."""
        return None

    def load(self) -> None:
        """Read the index (raise WorkspaceError naming what to build when it is missing)."""

    def rank(self, query: Query, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-k document rows and scores, best first."""
        raise NotImplementedError

    def size(self) -> int:
        """Bytes of the index this mode searches."""
        return 0

    def available(self) -> bool:
        """Whether this mode can search the workspace as it is indexed (evaluation of all modes skips the rest)."""
        return True


def register_retriever(cls: type[Retriever], *, replace: bool = False) -> type[Retriever]:
    """Register a retriever class under its `name` (usable as a decorator): it becomes a search mode everywhere
    (the CLI's --mode choices, the app's mode menu, the API's schema, `eval-retrieval --mode all`)."""
    if not cls.name:
        raise InputError(f"retriever {cls.__name__} has no name")
    RETRIEVERS.register(cls.name, cls, replace=replace)
    return cls


def unregister_retriever(name: str) -> None:
    """Remove a registered retriever (tests register toys and take them away again)."""
    RETRIEVERS.unregister(name)


def retriever_names() -> tuple[str, ...]:
    """The names of every registered search mode, built-ins first."""
    return RETRIEVERS.names()


def retriever_class(name: str) -> type[Retriever]:
    """The retriever registered under `name`, or an InputError listing the modes."""
    return RETRIEVERS.get(name)
