"""Where a workspace's search indexes are kept: one `IndexStore` per backend, behind one interface.

A store writes and opens the concept index of an SAE and the dense vectors' index. Two are built in:
``embedded`` (files of the workspace: saes/<name>/concept_index.npz, the workspace's own vectors and the
optional usearch index) and ``milvus`` (a Milvus collection, milvus.py). Retrievers never ask which backend
holds an index: building goes through the store of the build (`BuildContext.store`), searching through
`Storage`, which finds the store that holds each index. A new backend is a subclass registered with
`register_store` (embedsae.registry.INDEX_BACKENDS).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from ..errors import InputError, WorkspaceError
from ..registry import INDEX_BACKENDS
from .concept import FILE_NAME, ConceptIndex, ConceptStore, DocumentCodes, sae_arrays

if TYPE_CHECKING:
    from ..workspace import Workspace
    from .retriever import BuildContext

INDEX_DIR = "index"
BACKENDS = INDEX_BACKENDS
"""The storage backends by name (embedsae.registry.INDEX_BACKENDS): each an `IndexStore` class."""


def index_dir(ws: Workspace) -> Path:
    """WS/index/: the dense ANN index, the BM25 index and index.json."""
    return ws.path / INDEX_DIR


def index_info(ws: Workspace) -> dict[str, Any] | None:
    """What `build_index` wrote last (index.json), or None."""
    from ..integrity import read_json_object

    path = index_dir(ws) / "index.json"
    return read_json_object(path) if path.is_file() else None


def part_built(ws: Workspace, name: str) -> bool | None:
    """Whether the last `build_index` built a retriever's index (None when no index was ever built)."""
    info = index_info(ws)
    if info is None:
        return None
    parts = info.get("parts") or [k for k in ("dense", "concept", "bm25") if k in info]  # index.json before parts
    return name in parts


def concept_path(ws: Workspace, sae: str) -> Path:
    """Where the embedded concept index of an SAE lives: saes/<name>/concept_index.npz."""
    return ws.sae_dir(sae) / FILE_NAME


def folder_bytes(folder: Path) -> int:
    """Bytes of the files under a folder."""
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def store_class(backend: str) -> type[IndexStore]:
    """The store class of a backend, or an InputError naming the backends."""
    return INDEX_BACKENDS.get(backend)


def register_store(cls: type[IndexStore]) -> type[IndexStore]:
    """Register a storage backend under its `name` (usable as a decorator): `build_index(backend=name)` then writes
    to it, every Searcher finds the indexes it holds, and the CLI's --backend offers it."""
    if not cls.name:
        raise InputError(f"storage backend {cls.__name__} has no name")
    INDEX_BACKENDS.register(cls.name, cls)
    return cls


def unregister_store(name: str) -> None:
    """Remove a registered storage backend (tests register toys and take them away again)."""
    if name in ("embedded", "milvus"):
        raise InputError(f"the built-in storage backend '{name}' cannot be removed")
    INDEX_BACKENDS.unregister(name)


class IndexStore:
    """One backend's copy of a workspace's concept indexes (one per SAE) and dense vectors."""

    name: ClassVar[str] = ""

    def __init__(self, ws: Workspace) -> None:
        self.ws = ws

    @classmethod
    def check_build(cls, parts: Iterable[str], ann: bool) -> None:
        """Raise an InputError when this backend cannot build these parts."""

    # ------------------------------------------------------------------ the concept index
    def write_concept(self, ctx: BuildContext, docs: DocumentCodes, sae) -> dict[str, Any]:
        """Store an SAE's concept index from the documents' codes; other backends forget theirs; returns what
        index.json records."""
        info = self._write_concept(ctx, docs, sae)
        for other in INDEX_BACKENDS.names():
            if other != self.name:
                store_class(other)(self.ws).drop_concept(ctx.sae)
        return info

    def _write_concept(self, ctx: BuildContext, docs: DocumentCodes, sae) -> dict[str, Any]:
        raise NotImplementedError

    def has_concept(self, sae: str) -> bool:
        """Whether this backend holds the SAE's concept index."""
        raise NotImplementedError

    def concept(self, sae: str) -> ConceptStore:
        """The SAE's concept index, opened for search."""
        raise NotImplementedError

    def drop_concept(self, sae: str) -> None:
        """Forget this backend's concept index of the SAE (another backend now holds it)."""

    # ------------------------------------------------------------------ the dense vectors
    def write_dense(self, ctx: BuildContext) -> dict[str, Any]:
        """Store what dense search needs; returns what index.json records."""
        raise NotImplementedError

    def dense(self, ann: bool) -> tuple[Any, int]:
        """The dense index (with `search(queries, k)`) and its bytes."""
        raise NotImplementedError


