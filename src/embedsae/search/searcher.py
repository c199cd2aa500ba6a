"""The search API: one object that serves dense, concept, BM25 and hybrid search with steering and explanations."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import EmbedSAEError, InputError
from ..workspace import Workspace
from .hybrid import FUSIONS, parse_weights, rrf, score_fusion
from .steering import Steering

MODES = ("dense", "concept", "hybrid", "bm25")
HYBRID_PARTS = ("dense", "concept", "bm25")
DEFAULT_HYBRID_WEIGHTS = {"dense": 1.0, "concept": 1.0, "bm25": 1.0}


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
    """Search a workspace's documents. Indexes load on first use; `embedsae index` must have run for the
    concept and BM25 modes (dense search needs only the embeddings)."""

    def __init__(
        self,
        ws: Workspace | str,
        sae: str | None = None,
        *,
        embedder=None,
        ann: bool = False,
        fusion: str = "rrf",
        weights: Mapping[str, float] | str | None = None,
        rrf_k: float = 60.0,
        depth: int = 100,
    ) -> None:
        self.ws = ws if isinstance(ws, Workspace) else Workspace.open(ws)
        if fusion not in FUSIONS:
            raise InputError(f"unknown fusion '{fusion}'; use one of {', '.join(FUSIONS)}")
        self.fusion = fusion
        self.weights = {**DEFAULT_HYBRID_WEIGHTS, **parse_weights(weights, HYBRID_PARTS)}
        self.rrf_k = rrf_k
        self.depth = depth
        self.ann = ann
        self._sae_name = sae
        self._embedder = embedder
        self._cache: dict[str, Any] = {}

    # ------------------------------------------------------------------ lazy parts
    @property
    def sae_name(self) -> str:
        if "sae_name" not in self._cache:
            self._cache["sae_name"] = self.ws.resolve_sae(self._sae_name)
        return self._cache["sae_name"]

    @property
    def sae(self):
        if "sae" not in self._cache:
            self._cache["sae"] = self.ws.load_sae(self.sae_name)
        return self._cache["sae"]

    @property
    def concept(self):
        if "concept" not in self._cache:
            from .index import require_concept

            self._cache["concept"] = require_concept(self.ws, self.sae_name)
        return self._cache["concept"]

    @property
    def dense(self):
        if "dense" not in self._cache:
            from .dense import AnnIndex, DenseIndex

            if self.ann:
                from .index import index_dir

                self._cache["dense"] = AnnIndex.load(index_dir(self.ws) / "dense.usearch")
            else:
                normalized = bool(self.ws.manifest["model"].get("normalized", True))
                self._cache["dense"] = DenseIndex(self.ws.embeddings, normalized=normalized)
        return self._cache["dense"]

    @property
    def lexical(self):
        if "lexical" not in self._cache:
            from .index import index_dir
            from .lexical import LexicalIndex

            self._cache["lexical"] = LexicalIndex.load(index_dir(self.ws) / "bm25")
        return self._cache["lexical"]

    @property
    def labels(self) -> dict[int, str]:
        if "labels" not in self._cache:
            from ..interpret import feature_labels

            self._cache["labels"] = feature_labels(self.ws, self.sae_name)
        return self._cache["labels"]

    def concept_query(self, vector: np.ndarray):
        """The query in the concept index's terms (latents, weights)."""
        from .concept import encode_query, sae_arrays

        if "sae_arrays" not in self._cache:
            self._cache["sae_arrays"] = sae_arrays(self.sae)
        return encode_query(self.sae, vector, self.concept.settings, self._cache["sae_arrays"])

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Query vectors, made by the workspace's embedding model."""
        if self._embedder is None:
            self._embedder = self.ws.embedder()
        return np.asarray(self._embedder.embed(list(texts), progress=False), np.float32)

    def steering(self, specs: Sequence[str], form: str = "residual") -> Steering:
        """A Steering object from specs (ID=VALUE or "label"=VALUE), labels resolved against this SAE's
        interpreted labels (not the quick keyword labels of an SAE never interpreted)."""
        labels = self.labels if getattr(self.labels, "interpreted", True) else {}
        return Steering.from_specs(specs, self.sae, labels=labels, embed=self.embed, form=form)

    # ------------------------------------------------------------------ ranking
    def single_thread(self):
        """A context in which BLAS runs on one thread: one query's matrix-vector products gain nothing from
        more, and BLAS threads competing with torch's for the same cores cost tens of milliseconds."""
        if "threads" not in self._cache:
            from threadpoolctl import ThreadpoolController

            self._cache["threads"] = ThreadpoolController()
        return self._cache["threads"].limit(limits=1, user_api="blas")

    def rank(self, mode: str, vector: np.ndarray | None, text: str | None, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-k document rows and scores for one query (vector for dense/concept, text for BM25)."""
        with self.single_thread():
            return self._rank(mode, vector, text, k)

    def _rank(self, mode: str, vector: np.ndarray | None, text: str | None, k: int) -> tuple[np.ndarray, np.ndarray]:
        from .dense import top_k

        if mode not in MODES:
            raise InputError(f"unknown search mode '{mode}'; use one of {', '.join(MODES)}")
        if mode == "dense":
            i, s = self.dense.search(vector[None, :], k)
            return i[0], s[0]
        if mode == "concept":
            return self.concept.search(self.concept_query(vector), k)
        if mode == "bm25":
            if text is None:
                raise InputError("BM25 search needs the query text, not only a vector")
            i, s = top_k(self.lexical.scores(text)[None, :], k)
            return i[0], s[0]
        return self._hybrid(vector, text, k)

    def _hybrid(self, vector: np.ndarray, text: str | None, k: int) -> tuple[np.ndarray, np.ndarray]:
        from .dense import top_k

        parts = [p for p in HYBRID_PARTS if self.weights.get(p, 0) > 0 and (p != "bm25" or text is not None)]
        if not parts:
            raise InputError("hybrid search has no part with a weight above 0; give e.g. --weights dense=1,concept=1")
        n = self.ws.n_documents
        depth = max(self.depth, k)
        if self.fusion == "rrf":
            fused = rrf({p: self._rank(p, vector, text, depth)[0] for p in parts}, self.weights, n, self.rrf_k)
        else:
            scores = {}
            for p in parts:
                rows, vals = self._rank(p, vector, text, depth)
                full = np.full(n, float(vals.min()) if len(vals) else 0.0)
                full[rows] = vals
                scores[p] = full
            fused = score_fusion(scores, self.weights)
        i, s = top_k(fused[None, :], k)
        return i[0], s[0]

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
    ) -> SearchResult:
        """Ranked hits for a query text (or vector), optionally steered, each hit with its shared concepts."""
        if top <= 0:
            raise InputError(f"--top must be a positive number of hits, got {top}")
        if mode not in MODES:
            raise InputError(f"unknown search mode '{mode}'; use one of {', '.join(MODES)}")
        text = query if isinstance(query, str) else None
        if text is not None and not text.strip():
            raise InputError("the query is empty; give some words to search for")
        if isinstance(steer, str):
            steer = [steer]
        if steer is not None and not isinstance(steer, Steering):
            steer = self.steering(list(steer), steer_form) if len(steer) else None
        if steer and mode == "bm25":
            raise InputError("steering edits SAE features of the query vector; BM25 has none: use --mode dense, "
                             "concept or hybrid")
        t0 = time.perf_counter()
        vector = None
        if mode != "bm25" or explain:
            vector = self.embed([text])[0] if text is not None else np.asarray(query, np.float32).reshape(-1)
        report = None
        if steer:
            res = steer.apply(self.sae, vector, self.labels)
            vector, report = res.vector, res.to_dict()
            self._add_typical(report["changes"])
        rows, scores = self.rank(mode, vector, text, top)
        seconds = time.perf_counter() - t0
        with self.single_thread():
            hits = self._hits(rows, scores, vector if explain else None)
        return SearchResult(text if text is not None else "<vector>", mode, hits, report, seconds)

    def _add_typical(self, changes: list[dict[str, Any]]) -> None:
        """Each changed feature's largest activation over the documents, the scale for edit values."""
        try:
            index = self.concept
        except EmbedSAEError:
            return
        for c in changes:
            a, b = index.indptr[c["feature"]], index.indptr[c["feature"] + 1]
            c["doc_max"] = round(float(index.weights[a:b].max()), 5) if b > a else 0.0
            c["doc_share"] = round(float(b - a) / max(index.n_docs, 1), 5)

    def _hits(self, rows: np.ndarray, scores: np.ndarray, vector: np.ndarray | None) -> list[dict[str, Any]]:
        ids, titles = self.ws.corpus["id"].astype(str), self._titles()
        cq = None
        if vector is not None:
            try:
                cq = self.concept_query(vector)
            except EmbedSAEError as exc:  # explanations need the concept index; hits come without them
                self._cache.setdefault("explain_error", str(exc))
        hits = []
        for rank, (r, s) in enumerate(zip(rows.tolist(), scores.tolist()), 1):
            hit = {"rank": rank, "id": ids.iat[r], "title": titles[r], "score": round(float(s), 5)}
            if cq is not None:
                from .explain import explain_hit

                hit["concepts"] = explain_hit(self.concept, r, cq, self.labels)
            hits.append(hit)
        return hits

    def _titles(self) -> list[str]:
        if "titles" not in self._cache:
            self._cache["titles"] = self.ws.titles()
        return self._cache["titles"]
