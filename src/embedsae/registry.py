"""Registries: the named plug-ins of each kind (SAE architectures, labellers, retrievers, run stages, embedding
backends), all built one way.

A registry maps a name to an object or to a "module:attribute" string that is imported on first use, so listing
the names (for `--help`, a form's choices, validation) imports nothing heavy: the built-in architectures are
listed without importing torch. Each entry may carry facts known without importing it (`info`, e.g. whether an
architecture supports pursuit). Registering makes a plug-in appear everywhere that lists the registry: the CLI's
choices, the app's forms and the API's schema.

    from embedsae.registry import RETRIEVERS
    RETRIEVERS.register("mine", "mypackage.search:MyRetriever")
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from .errors import InputError

T = TypeVar("T")


class Registry(Generic[T]):
    """Named plug-ins of one kind; built-ins first, in the order given, then those registered later."""

    def __init__(self, kind: str, builtin: dict[str, str], info: dict[str, dict[str, Any]] | None = None) -> None:
        self.kind = kind
        """What an entry is, as error messages name it ("search mode", "labeller", ...)."""
        self._entries: dict[str, T | str] = dict(builtin)
        self._info: dict[str, dict[str, Any]] = {name: dict(v) for name, v in (info or {}).items()}
        self._lock = threading.Lock()

    @property
    def _a(self) -> str:
        """The kind with its article ("a labeller", "an index backend")."""
        return f"{'an' if self.kind[:1] in 'aeiou' else 'a'} {self.kind}"

    def register(self, name: str, obj: T | str, *, replace: bool = False, **info: Any) -> T | str:
        """Add `obj` (or a "module:attribute" string naming it) under `name`; `info` holds facts about it that
        callers read without importing it. Registering a name again needs `replace=True` unless it is the
        same object."""
        if not name or not isinstance(name, str):
            raise InputError(f"{self._a} needs a non-empty name to be registered")
        with self._lock:
            old = self._entries.get(name)
            if old is not None and old is not obj and not replace and not isinstance(old, str):
                raise InputError(f"{self._a} named '{name}' is already registered")
            self._entries[name] = obj
            self._info[name] = {**(self._info.get(name, {}) if replace or old is None else {}), **info}
        return obj

    def unregister(self, name: str) -> None:
        """Remove an entry (tests register toys and take them away again)."""
        with self._lock:
            self._entries.pop(name, None)
            self._info.pop(name, None)

    def names(self) -> tuple[str, ...]:
        """Every registered name, built-ins first (nothing is imported)."""
        return tuple(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def check(self, name: str) -> str:
        """`name` when registered, else an InputError listing the names."""
        if name not in self._entries:
            raise InputError(f"unknown {self.kind} '{name}'; use one of {', '.join(self._entries)}")
        return name

    def get(self, name: str) -> T:
        """The registered object (imported on first use), or an InputError listing the names."""
        entry = self._entries.get(self.check(name))
        if isinstance(entry, str):
            module, _, attr = entry.partition(":")
            obj = getattr(importlib.import_module(module), attr)
            with self._lock:
                if self._entries.get(name) == entry:
                    self._entries[name] = obj
            return obj
        return entry  # type: ignore[return-value]

    def info(self, name: str) -> dict[str, Any]:
        """The facts registered with an entry (empty when none were given)."""
        self.check(name)
        return dict(self._info.get(name, {}))

    def load_all(self) -> dict[str, T]:
        """Every entry, imported."""
        return {name: self.get(name) for name in self.names()}


ARCHITECTURES: Registry[Any] = Registry("SAE architecture", {
    "topk": "embedsae.sae.topk:TopKSAE",
    "batchtopk": "embedsae.sae.batchtopk:BatchTopKSAE",
    "relu": "embedsae.sae.relu:ReLUSAE",
}, info={"topk": {"supports_pursuit": True}, "batchtopk": {"supports_pursuit": False},
         "relu": {"supports_pursuit": False}})
"""SAE classes by architecture name (`embedsae.sae.register_architecture` adds one; info: supports_pursuit)."""

LABELLERS: Registry[Any] = Registry("labeller", {
    "keywords": "embedsae.interpret.keywords:make_keyword_labeller",
    "llm": "embedsae.interpret.llm:make_llm_labeller",
})
"""Labeller factories by name: each builds a labeller from a run's `LabelContext`
(`embedsae.interpret.labellers.register_labeller` adds one)."""

RETRIEVERS: Registry[Any] = Registry("search mode", {
    "dense": "embedsae.search.dense:DenseRetriever",
    "concept": "embedsae.search.concept:ConceptRetriever",
    "hybrid": "embedsae.search.hybrid:HybridRetriever",
    "bm25": "embedsae.search.lexical:BM25Retriever",
})
"""Retriever classes by search mode, in the order modes are listed (`embedsae.search.register_retriever` adds
one)."""

RUN_STAGES: Registry[Any] = Registry("run stage", {
    "interpret": "embedsae.interpret.stage:run_stage",
    "families": "embedsae.structure.stage:families_stage",
    "index": "embedsae.search.stage:index_stage",
    "map": "embedsae.viz.map:run_stage",
})
"""The stages `embedsae run` calls after training, in order: each takes (workspace, sae_name, progress=...)."""

@dataclass(frozen=True)
class EngineSpec:
    """An engine that runs a sentence-transformers model: the packages it needs and the extra that installs them."""

    packages: tuple[str, ...] = ()
    extra: str | None = None


EMBEDDING_BACKENDS: Registry[EngineSpec] = Registry("embedding backend", {})
"""The engines that run a sentence-transformers model on CPU ("auto" picks among them: data/backends.py)."""
EMBEDDING_BACKENDS.register("torch", EngineSpec())
EMBEDDING_BACKENDS.register("onnx", EngineSpec(("onnxruntime",), "fast"))
EMBEDDING_BACKENDS.register("openvino", EngineSpec(("openvino",), "fast"))


@dataclass(frozen=True)
class FormatSpec:
    """A file format of other tools' SAEs: what it is."""

    help: str


SAE_FORMATS: Registry[FormatSpec] = Registry("SAE format", {})
"""The formats `import-sae` reads (embedsae.interop.formats reads each)."""
EXPORT_FORMATS: Registry[FormatSpec] = Registry("export format", {})
"""The formats `export` writes (embedsae.interop.transfer writes each)."""
for _name, _help in (("saerch", "the .pth files of O'Neill et al. ({domain}_{k}_{n}_{auxk}.pth)"),
                     ("saelens", "a SAELens folder (cfg.json, sae_weights.safetensors)"),
                     ("sparsify", "a sparsify folder (cfg.json, sae.safetensors)"),
                     ("embedsae", "an embedsae SAE folder (cfg.json, sae.safetensors)")):
    SAE_FORMATS.register(_name, FormatSpec(_help))
    if _name != "saerch":
        EXPORT_FORMATS.register(_name, FormatSpec(_help))
EXPORT_FORMATS.register("sentence-transformers", FormatSpec("the embedding model and the SAE as one SparseEncoder"))

INDEX_BACKENDS: Registry[Any] = Registry("index backend", {
    "embedded": "embedsae.search.storage:EmbeddedStore",
    "milvus": "embedsae.search.milvus:MilvusStore",
})
"""Where the concept index (and, with Milvus, the dense vectors) lives: the `IndexStore` class of each backend,
files of the workspace or a Milvus collection (`embedsae.search.storage.register_store` adds one)."""