class EmbeddedStore(IndexStore):
    """Files of the workspace: the concept index as .npz, the workspace's vectors, the optional usearch index."""

    name = "embedded"

    def _write_concept(self, ctx, docs, sae) -> dict[str, Any]:
        index = ConceptIndex.from_codes(docs.indices, docs.values, docs.n_latents, docs.norms, ctx.concept, ctx.sae,
                                        decoder=sae_arrays(sae), residual=docs.residual, progress=ctx.progress)
        path = concept_path(self.ws, ctx.sae)
        index.save(path)
        dense_bytes = int(self.ws.n_documents * self.ws.dim * 4)
        return {**index.describe(), "file_bytes": path.stat().st_size,
                "stored_vs_dense": round(index.stored_bytes / dense_bytes, 4),
                "memory_vs_dense": round(index.memory_bytes / dense_bytes, 4)}

    def has_concept(self, sae: str) -> bool:
        return concept_path(self.ws, sae).is_file()

    def concept(self, sae: str) -> ConceptIndex:
        index = ConceptIndex.load(concept_path(self.ws, sae))
        if index.n_docs != self.ws.n_documents:
            raise WorkspaceError(
                f"the concept index of '{sae}' covers {index.n_docs} documents but {self.ws.path} holds "
                f"{self.ws.n_documents}; rebuild the index of SAE '{sae}' (embedsae index)"
            )
        return index

    def drop_concept(self, sae: str) -> None:
        concept_path(self.ws, sae).unlink(missing_ok=True)

    def write_dense(self, ctx) -> dict[str, Any]:
        from .dense import AnnIndex

        info: dict = {"kind": "exact cosine over the workspace's vectors", "bytes": int(self.ws.n_documents * self.ws.dim * 4)}
        if ctx.ann:
            path = index_dir(self.ws) / "dense.usearch"
            AnnIndex.build(self.ws.vectors).save(path)
            info["ann"] = {"file": "index/dense.usearch", "bytes": path.stat().st_size}
        return info

    def dense(self, ann: bool) -> tuple[Any, int]:
        from .dense import AnnIndex, DenseIndex

        if ann:
            path = index_dir(self.ws) / "dense.usearch"
            return AnnIndex.load(path), path.stat().st_size if path.is_file() else 0
        normalized = bool(self.ws.manifest["model"].get("normalized", True))
        return DenseIndex(self.ws.vectors, normalized=normalized), int(self.ws.n_documents * self.ws.dim * 4)


class Storage:
    """The indexes of one workspace, wherever each is kept: what the retrievers of a Searcher open."""

    def __init__(self, ws: Workspace) -> None:
        self.ws = ws

    def concept_store(self, sae: str) -> IndexStore | None:
        """The store that holds the SAE's concept index (the embedded one first), or None."""
        for backend in INDEX_BACKENDS.names():
            store = store_class(backend)(self.ws)
            if store.has_concept(sae):
                return store
        return None

    def has_concept(self, sae: str) -> bool:
        return self.concept_store(sae) is not None

    def concept(self, sae: str) -> ConceptStore:
        """The SAE's concept index, or a WorkspaceError saying how to build it."""
        store = self.concept_store(sae)
        if store is None:
            raise WorkspaceError(f"no concept index at {concept_path(self.ws, sae)}; build it with: embedsae index "
                                 "WORKSPACE")
        return store.concept(sae)

    def dense(self, ann: bool) -> tuple[Any, int]:
        """The dense index of the last build's backend and its bytes."""
        info = index_info(self.ws) or {}
        return store_class(info.get("backend", "embedded"))(self.ws).dense(ann)

    def part_built(self, name: str) -> bool | None:
        return part_built(self.ws, name)
