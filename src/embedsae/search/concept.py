"""Concept-level sparse retrieval (CL-SR): documents as the SAE latents they keep, queries as weights on latents.

Each document keeps its top `doc_k` latents with their activations (its forward row). On disk the embedded
index is that forward table (int16 latent ids when there are fewer than 32,768 latents, float16 activations)
plus one float32 norm per document, and, for an index of more than `exact_docs` documents, its document
clusters (clusters.py). Three scorings (term weights in terms.py):

- ``projection`` (default): the query's weight on latent i is its projection on feature i's decoder
  direction, ``w_i = W_dec[i] . q``, so ``sum_i w_i z_{d,i} + q . b_pre`` is the query's dot product with
  the document's SAE reconstruction; divided by the reconstruction's norm it is their cosine. Every scored
  document is scored exactly, from all the latents it keeps.
- ``dot``: the plain dot product of the query's SAE code (at `query_k` latents) with the document code.
- ``bm25``: BM25 over latents (CL-SR): latents are terms, activations are term frequencies, with
  tunable `k1` and `b`; the query weights its `query_k` strongest latents by their projection weights.

Which documents are scored: every one up to `exact_docs` documents (a compiled loop over the forward rows,
concept_kernel.py), else those of the clusters nearest to the query (`probe`). The Milvus backend
(milvus.py) finds candidates through the collection's inverted index instead and rescores them the same way.

Query expansion (`feedback_docs`, off by default): the mean unit SAE reconstruction of a first pass's top
documents is added to the unit query with weight `feedback_weight` before the final pass. It pays on
Cranfield and costs on the other development collections (benchmarks/retrieval_matrix.py).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from .._io import atomic_path
from ..errors import InputError, WorkspaceError
from ..progress import ProgressCallback
from ..settings import Settings, check
from .retriever import BuildContext, Query, Retriever
from .terms import term_weights

FILE_NAME = "concept_index.npz"


@dataclass
class ConceptSettings(Settings):
    """How the concept index is built and scored."""

    doc_k: int = 32
    """Latents each document keeps in the concept index (may exceed the SAE's k: the encoder is asked for more)."""
    query_k: int = 64
    """Latents of the query that find candidates in Milvus, and the query's terms in dot and bm25 scoring."""
    scoring: Literal["projection", "dot", "bm25"] = "projection"
    """Concept scoring: projection (cosine with each document's SAE reconstruction), dot (query code . document
    code) or bm25 (BM25 over latents)."""
    rerank: int = 200
    """Milvus backend: candidates from the collection's inverted index scored exactly (collections of more than
    `exact_docs` documents; up to that every document is)."""
    k1: float = 1.2
    """BM25-over-latents term-frequency saturation."""
    b: float = 0.75
    """BM25-over-latents length normalisation."""
    feedback_docs: int = 0
    """Concept query expansion: the top documents of a first pass whose SAE reconstructions are added to the
    query, bringing in the latents that co-occur with its own (0 = off)."""
    feedback_weight: float = 0.5
    """Concept query expansion: weight of the feedback documents' mean unit reconstruction added to the unit
    query."""
    exact_docs: int = 100_000
    """Indexes of up to this many documents score every document for each query; larger ones group the
    documents into clusters when built, and a query scores those of the clusters nearest to it."""
    probe: float = 0.05
    """Clustered index: share of the documents a query scores (the clusters nearest to it, best first)."""

    def validate(self) -> None:
        super().validate()
        check(self.doc_k > 0 and self.query_k > 0 and self.rerank >= 0,
              f"`doc_k` and `query_k` must be positive and `rerank` >= 0 (got {self.doc_k}, {self.query_k}, "
              f"{self.rerank})")
        check(self.k1 >= 0 and 0 <= self.b <= 1, f"BM25 over latents needs `k1` >= 0 and 0 <= `b` <= 1 (got k1={self.k1}, b={self.b})")
        check(self.feedback_docs >= 0 and self.feedback_weight >= 0,
              f"`feedback_docs` and `feedback_weight` must be >= 0 (got {self.feedback_docs}, {self.feedback_weight})")
        check(self.exact_docs >= 0 and 0 < self.probe <= 1,
              f"`exact_docs` must be >= 0 and 0 < `probe` <= 1 (got {self.exact_docs}, {self.probe})")


@dataclass
class ConceptQuery:
    """A query in latent space: its latents and weights (the `query_k` strongest), the offset q . b_pre, the
    weights of all latents (projection scoring) and the unit query vector."""

    latents: np.ndarray
    weights: np.ndarray
    offset: float = 0.0
    full_weights: np.ndarray | None = None
    vector: np.ndarray | None = None

    def dense_weights(self, n_latents: int) -> np.ndarray:
        """The query's weight on every latent: all of them for projection scoring, else its own latents'."""
        if self.full_weights is not None:
            return np.asarray(self.full_weights, np.float32)
        out = np.zeros(n_latents, np.float32)
        out[np.asarray(self.latents, np.int64)] = self.weights
        return out


def sae_arrays(sae) -> tuple[np.ndarray, np.ndarray]:
    """The SAE's decoder (n_latents x d) and b_pre as float32 numpy arrays (for fast per-query maths)."""
    return (sae.W_dec.detach().cpu().numpy().astype(np.float32, copy=False),
            sae.b_pre.detach().cpu().numpy().astype(np.float32, copy=False))


def encode_query(
    sae, q: np.ndarray, settings: ConceptSettings, arrays: tuple[np.ndarray, np.ndarray] | None = None
) -> ConceptQuery:
    """A query vector in the concept index's terms (latents and weights), per the index's scoring.

    `arrays` (from `sae_arrays`) avoids converting the decoder on every query.
    """
    q = np.asarray(q, np.float32).reshape(-1)
    unit = q / max(float(np.linalg.norm(q)), 1e-12)
    if settings.scoring == "dot":
        import torch

        with torch.no_grad():
            code = sae.encode_sparse(torch.from_numpy(q[None, :].copy()), min(settings.query_k, sae.cfg.n_latents))
        lat, w = code.indices[0].numpy(), code.values[0].float().numpy()
        keep = w > 0
        return ConceptQuery(lat[keep].astype(np.int64), w[keep], vector=unit)
    W, b_pre = arrays if arrays is not None else sae_arrays(sae)
    proj = W @ q
    m = min(settings.query_k, len(proj))
    lat = np.argpartition(-proj, m - 1)[:m]
    lat = lat[proj[lat] > 0]
    full = proj if settings.scoring == "projection" else None
    return ConceptQuery(lat.astype(np.int64), proj[lat], float(q @ b_pre), full, unit)


def doc_norms(sae, indices: np.ndarray, values: np.ndarray, batch_size: int = 8192) -> np.ndarray:
    """Norm of each document's SAE reconstruction from its kept latents."""
    import torch

    out = []
    with torch.no_grad():
        for i in range(0, len(indices), batch_size):
            idx = torch.from_numpy(indices[i : i + batch_size].astype(np.int64))
            val = torch.from_numpy(values[i : i + batch_size].astype(np.float32))
            out.append(sae.decode_sparse(idx, val).norm(dim=1).numpy())
    return np.concatenate(out) if out else np.zeros(0, np.float32)


class ConceptStore:
    """What a concept index offers whatever keeps it (the workspace's files, a Milvus collection): search, the
    forward rows of documents, and the maths on them that explanations and query expansion use."""

    settings: ConceptSettings
    sae_name: str
    n_docs: int
    n_latents: int

    def search(self, query: ConceptQuery, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """Top-k document rows and scores for one query."""
        raise NotImplementedError

    def forward(self, docs: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Latent ids (int64), activations (float32) and inverse reconstruction norms of some documents."""
        raise NotImplementedError

    def terms(self, doc: int) -> dict[int, float]:
        """A document's term weights (latent -> weight, terms.py) for the index's scoring."""
        raise NotImplementedError

    def feature_stats(self, feature: int) -> tuple[float, float]:
        """A feature's largest activation over the documents and the share of documents it fires in."""
        raise NotImplementedError

    @property
    def stored_bytes(self) -> int:
        """Bytes of the index as stored."""
        raise NotImplementedError

    def describe(self) -> dict[str, Any]:
        """Sizes and settings, for reports."""
        raise NotImplementedError

    def exact(self, docs: np.ndarray, full_weights: np.ndarray, offset: float) -> np.ndarray:
        """Projection scores of some documents from all the latents they keep."""
        idx, val, inv = self.forward(docs)
        return ((full_weights[idx] * val).sum(1) + offset) * inv

    def reconstruct(self, docs: np.ndarray, W_dec: np.ndarray, b_pre: np.ndarray) -> np.ndarray:
        """Unit-norm SAE reconstructions of some documents from the latents they keep, (docs x d)."""
        idx, val, inv = self.forward(docs)
        return (np.einsum("nk,nkd->nd", val, W_dec[idx]) + b_pre) * inv[:, None]

    def contributions(self, doc: int, query: ConceptQuery) -> dict[int, float]:
        """Per latent the document keeps, its contribution to the document's score (before normalisation)."""
        if self.settings.scoring == "projection" and query.full_weights is not None:
            idx, val, _ = self.forward(np.array([doc]))
            return {i: float(query.full_weights[i]) * v for i, v in zip(idx[0].tolist(), val[0].tolist()) if v > 0}
        qw = dict(zip(np.asarray(query.latents).tolist(), np.asarray(query.weights).tolist()))
        return {i: w * float(qw[i]) for i, w in self.terms(doc).items() if i in qw}


class ConceptIndex(ConceptStore):
    """The concept index kept in the workspace: forward rows, reconstruction norms and, for a large index,
    document clusters; scored by the compiled loop of concept_kernel.py."""

    def __init__(
        self,
        fwd_indices: np.ndarray,
        fwd_values: np.ndarray,
        n_latents: int,
        doc_norms: np.ndarray,
        settings: ConceptSettings,
        sae_name: str = "",
        clusters: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
    ) -> None:
        self.fwd_indices = fwd_indices
        self.fwd_values = fwd_values
        self.n_docs, self.doc_k = fwd_indices.shape
        self.n_latents = int(n_latents)
        self.doc_norms = np.asarray(doc_norms, np.float32)
        self.settings = settings
        self.sae_name = sae_name
        self.inv_norms = (1.0 / np.maximum(self.doc_norms, 1e-6)).astype(np.float32)
        values = fwd_values.astype(np.float32)
        self.term_weights = term_weights(fwd_indices, values, self.inv_norms, self.n_latents, settings)
        # the projection scoring's constant q . b_pre counts once per document, over the reconstruction's norm
        self.factor = self.inv_norms if settings.scoring == "projection" else np.zeros(self.n_docs, np.float32)
        self.clusters = clusters
        if clusters is None:
            self._ptr, self._members = np.array([0, self.n_docs], np.int64), np.zeros(0, np.int32)
        else:
            self._ptr, self._members = clusters[1], clusters[2]
        self._stats: tuple[np.ndarray, np.ndarray] | None = None

    # ------------------------------------------------------------------ building
    @classmethod
    def from_codes(
        cls, indices: np.ndarray, values: np.ndarray, n_latents: int, doc_norms: np.ndarray,
        settings: ConceptSettings, sae_name: str = "", *, decoder: tuple[np.ndarray, np.ndarray] | None = None,
        progress: ProgressCallback | None = None,
    ) -> ConceptIndex:
        """Build the index from per-document codes ((docs x doc_k) latent ids and activations); more than
        `settings.exact_docs` documents are clustered, which needs the SAE's `decoder` (W_dec, b_pre)."""
        idx_dtype = np.int16 if n_latents <= np.iinfo(np.int16).max else np.int32
        indices = np.ascontiguousarray(indices, idx_dtype)
        values = np.ascontiguousarray(values, np.float16)
        clusters = None
        if len(indices) > settings.exact_docs:
            if decoder is None:
                raise InputError(f"a concept index of more than {settings.exact_docs:,} documents is clustered, which "
                                 "needs the SAE's decoder: pass decoder=(W_dec, b_pre)")
            from .clusters import cluster_documents

            clusters = cluster_documents(indices, values, *decoder, progress=progress)
        return cls(indices, values, n_latents, doc_norms, settings, sae_name, clusters)

    def save(self, path: str | os.PathLike) -> None:
        """Write the index as one .npz (atomically): forward codes, norms and clusters."""
        extra = {}
        if self.clusters is not None:
            extra = dict(zip(("centres", "cluster_ptr", "cluster_members"), self.clusters))
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as f:
                np.savez(
                    f, fwd_indices=self.fwd_indices, fwd_values=self.fwd_values, doc_norms=self.doc_norms,
                    n_latents=np.int64(self.n_latents), settings=np.array(json.dumps(asdict(self.settings))),
                    sae_name=np.array(self.sae_name), **extra,
                )

    @classmethod
    def load(cls, path: str | os.PathLike) -> ConceptIndex:
        """Read an index written by `save`."""
        path = Path(path)
        if not path.is_file():
            raise WorkspaceError(f"no concept index at {path}; build it with: embedsae index WORKSPACE")
        with np.load(path) as z:
            settings = ConceptSettings.from_dict(json.loads(str(z["settings"])))
            clusters = (z["centres"], z["cluster_ptr"], z["cluster_members"]) if "centres" in z.files else None
            return cls(z["fwd_indices"], z["fwd_values"], int(z["n_latents"]), z["doc_norms"], settings,
                       str(z["sae_name"]), clusters)

    @property
    def stored_bytes(self) -> int:
        """Bytes of the stored arrays (forward codes, norms, clusters), what the .npz holds."""
        extra = sum(a.nbytes for a in self.clusters) if self.clusters is not None else 0
        return int(self.fwd_indices.nbytes + self.fwd_values.nbytes + self.doc_norms.nbytes + extra)

    @property
    def memory_bytes(self) -> int:
        """Bytes held in memory while serving (the stored arrays, term weights, inverse norms)."""
        return int(self.stored_bytes + self.term_weights.nbytes + self.inv_norms.nbytes)

    # ------------------------------------------------------------------ scoring
    def chosen_clusters(self, query: ConceptQuery) -> np.ndarray:
        """The clusters a query scores: all (an unclustered index), else the nearest holding `probe` of the
        documents."""
        if self.clusters is None:
            return np.zeros(1, np.int64)
        if query.vector is None:
            raise InputError("a clustered concept index needs the query vector to choose its clusters")
        order = np.argsort(-(self.clusters[0] @ np.asarray(query.vector, np.float32)), kind="stable")
        sizes = np.diff(self._ptr)[order]
        take = int(np.searchsorted(np.cumsum(sizes), self.settings.probe * self.n_docs)) + 1
        return order[:take]

    def search(self, query: ConceptQuery, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """Top-k document rows and scores for one query."""
        from .concept_kernel import top_docs

        return top_docs(self.fwd_indices, self.term_weights, query.dense_weights(self.n_latents), query.offset,
                        self.factor, self._ptr, self._members, self.chosen_clusters(query), min(k, self.n_docs))

    def forward(self, docs: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        docs = np.asarray(docs, np.int64)
        return (self.fwd_indices[docs].astype(np.int64), self.fwd_values[docs].astype(np.float32),
                self.inv_norms[docs])

    def terms(self, doc: int) -> dict[int, float]:
        idx, w = self.fwd_indices[doc].tolist(), self.term_weights[doc].tolist()
        return {i: x for i, x in zip(idx, w) if x > 0}

    def feature_stats(self, feature: int) -> tuple[float, float]:
        if self._stats is None:
            keep = self.fwd_values > 0
            lat = self.fwd_indices[keep].astype(np.int64)
            val = self.fwd_values[keep].astype(np.float32)
            top = np.zeros(self.n_latents, np.float32)
            np.maximum.at(top, lat, val)
            self._stats = top, np.bincount(lat, minlength=self.n_latents)
        top, df = self._stats
        return float(top[feature]), float(df[feature]) / max(self.n_docs, 1)

    def describe(self) -> dict[str, Any]:
        """Sizes and settings, for reports."""
        return {"documents": self.n_docs, "latents": self.n_latents,
                "entries": int(np.count_nonzero(self.fwd_values)),
                "clusters": 0 if self.clusters is None else len(self.clusters[0]),
                "stored_bytes": self.stored_bytes, "memory_bytes": self.memory_bytes,
                "settings": asdict(self.settings), "sae": self.sae_name}


class ConceptRetriever(Retriever):
    """Concept-level sparse retrieval over the SAE's latents (the concept index of the Searcher's SAE)."""

    name = "concept"

    @classmethod
    def build(cls, ctx: BuildContext) -> dict[str, Any]:
        from ..sae.codes import encode_array

        model = ctx.cache.get("sae") or ctx.ws.load_sae(ctx.sae)
        codes = encode_array(model, ctx.ws.vectors, k=min(ctx.concept.doc_k, model.cfg.n_latents),
                             progress=ctx.progress)
        values = codes.values.astype(np.float16).astype(np.float32)  # what the index keeps, and its norms
        return ctx.store.write_concept(ctx, codes.indices, values, doc_norms(model, codes.indices, values), model)

    def load(self) -> None:
        self.index = self.searcher.storage.concept(self.searcher.sae_name)
        self.arrays = sae_arrays(self.searcher.sae)

    def encode(self, vector: np.ndarray) -> ConceptQuery:
        """A query vector in this index's terms (latents and weights)."""
        return encode_query(self.searcher.sae, vector, self.index.settings, self.arrays)

    def rank(self, query: Query, k: int) -> tuple[np.ndarray, np.ndarray]:
        return self.rank_vector(query.vector, k)

    def rank_vector(self, vector: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-k rows and scores for a query vector, expanded by feedback documents when the settings say so."""
        settings = self.index.settings
        query = self.encode(vector)
        if settings.feedback_docs and settings.feedback_weight:
            top, _ = self.index.search(query, settings.feedback_docs)
            q = np.asarray(vector, np.float32).reshape(-1)
            q = q / max(float(np.linalg.norm(q)), 1e-12)
            feedback = self.index.reconstruct(top, *self.arrays).mean(0)
            query = self.encode(q + np.float32(settings.feedback_weight) * feedback)
        return self.index.search(query, k)

    def size(self) -> int:
        return self.index.stored_bytes

    def available(self) -> bool:
        return self.searcher.storage.has_concept(self.searcher.sae_name)
