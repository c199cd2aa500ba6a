"""Concept-level sparse retrieval (CL-SR): documents as the SAE latents they keep, queries as weights on latents.

Each document keeps its top `doc_k` latents with their activations (its forward row). On disk the embedded
index is that forward table (int16 latent ids when there are fewer than 32,768 latents, uint8 activations
with a float16 scale per document, see `quantize`) plus one float32 norm per document, and, for an index of
more than `exact_docs` documents, a one-bit code of each document for a first pass (prefilter.py). Three
scorings (term weights in terms.py):

- ``projection`` (default): the query's weight on latent i is its projection on feature i's decoder
  direction, ``w_i = W_dec[i] . q``, so ``sum_i w_i z_{d,i} + q . b_pre`` is the query's dot product with
  the document's SAE reconstruction; divided by the reconstruction's norm it is their cosine. Every scored
  document is scored exactly, from all the latents it keeps.
- ``dot``: the plain dot product of the query's SAE code (at `query_k` latents) with the document code.
- ``bm25``: BM25 over latents (CL-SR): latents are terms, activations are term frequencies, with
  tunable `k1` and `b`; the query weights its `query_k` strongest latents by their projection weights.

Which documents are scored: every one up to `exact_docs` documents (a compiled loop over the forward rows,
concept_kernel.py); above, the `candidates` documents with the best one-bit estimates of the projection score
(prefilter.py; projection scoring). The Milvus backend
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
from typing import Annotated, Any, Literal

import numpy as np

from .._io import atomic_path
from ..errors import InputError, WorkspaceError
from ..progress import ProgressCallback
from ..settings import Range, Settings, check
from .compress import (
    dequantize,
    quantize,
    reconstructions,
    residual_estimate,
    residual_lut,
    residual_sketch,
    stored_values,
)
from .prefilter import SignCodes
from .retriever import BuildContext, Query, Retriever
from .terms import term_weights

FILE_NAME = "concept_index.npz"


@dataclass
class ConceptSettings(Settings):
    """How the concept index is built and scored."""

    doc_k: Annotated[int, Range(ge=1, le=4096)] = 28
    """Latents each document keeps in the concept index (may exceed the SAE's k: the encoder is asked for more).
    28 keeps a 384-d index, residual sketches and clusters included, under a tenth of the dense vectors' bytes."""
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
    residual: bool = True
    """Projection scoring: keep a one-bit sketch of what each document's SAE reconstruction leaves out (one bit
    per dimension) and add its estimate of the query's dot product with it, so the score is close to the
    query's cosine with the document itself; off: the cosine with the reconstruction alone."""
    feedback_docs: int = 0
    """Concept query expansion: the top documents of a first pass whose SAE reconstructions are added to the
    query, bringing in the latents that co-occur with its own (0 = off)."""
    feedback_weight: float = 0.5
    """Concept query expansion: weight of the feedback documents' mean unit reconstruction added to the unit
    query."""
    exact_docs: int = 100_000
    """Indexes of up to this many documents score every document for each query; larger ones keep a one-bit
    code of each document, and a query scores exactly the `candidates` documents whose codes estimate the
    highest scores (projection scoring)."""
    candidates: Annotated[int, Range(ge=1)] = 1024
    """Index of more than `exact_docs` documents: documents a query scores exactly after the one-bit first pass
    (more: closer to scoring every document, slower)."""

    def validate(self) -> None:
        super().validate()
        check(self.doc_k > 0 and self.query_k > 0 and self.rerank >= 0,
              f"`doc_k` and `query_k` must be positive and `rerank` >= 0 (got {self.doc_k}, {self.query_k}, "
              f"{self.rerank})")
        check(self.k1 >= 0 and 0 <= self.b <= 1, f"BM25 over latents needs `k1` >= 0 and 0 <= `b` <= 1 (got k1={self.k1}, b={self.b})")
        check(self.feedback_docs >= 0 and self.feedback_weight >= 0,
              f"`feedback_docs` and `feedback_weight` must be >= 0 (got {self.feedback_docs}, {self.feedback_weight})")
        check(self.exact_docs >= 0, f"`exact_docs` must be >= 0 (got {self.exact_docs})")


@dataclass
class ConceptQuery:
    """A query in latent space: its latents and weights (the `query_k` strongest), the offset q . b_pre, the
    weights of all latents (projection scoring) and the query vector itself."""

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
    if settings.scoring == "dot":
        import torch

        with torch.no_grad():
            code = sae.encode_sparse(torch.from_numpy(q[None, :].copy()), min(settings.query_k, sae.cfg.n_latents))
        lat, w = code.indices[0].numpy(), code.values[0].float().numpy()
        keep = w > 0
        return ConceptQuery(lat[keep].astype(np.int64), w[keep], vector=q)
    W, b_pre = arrays if arrays is not None else sae_arrays(sae)
    proj = W @ q
    m = min(settings.query_k, len(proj))
    lat = np.argpartition(-proj, m - 1)[:m]
    lat = lat[proj[lat] > 0]
    full = proj if settings.scoring == "projection" else None
    return ConceptQuery(lat.astype(np.int64), proj[lat], float(q @ b_pre), full, q)


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


@dataclass
class DocumentCodes:
    """What a concept index keeps of every document, whichever store keeps it: latent ids and activations (as
    stored, compress.py), reconstruction norms and, for projection scoring with `residual`, residual sketches."""

    indices: np.ndarray
    values: np.ndarray
    norms: np.ndarray
    n_latents: int
    residual: tuple[np.ndarray, np.ndarray] | None = None


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

    def sketch(self, docs: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
        """The residual sketches (bits, scales; compress.py) of some documents, or None when the index keeps none."""
        return None

    @property
    def uses_residual(self) -> bool:
        """Whether scores add the residual sketch's estimate (projection scoring with `residual` on)."""
        return self.settings.scoring == "projection" and self.settings.residual

    def exact(self, docs: np.ndarray, query: ConceptQuery) -> np.ndarray:
        """Projection scores of some documents from all the latents they keep (and their residual sketches)."""
        idx, val, inv = self.forward(docs)
        dot = (query.full_weights[idx] * val).sum(1) + np.float32(query.offset)
        if not self.uses_residual:
            return dot * inv
        bits, scale = self.sketch(docs)
        return dot + residual_estimate(bits, scale, *residual_lut(query.vector, bits.shape[1]))

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


_NO_BITS, _NO_SCALE, _NO_LUT = np.zeros((0, 0), np.uint8), np.zeros(0, np.float32), np.zeros((0, 256), np.float32)
_EVERY = np.zeros(0, np.int64)  # no rows: every document is scored


class ConceptIndex(ConceptStore):
    """The concept index kept in the workspace: forward rows, reconstruction norms and, for a large index, the
    documents' one-bit codes for a first pass; scored by the compiled loop of concept_kernel.py."""

    def __init__(
        self,
        fwd_indices: np.ndarray,
        fwd_values: np.ndarray,
        n_latents: int,
        doc_norms: np.ndarray,
        settings: ConceptSettings,
        sae_name: str = "",
        prefilter: SignCodes | None = None,
        *,
        quantized: tuple[np.ndarray, np.ndarray] | None = None,
        residual: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> None:
        """`fwd_values`: the activations (quantised here, see compress.py), or None with `quantized` given;
        `residual`: the documents' residual sketches (needed by projection scoring with `residual` on)."""
        self.n_latents = int(n_latents)
        idx_dtype = np.int16 if self.n_latents <= np.iinfo(np.int16).max else np.int32
        self.fwd_indices = np.ascontiguousarray(fwd_indices, idx_dtype)
        self.fwd_codes, self.doc_scale = quantized if quantized is not None else quantize(fwd_values)
        self.n_docs, self.doc_k = self.fwd_indices.shape
        self.doc_norms = np.asarray(doc_norms, np.float32)
        self.settings = settings
        self.sae_name = sae_name
        self.inv_norms = (1.0 / np.maximum(self.doc_norms, 1e-6)).astype(np.float32)
        self.residual = residual
        self._residual_scale = residual[1].astype(np.float32) if residual is not None else _NO_SCALE
        if self.uses_residual and residual is None:
            raise WorkspaceError("this concept index keeps no residual sketches; rebuild it (embedsae index) or score "
                                 "without them (setting `residual` off)")
        self.term_weights = term_weights(self.fwd_indices, self.fwd_values, self.inv_norms, self.n_latents, settings)
        # the projection scoring's constant q . b_pre: once per document, over the reconstruction's norm without
        # the residual sketch (the cosine with the reconstruction), as it is with it (the dot product with d)
        if settings.scoring != "projection":
            self.factor = np.zeros(self.n_docs, np.float32)
        else:
            self.factor = np.ones(self.n_docs, np.float32) if self.uses_residual else self.inv_norms
        self.prefilter = prefilter if settings.scoring == "projection" else None
        self._stats: tuple[np.ndarray, np.ndarray] | None = None

    @property
    def fwd_values(self) -> np.ndarray:
        """Every document's kept activations (float32, as stored)."""
        return dequantize(self.fwd_codes, self.doc_scale)

    # ------------------------------------------------------------------ building
    @classmethod
    def from_codes(
        cls, indices: np.ndarray, values: np.ndarray, n_latents: int, doc_norms: np.ndarray,
        settings: ConceptSettings, sae_name: str = "", *, decoder: tuple[np.ndarray, np.ndarray] | None = None,
        vectors=None, residual: tuple[np.ndarray, np.ndarray] | None = None, progress: ProgressCallback | None = None,
    ) -> ConceptIndex:
        """Build the index from per-document codes ((docs x doc_k) latent ids and activations). The residual
        sketches come from `residual`, or are computed from the documents' `vectors` and the SAE's `decoder`
        (W_dec, b_pre); more than `settings.exact_docs` documents also get the first pass's codes, which need
        the decoder too."""
        quantized = quantize(values)
        projection = settings.scoring == "projection"
        if residual is None and projection and settings.residual:
            if decoder is None or vectors is None:
                raise InputError("the residual sketches need the documents' vectors and the SAE's decoder: pass "
                                 "vectors=... and decoder=(W_dec, b_pre), or turn the setting `residual` off")
            residual = residual_sketch(vectors, indices, dequantize(*quantized), *decoder)
        index = cls(indices, None, n_latents, doc_norms, settings, sae_name, quantized=quantized, residual=residual)
        if projection and len(indices) > settings.exact_docs:
            if decoder is None:
                raise InputError(f"a concept index of more than {settings.exact_docs:,} documents keeps codes for a "
                                 "first pass, which need the SAE's decoder: pass decoder=(W_dec, b_pre)")
            index.prefilter = SignCodes.build(index.n_docs, lambda rows: index.score_vectors(rows, *decoder),
                                              progress)
        return index

    def score_vectors(self, rows: slice, W_dec: np.ndarray, b_pre: np.ndarray) -> np.ndarray:
        """Per document, the vector t whose dot product with the query is its projection score (reconstruction +
        b_pre, plus the residual sketch's part; without the sketch, the unit reconstruction), (docs x d)."""
        idx = np.arange(self.n_docs)[rows]
        t = reconstructions(self.fwd_indices[idx], dequantize(self.fwd_codes[idx], self.doc_scale[idx]), W_dec, b_pre)
        if not self.uses_residual:
            return t * self.inv_norms[idx, None]
        signs = np.unpackbits(self.residual[0][idx], axis=1, bitorder="little")[:, : t.shape[1]].astype(np.float32)
        return t + self._residual_scale[idx, None] * (2 * signs - 1)

    def save(self, path: str | os.PathLike) -> None:
        """Write the index as one .npz (atomically): forward codes, norms, residual sketches, first-pass codes."""
        extra = {}
        if self.prefilter is not None:
            extra.update(prefilter_words=self.prefilter.words, prefilter_scale=self.prefilter.scale)
        if self.residual is not None:
            extra.update(residual_bits=self.residual[0], residual_scale=self.residual[1])
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as f:
                np.savez(
                    f, fwd_indices=self.fwd_indices, fwd_codes=self.fwd_codes, doc_scale=self.doc_scale,
                    doc_norms=self.doc_norms,
                    n_latents=np.int64(self.n_latents), settings=np.array(json.dumps(asdict(self.settings))),
                    sae_name=np.array(self.sae_name), **extra,
                )

    @classmethod
    def load(cls, path: str | os.PathLike) -> ConceptIndex:
        """Read an index written by `save`."""
        path = Path(path)
        if not path.is_file():
            raise WorkspaceError(f"no concept index at {path}; build it with: embedsae index WORKSPACE")
        from ..integrity import reading

        with reading(path), np.load(path) as z:
            settings = ConceptSettings.from_dict(json.loads(str(z["settings"])))
            # an index written with document clusters (before the first pass) scores every document
            prefilter = SignCodes(z["prefilter_words"], z["prefilter_scale"]) if "prefilter_words" in z.files else None
            residual = (z["residual_bits"], z["residual_scale"]) if "residual_bits" in z.files else None
            if "fwd_codes" not in z.files:  # written before activations were stored as uint8
                settings = settings.replace(residual=False)
                return cls(z["fwd_indices"], z["fwd_values"], int(z["n_latents"]), z["doc_norms"], settings,
                           str(z["sae_name"]))
            return cls(z["fwd_indices"], None, int(z["n_latents"]), z["doc_norms"], settings, str(z["sae_name"]),
                       prefilter, quantized=(z["fwd_codes"], z["doc_scale"]), residual=residual)

    @property
    def stored_bytes(self) -> int:
        """Bytes of the stored arrays (forward codes, norms, sketches, first-pass codes), what the .npz holds."""
        extra = self.prefilter.nbytes if self.prefilter is not None else 0
        extra += sum(a.nbytes for a in self.residual) if self.residual is not None else 0
        return int(self.fwd_indices.nbytes + self.fwd_codes.nbytes + self.doc_scale.nbytes + self.doc_norms.nbytes
                   + extra)

    @property
    def memory_bytes(self) -> int:
        """Bytes held in memory while serving (the stored arrays, term weights, inverse norms)."""
        return int(self.stored_bytes + self.term_weights.nbytes + self.inv_norms.nbytes)

    # ------------------------------------------------------------------ scoring
    def scored_documents(self, query: ConceptQuery, k: int = 0) -> np.ndarray:
        """The rows a query for the top k scores exactly: an empty array for every document, else the first
        pass's best `candidates` (at least k; ascending)."""
        n = max(self.settings.candidates, k)
        if self.prefilter is None or n >= self.n_docs:
            return _EVERY
        if query.vector is None:
            raise InputError("a concept index with a first pass needs the query vector (projection scoring)")
        return self.prefilter.candidates(query.vector, n)

    def search(self, query: ConceptQuery, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """Top-k document rows and scores for one query."""
        from .concept_kernel import top_docs

        if self.uses_residual:
            bits, scale = self.residual[0], self._residual_scale
            lut, total = residual_lut(query.vector, bits.shape[1])
        else:
            bits, scale, lut, total = _NO_BITS, _NO_SCALE, _NO_LUT, 0.0
        return top_docs(self.fwd_indices, self.term_weights, query.dense_weights(self.n_latents), query.offset,
                        self.factor, self.scored_documents(query, k), min(k, self.n_docs), bits, scale, lut, total)

    def forward(self, docs: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        docs = np.asarray(docs, np.int64)
        return (self.fwd_indices[docs].astype(np.int64), dequantize(self.fwd_codes[docs], self.doc_scale[docs]),
                self.inv_norms[docs])

    def sketch(self, docs: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
        if self.residual is None:
            return None
        docs = np.asarray(docs, np.int64)
        return self.residual[0][docs], self.residual[1][docs]

    def terms(self, doc: int) -> dict[int, float]:
        idx, w = self.fwd_indices[doc].tolist(), self.term_weights[doc].tolist()
        return {i: x for i, x in zip(idx, w) if x > 0}

    def feature_stats(self, feature: int) -> tuple[float, float]:
        if self._stats is None:
            values = self.fwd_values
            keep = values > 0
            lat = self.fwd_indices[keep].astype(np.int64)
            val = values[keep]
            top = np.zeros(self.n_latents, np.float32)
            np.maximum.at(top, lat, val)
            self._stats = top, np.bincount(lat, minlength=self.n_latents)
        top, df = self._stats
        return float(top[feature]), float(df[feature]) / max(self.n_docs, 1)

    def describe(self) -> dict[str, Any]:
        """Sizes and settings, for reports."""
        return {"documents": self.n_docs, "latents": self.n_latents,
                "entries": int(np.count_nonzero(self.fwd_codes)),
                "first_pass": self.prefilter is not None,
                "stored_bytes": self.stored_bytes, "memory_bytes": self.memory_bytes,
                "settings": asdict(self.settings), "sae": self.sae_name}


class ConceptRetriever(Retriever):
    """Concept-level sparse retrieval over the SAE's latents (the concept index of the Searcher's SAE)."""

    name = "concept"

    @classmethod
    def build(cls, ctx: BuildContext) -> dict[str, Any]:
        from ..sae.codes import encode_array

        model = ctx.cache.get("sae") or ctx.ws.load_sae(ctx.sae)
        settings = ctx.concept
        codes = encode_array(model, ctx.ws.vectors, k=min(settings.doc_k, model.cfg.n_latents), progress=ctx.progress)
        values = stored_values(codes.values)  # what the index keeps: its norms and residuals are of these
        residual = None
        if settings.scoring == "projection" and settings.residual:
            residual = residual_sketch(ctx.ws.vectors, codes.indices, values, *sae_arrays(model))
        docs = DocumentCodes(codes.indices, values, doc_norms(model, codes.indices, values), model.cfg.n_latents,
                             residual)
        return ctx.store.write_concept(ctx, docs, model)

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

    def describe(self) -> dict[str, Any]:
        """The SAE and the index settings this mode searches with, for reports."""
        info = self.index.describe()
        return {"sae": self.index.sae_name or self.searcher.sae_name, "documents": self.index.n_docs,
                "first_pass": info.get("first_pass", False), "backend": info.get("backend", "embedded"),
                **asdict(self.index.settings)}
