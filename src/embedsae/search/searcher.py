"""The search API: one object that serves dense, concept, BM25 and hybrid search with steering and explanations."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import DamagedFileError, EmbedSAEError, InputError
from ..workspace import Workspace
from .hybrid import HybridSettings
from .retriever import Query, Retriever, retriever_class, retriever_names
from .steering import Steering
from .storage import Storage

QUERY_GRAM_MAX_BYTES = 128 * 2**20
"""Largest decoder Gram matrix (n_latents^2 float32, ~5,800 latents) a Searcher keeps for encoding queries."""


@dataclass
class SearchResult:
    """Ranked hits of one query, with the steering report when the query was steered."""

    query: str
    mode: str
    hits: list[dict[str, Any]]
    steering: dict[str, Any] | None = None
    seconds: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out = {"query": self.query, "mode": self.mode, "hits": self.hits, "seconds": round(self.seconds, 5)}
        if self.steering is not None:
            out["steering"] = self.steering
        return {**out, **self.extra}


class Searcher:
    """Search a workspace's documents in any registered mode (`embedsae.search.retriever`). Indexes load on first
    use; `embedsae index` must have run for the concept and BM25 modes (dense search needs only the embeddings).
    One Searcher may serve many threads at once."""

    def __init__(
        self,
        ws: Workspace | str,
        sae: str | None = None,
        *,
        embedder=None,
        ann: bool = False,
        fusion: str | None = None,
        weights: Mapping[str, float] | str | None = None,
        rrf_k: float | None = None,
        depth: int | None = None,
        hybrid: HybridSettings | None = None,
        parts: Any = None,
    ) -> None:
        """`parts`: where the SAE, its name, labels and titles come from when they are cached elsewhere (an
        `embedsae.Project`, which keeps them current when a stage rewrites them); else this Searcher loads them."""
        self.ws = ws if isinstance(ws, Workspace) else Workspace.open(ws)
        self._parts = parts
        given = {k: v for k, v in {"fusion": fusion, "weights": weights, "rrf_k": rrf_k, "depth": depth}.items()
                 if v is not None}
        self.hybrid = (hybrid or HybridSettings()).replace(**given) if given else (hybrid or HybridSettings())
        self.ann = ann
        self.storage = Storage(self.ws)
        """Where each of the workspace's indexes is kept (the embedded files, Milvus)."""
        self._sae_name = sae
        self._embedder = embedder
        self._batcher = None
        self._query_encodes = 0
        self._cache: dict[str, Any] = {}
        self._retrievers: dict[str, Retriever] = {}
        self._lock = threading.RLock()

    # ------------------------------------------------------------------ lazy parts
    def _cached(self, key: str, make):
        value = self._cache.get(key)
        if value is None:
            with self._lock:
                value = self._cache.get(key)
                if value is None:
                    value = self._cache[key] = make()
        return value

    @property
    def sae_name(self) -> str:
        if self._parts is not None:
            return self._parts.sae_name
        return self._cached("sae_name", lambda: self.ws.resolve_sae(self._sae_name))

    @property
    def sae(self):
        if self._parts is not None:
            return self._parts.sae
        return self._cached("sae", lambda: self.ws.load_sae(self.sae_name))

    def query_sae(self):
        """The SAE for encoding query vectors one at a time (steering, activations of texts). From a Searcher's
        second such use on, a pursuit encoder keeps its decoder Gram matrix when it is small
        (QUERY_GRAM_MAX_BYTES): the encoder builds it only for large batches, and without it each query computes
        its candidates' Gram (with the compiled pursuit kernel, one arXiv query vector, k 32 / 3,072 latents:
        24-46 ms without it, 1.1-1.5 ms with it, same code). A one-off query does not pay for building it."""
        sae = self.sae
        self._query_encodes += 1
        n = int(sae.cfg.n_latents)
        if (self._query_encodes >= 2 and getattr(sae.cfg, "pursuit", 0) and hasattr(sae, "decoder_gram")
                and n * n * 4 <= QUERY_GRAM_MAX_BYTES):
            with self._lock:
                sae.decoder_gram(build=True)  # built once; later calls find it current
        return sae

    def retriever(self, mode: str) -> Retriever:
        """The loaded retriever of a mode (loading its index on first use)."""
        r = self._retrievers.get(mode)
        if r is None:
            cls = retriever_class(mode)
            with self._lock:
                r = self._retrievers.get(mode)
                if r is None:
                    r = cls(self)
                    r.load()
                    self._retrievers[mode] = r
        return r

    def available(self, mode: str) -> bool:
        """Whether a mode can search this workspace as it is indexed."""
        if mode in self._retrievers:
            return True
        try:
            return retriever_class(mode)(self).available()
        except EmbedSAEError:  # e.g. no SAE trained yet: the concept mode is not available
            return False

    def modes(self) -> list[str]:
        """The registered modes this workspace can be searched in."""
        return [m for m in retriever_names() if self.available(m)]

    @property
    def fusion(self) -> str:
        return self.hybrid.fusion

    @property
    def concept(self):
        """The concept index (a ConceptStore: embedded or in Milvus) of this Searcher's SAE."""
        return self.retriever("concept").index

    @property
    def dense(self):
        return self.retriever("dense").index

    @property
    def lexical(self):
        return self.retriever("bm25").index

    @property
    def labels(self) -> dict[int, str]:
        """Feature id -> label, as every view shows them (embedsae.interpret.feature_labels)."""
        from ..interpret import feature_labels

        if self._parts is not None:
            return self._parts.labels
        return self._cached("labels", lambda: feature_labels(self.ws, self.sae_name))

    def concept_query(self, vector: np.ndarray):
        """The query in the concept index's terms (latents, weights)."""
        return self.retriever("concept").encode(vector)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Query vectors, made by the workspace's embedding model; concurrent callers share forward passes
        (`embedsae.search.batching`)."""
        return self.submit_embed(texts).result()

    def submit_embed(self, texts: Sequence[str]) -> Future:
        """A future of `embed(texts)`, for callers that wait without holding a thread (e.g. an async server)."""
        if self._batcher is None:
            with self._lock:
                if self._batcher is None:
                    from .batching import BatchingEmbedder

                    self._batcher = BatchingEmbedder(lambda: self._embedder or self.ws.embedder())
        return self._batcher.submit(texts)

    def steering(self, specs: Sequence[str], form: str = "residual") -> Steering:
        """A Steering object from specs (ID=VALUE or "label"=VALUE), labels resolved against this SAE's
        interpreted labels (not the quick keyword labels of an SAE never interpreted)."""
        labels = self.labels if getattr(self.labels, "interpreted", True) else {}
        return Steering.from_specs(specs, self.sae, labels=labels, embed=self.embed, form=form)

    # ------------------------------------------------------------------ ranking
    @contextmanager
    def single_thread(self) -> Iterator[None]:
        """A context in which BLAS and torch run on one thread (see `embedsae.threads`): every ranking and every
        SAE encoding of a query runs in it (the pursuit encoder of one query vector: 102 ms with torch's two
        threads on a busy 2-core machine, 26 ms on one)."""
        from ..threads import blas_single_thread, torch_single_thread

        with blas_single_thread(), torch_single_thread():
            yield

    def rank(self, mode: str, vector: np.ndarray | None, text: str | None, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-k document rows and scores for one query (the vector for dense/concept, the text for BM25)."""
        cls = retriever_class(mode)
        if cls.needs_text and text is None:
            raise InputError(f"{mode} search needs the query text, not only a vector")
        retriever = self.retriever(mode)
        with self.single_thread():
            return retriever.rank(Query(text, vector), k)

    # ------------------------------------------------------------------ the public call
    def search(
        self,
        query: str | np.ndarray,
        mode: str = "dense",
        top: int = 10,
        *,
        steer: Steering | Sequence[str] | None = None,
        steer_form: str = "residual",
        explain: bool = True,
        vector: np.ndarray | None = None,
    ) -> SearchResult:
        """Ranked hits for a query text (or vector), optionally steered, each hit with its shared concepts.

        `vector`: the text's query vector when the caller has embedded it already (`embed`)."""
        if top <= 0:
            raise InputError(f"the number of hits, `top`, must be positive, got {top}")
        cls = retriever_class(mode)
        text = query if isinstance(query, str) else None
        if text is not None and not text.strip():
            raise InputError("the query is empty; give some words to search for")
        if isinstance(steer, str):
            steer = [steer]
        if steer is not None and not isinstance(steer, Steering):
            steer = self.steering(list(steer), steer_form) if len(steer) else None
        if steer and not cls.needs_vector:
            vector_modes = [m for m in retriever_names() if retriever_class(m).needs_vector]
            raise InputError(f"steering edits SAE features of the query vector; {mode} search reads only the text: "
                             f"search in a mode that reads the vector ({', '.join(vector_modes)})")
        t0 = time.perf_counter()
        if text is None or vector is not None:
            vector = self._check_vector(query if text is None else vector)
        elif cls.needs_vector or (explain and self.ws.can_embed):
            vector = self.embed([text])[0]  # a workspace of precomputed vectors explains text queries without it
        report = None
        if steer:
            with self.single_thread():
                res = steer.apply(self.query_sae(), vector, self.labels)
            vector, report = res.vector, res.to_dict()
            self._add_typical(report["changes"])
        rows, scores = self.rank(mode, vector, text, top)
        seconds = time.perf_counter() - t0
        with self.single_thread():
            hits = self._hits(rows, scores, vector if explain else None)
        return SearchResult(text if text is not None else "<vector>", mode, hits, report, seconds)

    def _check_vector(self, query: Any) -> np.ndarray:
        vector = np.asarray(query, np.float32).reshape(-1)
        if vector.shape != (self.ws.dim,) or not np.isfinite(vector).all():
            raise InputError(f"a query vector must hold {self.ws.dim} finite numbers (the workspace's dimension); "
                             f"got shape {vector.shape}")
        return vector

    def _add_typical(self, changes: list[dict[str, Any]]) -> None:
        """Each changed feature's largest activation over the documents, the scale for edit values."""
        try:
            index = self.concept
        except DamagedFileError:
            raise
        except EmbedSAEError:
            return
        for c in changes:
            doc_max, share = index.feature_stats(c["feature"])
            c["doc_max"], c["doc_share"] = round(doc_max, 5), round(share, 5)

    def _hits(self, rows: np.ndarray, scores: np.ndarray, vector: np.ndarray | None) -> list[dict[str, Any]]:
        if self.ws.has_row_stores:  # the hits' own rows, memory-mapped
            ids, titles = self.ws.row_store("ids")[rows], self.ws.row_store("titles")[rows]
        else:  # an older workspace: every id and title, read once
            ids, titles = self._ids(), self._titles()
            ids, titles = [ids[r] for r in rows.tolist()], [titles[r] for r in rows.tolist()]
        cq = None
        if vector is not None:
            try:
                cq = self.concept_query(vector)
            except DamagedFileError:  # a damaged file is told, never passed over
                raise
            except EmbedSAEError as exc:  # explanations need the concept index; hits come without them
                self._cache.setdefault("explain_error", str(exc))
        hits = []
        for rank, (r, s) in enumerate(zip(rows.tolist(), scores.tolist()), 1):
            hit = {"rank": rank, "id": ids[rank - 1], "title": titles[rank - 1], "score": round(float(s), 5),
                   "row": int(r)}
            if cq is not None:
                from .explain import explain_hit

                hit["concepts"] = explain_hit(self.concept, r, cq, self.labels)
            hits.append(hit)
        return hits

    def _titles(self) -> list[str]:
        if self._parts is not None:
            return self._parts.titles
        return self._cached("titles", self.ws.titles)

    def _ids(self) -> list[str]:
        """The document ids as a list (no pandas column per search: a hit's id is read 10 times a query)."""
        if self._parts is not None:
            return self._parts.ids
        return self._cached("ids", lambda: self.ws.ids)
