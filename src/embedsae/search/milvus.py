"""The concept index (and the dense vectors) kept in Milvus instead of the workspace, for corpora whose index
outgrows one machine. Optional extra `embedsae[milvus]` (pymilvus; Milvus Lite runs in-process offline).

One collection per workspace and SAE holds, per document: its row (primary key) and id, its concept terms as a
`SPARSE_FLOAT_VECTOR` under an inner-product `SPARSE_INVERTED_INDEX`, its forward code (latent ids and
activations, quantised like the embedded index) and, unless dense search is left out, its dense vector.
Queries are still encoded with the SAE here; Milvus finds the candidates and the final scores are computed as
the embedded index computes them, so both answer with the same hits.

Projection scoring divides each document's score by the norm of its SAE reconstruction and adds the query's
constant ``q . b_pre`` times that inverse norm. Milvus weights must be non-negative, so two extra dimensions carry
the constant: one holds the inverse norm ``s_d`` (for a positive constant), the other ``C - s_d`` with ``C``
the largest ``s_d`` (for a negative one: ``|c| (C - s_d) = |c| C + c s_d``, a shift that is the same for every
document and is taken off again).

`saes/<name>/concept_index.milvus.json` records where the collection is and what the scoring needs.
"""

from __future__ import annotations

import logging
import math
import os
import re
import threading
from collections import OrderedDict
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from .._io import read_json, write_json
from ..errors import InputError, WorkspaceError, require
from ..progress import Tracker
from ..settings import Settings, check
from .compress import stored_values
from .concept import ConceptQuery, ConceptSettings, ConceptStore, DocumentCodes
from .storage import IndexStore, index_info
from .terms import term_weights

if TYPE_CHECKING:
    from ..workspace import Workspace
    from .retriever import BuildContext

logger = logging.getLogger(__name__)

POINTER = "concept_index.milvus.json"
"""Per SAE: where its concept index lives in Milvus (beside where the embedded one would be)."""
BUILDING_SUFFIX = "__building"
MAX_ID_CHARS = 4096


@dataclass
class MilvusSettings(Settings):
    """Where the concept index and the dense vectors live when they are kept in Milvus."""

    uri: str = ""
    """Milvus to write to and search: a server (http://host:19530), a Zilliz Cloud endpoint, or a local `.db`
    file for Milvus Lite (empty: index/milvus.db inside the workspace, with Milvus Lite)."""
    collection: str = ""
    """Collection name (empty: embedsae_<workspace folder>_<SAE name>)."""
    token_env: str = "MILVUS_TOKEN"
    """Environment variable that holds the Milvus token ("user:password" or an API key), when the server needs
    one; the token itself is never written to the workspace."""
    dense_index: Literal["FLAT", "HNSW", "IVF_FLAT", "AUTOINDEX"] = "FLAT"
    """Milvus index of the dense vectors: FLAT is exact (the same hits as the embedded dense search), the others
    approximate and faster on large collections."""
    batch_rows: int = 2048
    """Documents sent to Milvus per insert."""

    def validate(self) -> None:
        super().validate()
        check(self.batch_rows > 0, f"`batch_rows` must be positive, got {self.batch_rows}")
        check(not self.collection or re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,254}", self.collection) is not None,
              f"Milvus collection names use letters, digits and '_' and start with a letter or '_'; got "
              f"'{self.collection}'")


# ---------------------------------------------------------------------------- connection
_CLIENTS: dict[tuple[str, str], Any] = {}
_CLIENTS_LOCK = threading.Lock()


def resolve_uri(ws: Workspace, uri: str) -> str:
    """A server address as given; a Milvus Lite file as an absolute path (searches may run from elsewhere)."""
    if not uri:
        return str((ws.path / "index" / "milvus.db").resolve())
    if re.match(r"^[a-z][a-z0-9+.-]*://", uri):
        return uri
    if not uri.endswith(".db"):
        raise InputError(f"Milvus `uri` '{uri}' is neither a server address (http://host:19530) nor a Milvus Lite "
                         "file ending in .db")
    return str(Path(uri).expanduser().resolve())


def client(uri: str, token_env: str = "MILVUS_TOKEN"):
    """One MilvusClient per address and token in this process (Milvus Lite starts a server per client)."""
    pymilvus = require("pymilvus", "the Milvus index backend", "milvus")
    token = os.environ.get(token_env, "") if token_env else ""
    key = (uri, token)
    with _CLIENTS_LOCK:
        c = _CLIENTS.get(key)
        if c is None:
            if uri.endswith(".db"):
                Path(uri).parent.mkdir(parents=True, exist_ok=True)
            try:
                c = pymilvus.MilvusClient(uri=uri, token=token)
            except Exception as exc:  # pymilvus raises its own exception types for every connection failure
                raise WorkspaceError(f"cannot connect to Milvus at {uri}: {exc}") from exc
            _CLIENTS[key] = c
        return c


def default_collection(ws: Workspace, sae: str) -> str:
    """embedsae_<workspace folder>_<SAE>, with every character Milvus does not allow replaced by '_'."""
    name = re.sub(r"[^A-Za-z0-9_]", "_", f"embedsae_{ws.path.resolve().name}_{sae}")
    return name[:200]


def pointer_path(ws: Workspace, sae: str) -> Path:
    return ws.sae_dir(sae) / POINTER


# ---------------------------------------------------------------------------- terms
def _sparse_rows(lat: np.ndarray, val: np.ndarray, extra: list[dict[int, float]] | None = None) -> list[dict[int, float]]:
    rows = []
    for i in range(len(lat)):
        keep = val[i] > 0
        row = dict(zip(lat[i][keep].tolist(), val[i][keep].tolist()))
        if extra is not None:
            row.update(extra[i])
        rows.append(row)
    return rows


# ---------------------------------------------------------------------------- building
def write_collection(ctx: BuildContext, docs: DocumentCodes) -> dict[str, Any]:
    """Write the concept index (and the dense vectors, when dense search is on) into a new collection that
    replaces the old one at the end; write the pointer; return what index.json records."""
    pymilvus = require("pymilvus", "the Milvus index backend", "milvus")
    ws, settings, ms = ctx.ws, ctx.concept, ctx.milvus or MilvusSettings()
    uri = resolve_uri(ws, ms.uri)
    name = ms.collection or default_collection(ws, ctx.sae)
    c = client(uri, ms.token_env)
    ids = ws.corpus["id"].astype(str).tolist()
    if ids and max(map(len, ids)) > MAX_ID_CHARS:
        raise InputError(f"document ids longer than {MAX_ID_CHARS} characters do not fit a Milvus collection; "
                         "shorten the ids of the corpus")
    n_latents = docs.n_latents
    lat = np.ascontiguousarray(docs.indices, np.int64)
    val = stored_values(docs.values)  # what the embedded index keeps
    inv = (1.0 / np.maximum(np.asarray(docs.norms, np.float32), 1e-6)).astype(np.float32)
    scale = float(inv.max()) if len(inv) else 1.0
    terms = term_weights(lat, val, inv, n_latents, settings)
    normalised = settings.scoring == "projection" and not settings.residual  # per-document constants below
    residual = docs.residual if settings.scoring == "projection" and settings.residual else None
    with_dense = "dense" in ctx.parts
    dim = ws.dim
    schema = pymilvus.MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False,
                                                 description=f"embedsae concept index of SAE '{ctx.sae}'")
    schema.add_field("row", pymilvus.DataType.INT64, is_primary=True)
    schema.add_field("doc_id", pymilvus.DataType.VARCHAR, max_length=MAX_ID_CHARS)
    schema.add_field("concept", pymilvus.DataType.SPARSE_FLOAT_VECTOR)
    schema.add_field("lat", pymilvus.DataType.ARRAY, element_type=pymilvus.DataType.INT32, max_capacity=lat.shape[1])
    schema.add_field("val", pymilvus.DataType.ARRAY, element_type=pymilvus.DataType.FLOAT, max_capacity=lat.shape[1])
    schema.add_field("inv_norm", pymilvus.DataType.FLOAT)
    if residual is not None:
        schema.add_field("resid", pymilvus.DataType.ARRAY, element_type=pymilvus.DataType.INT32,
                         max_capacity=residual[0].shape[1])
        schema.add_field("resid_scale", pymilvus.DataType.FLOAT)
    params = c.prepare_index_params()
    params.add_index("concept", index_type="SPARSE_INVERTED_INDEX", metric_type="IP")
    if with_dense:
        schema.add_field("dense", pymilvus.DataType.FLOAT_VECTOR, dim=dim)
        params.add_index("dense", index_type=ms.dense_index, metric_type="COSINE")
    building = name + BUILDING_SUFFIX
    if c.has_collection(building):  # left by a killed build
        c.drop_collection(building)
    c.create_collection(building, schema=schema, index_params=params)
    n = len(lat)
    tracker = Tracker(ctx.progress, "milvus", n, unit="doc")
    vectors = ws.embeddings
    try:
        for a in range(0, n, ms.batch_rows):
            b = min(a + ms.batch_rows, n)
            extra = None
            if normalised:
                extra = [{n_latents: float(s)} | ({n_latents + 1: float(scale - s)} if scale - s > 0 else {})
                         for s in inv[a:b].tolist()]
            elif residual is not None:  # a term of every document: a query that means to score them all asks for it
                extra = [{n_latents: 1.0}] * (b - a)
            rows = [{"row": a + i, "doc_id": ids[a + i], "concept": sparse, "lat": lat[a + i].tolist(),
                     "val": val[a + i].tolist(), "inv_norm": float(inv[a + i])}
                    for i, sparse in enumerate(_sparse_rows(lat[a:b], terms[a:b], extra))]
            if residual is not None:
                for i, r in enumerate(rows):
                    r["resid"], r["resid_scale"] = residual[0][a + i].tolist(), float(residual[1][a + i])
            if with_dense:
                block = np.asarray(vectors[a:b], np.float32)
                for r, v in zip(rows, block):
                    r["dense"] = v.tolist()
            c.insert(building, rows)
            tracker.update(b - a)
        c.flush(building)
    except BaseException:
        c.drop_collection(building)
        raise
    finally:
        tracker.close()
    if c.has_collection(name):
        c.drop_collection(name)
    c.rename_collection(building, name)
    doc_max, df = feature_stats(lat, val, n_latents)
    pointer = {"uri": ms.uri or "", "resolved_uri": uri, "collection": name, "token_env": ms.token_env,
               "documents": n, "latents": int(n_latents), "doc_k": int(lat.shape[1]), "scale": scale,
               "dense": with_dense, "dense_index": ms.dense_index if with_dense else None,
               "residual": residual is not None,
               "settings": asdict(settings), "sae": ctx.sae,
               "feature_doc_max": [round(float(x), 5) for x in doc_max], "feature_docs": df.tolist()}
    write_json(pointer_path(ws, ctx.sae), pointer)
    stored = int(n * (lat.shape[1] * 16 + 16 + (dim * 4 if with_dense else 0)
                      + (4 * residual[0].shape[1] + 4 if residual is not None else 0)))
    logger.info(f"wrote {n} documents to Milvus collection '{name}' at {uri}")
    return {"backend": "milvus", "uri": uri, "collection": name, "documents": n, "latents": int(n_latents),
            "dense": with_dense, "settings": asdict(settings), "sae": ctx.sae, "stored_bytes_estimate": stored}


def feature_stats(lat: np.ndarray, val: np.ndarray, n_latents: int) -> tuple[np.ndarray, np.ndarray]:
    """Per latent: its largest activation over the documents and how many documents it fires in."""
    keep = val > 0
    flat, v = lat[keep].astype(np.int64), val[keep]
    doc_max = np.zeros(n_latents, np.float32)
    np.maximum.at(doc_max, flat, v)
    return doc_max, np.bincount(flat, minlength=n_latents)


def read_pointer(ws: Workspace, sae: str) -> dict[str, Any] | None:
    path = pointer_path(ws, sae)
    return read_json(path) if path.is_file() else None


# ---------------------------------------------------------------------------- searching
class MilvusConceptIndex(ConceptStore):
    """The concept index of one SAE in a Milvus collection: candidates from the collection's inverted index,
    scored as the embedded index scores them."""

    CACHE_ROWS = 8192
    MAX_LIMIT = 16384
    """Milvus's largest search limit: the most candidates one query scores."""

    def __init__(self, ws: Workspace, pointer: dict[str, Any]) -> None:
        self.pointer = pointer
        self.settings = ConceptSettings.from_dict(pointer["settings"])
        if not pointer.get("residual"):  # written without residual sketches (or before they existed)
            self.settings = self.settings.replace(residual=False)
        self.sae_name = pointer["sae"]
        self.n_docs = int(pointer["documents"])
        self.n_latents = int(pointer["latents"])
        self.doc_k = int(pointer["doc_k"])
        self.scale = float(pointer["scale"])
        self.collection = pointer["collection"]
        self.client = client(pointer["resolved_uri"], pointer.get("token_env", "MILVUS_TOKEN"))
        self._doc_max = np.asarray(pointer["feature_doc_max"], np.float32)
        self._docs = np.asarray(pointer["feature_docs"], np.int64)
        self._rows: OrderedDict[int, tuple] = OrderedDict()
        self._fields = list(FORWARD_FIELDS) + (list(RESIDUAL_FIELDS) if pointer.get("residual") else [])
        self._lock = threading.Lock()
        if not self.client.has_collection(self.collection):
            raise WorkspaceError(f"the Milvus collection '{self.collection}' at {pointer['resolved_uri']} is gone; "
                                 f"rebuild the index of SAE '{self.sae_name}' (embedsae index) with the Milvus backend")
        self.client.load_collection(self.collection)
        stored = int(self.client.get_collection_stats(self.collection).get("row_count", self.n_docs))
        if stored != ws.n_documents:
            raise WorkspaceError(f"the Milvus collection '{self.collection}' holds {stored} documents but {ws.path} "
                                 f"holds {ws.n_documents}; rebuild the index of SAE '{self.sae_name}' (embedsae index)")

    @property
    def stored_bytes(self) -> int:
        return int(self.n_docs * (self.doc_k * 16 + 16))

    def describe(self) -> dict[str, Any]:
        return {"documents": self.n_docs, "latents": self.n_latents, "backend": "milvus",
                "collection": self.collection, "uri": self.pointer["resolved_uri"],
                "settings": asdict(self.settings), "sae": self.sae_name}

    def feature_stats(self, feature: int) -> tuple[float, float]:
        return float(self._doc_max[feature]), float(self._docs[feature]) / max(self.n_docs, 1)

    def _read(self, docs: np.ndarray) -> list[tuple]:
        """The stored rows of some documents (recently read documents from a cache)."""
        docs = [int(d) for d in np.asarray(docs).reshape(-1)]
        with self._lock:
            found = {d: self._rows[d] for d in docs if d in self._rows}
        missing = [d for d in dict.fromkeys(docs) if d not in found]
        if missing:
            got = self.client.get(self.collection, ids=missing, output_fields=self._fields)
            fetched = {int(r["row"]): _forward_row(r) for r in got}
            if len(fetched) != len(missing):
                raise WorkspaceError(f"Milvus collection '{self.collection}' lacks documents it was built with; "
                                     "rebuild the index")
            found.update(fetched)
            self._remember(fetched)
        return [found[d] for d in docs]

    def forward(self, docs: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Latent ids, activations and inverse reconstruction norms of some documents, read from Milvus."""
        rows = self._read(docs)
        width = max((len(r[0]) for r in rows), default=0)
        idx = np.zeros((len(rows), width), np.int64)
        val = np.zeros((len(rows), width), np.float32)
        for i, (li, vi, *_) in enumerate(rows):
            idx[i, : len(li)], val[i, : len(vi)] = li, vi
        return idx, val, np.asarray([r[2] for r in rows], np.float32)

    def sketch(self, docs: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
        if not self.pointer.get("residual"):
            return None
        rows = self._read(docs)
        return (np.asarray([r[3] for r in rows], np.uint8).reshape(len(rows), -1),
                np.asarray([r[4] for r in rows], np.float32))

    def terms(self, doc: int) -> dict[int, float]:
        got = self.client.get(self.collection, ids=[int(doc)], output_fields=["concept"])
        terms = got[0]["concept"] if got else {}
        return {int(i): float(v) for i, v in terms.items() if int(i) < self.n_latents}

    def _remember(self, rows: dict[int, tuple]) -> None:
        with self._lock:
            self._rows.update(rows)
            while len(self._rows) > self.CACHE_ROWS:
                self._rows.popitem(last=False)

    def _query_terms(self, query: ConceptQuery) -> tuple[dict[int, float], float]:
        keep = np.asarray(query.weights) > 0
        terms = dict(zip(np.asarray(query.latents)[keep].tolist(), np.asarray(query.weights, np.float32)[keep].tolist()))
        shift = 0.0
        if self.uses_residual and self.n_docs <= self.settings.exact_docs:
            terms[self.n_latents] = 1e-6  # every document is a candidate (scored exactly below)
        elif self.settings.scoring == "projection" and not self.uses_residual and query.offset:
            if query.offset > 0:
                terms[self.n_latents] = float(query.offset)
            else:
                terms[self.n_latents + 1] = float(-query.offset)
                shift = -query.offset * self.scale
        return terms, shift

    def candidates(self, query: ConceptQuery, depth: int) -> tuple[np.ndarray, np.ndarray]:
        """The top `depth` documents by the query's terms alone, with those scores."""
        terms, shift = self._query_terms(query)
        if not terms:
            return np.zeros(0, np.int64), np.zeros(0, np.float32)
        res = self.client.search(self.collection, data=[terms], anns_field="concept", limit=min(depth, self.MAX_LIMIT),
                                 search_params={"metric_type": "IP"}, output_fields=self._fields)[0]
        self._remember({int(h["row"]): _forward_row(h) for h in res})
        rows = np.asarray([int(h["row"]) for h in res], np.int64)
        return rows, np.asarray([h["distance"] for h in res], np.float32) - np.float32(shift)

    def search(self, query: ConceptQuery, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """Top-k document rows and scores for one query: up to `exact_docs` documents, every document the
        collection returns is scored exactly (the embedded index's ranking); above, the best `rerank`."""
        s = self.settings
        exact = s.scoring == "projection" and query.full_weights is not None
        depth = self.n_docs if self.n_docs <= s.exact_docs else max(k, s.rerank if exact else k)
        cand, scores = self.candidates(query, depth)
        if exact and len(cand):
            scores = self.exact(cand, query)
            order = np.argsort(-scores, kind="stable")[:k]
            return cand[order], scores[order]
        return cand[:k], scores[:k]


FORWARD_FIELDS = ("row", "lat", "val", "inv_norm")
RESIDUAL_FIELDS = ("resid", "resid_scale")


def _forward_row(r: Any) -> tuple:
    """(latent ids, activations, inverse norm, residual bits or None, residual scale) of a stored row."""
    try:  # a search hit reads its output fields by key (not with .get)
        bits, scale = np.asarray(r["resid"], np.uint8), float(r["resid_scale"])
    except KeyError:
        bits, scale = None, 0.0
    return np.asarray(r["lat"], np.int64), np.asarray(r["val"], np.float32), float(r["inv_norm"]), bits, scale


class MilvusStore(IndexStore):
    """A Milvus collection per workspace and SAE holds the concept index and, with dense search on, the vectors."""

    name = "milvus"

    @classmethod
    def check_build(cls, parts, ann: bool) -> None:
        if "concept" not in parts:
            raise InputError("the Milvus backend keeps the concept index (and the dense vectors beside it): build the "
                             "concept part too")
        if ann:
            raise InputError("the approximate dense index is a file of the workspace; with the Milvus backend choose "
                             "Milvus's own dense index (setting `dense_index`) instead of `ann`")

    def _write_concept(self, ctx, docs, sae) -> dict[str, Any]:
        return write_collection(ctx, docs)

    def has_concept(self, sae: str) -> bool:
        return pointer_path(self.ws, sae).is_file()

    def concept(self, sae: str) -> MilvusConceptIndex:
        pointer = read_pointer(self.ws, sae)
        if pointer is None:
            raise WorkspaceError(f"no Milvus concept index of SAE '{sae}' in {self.ws.path}; build it with: embedsae "
                                 "index WORKSPACE --backend milvus")
        return MilvusConceptIndex(self.ws, pointer)

    def drop_concept(self, sae: str) -> None:
        pointer_path(self.ws, sae).unlink(missing_ok=True)  # the collection stays where it is

    def write_dense(self, ctx) -> dict[str, Any]:  # the concept part writes the vectors into its collection
        return {"kind": "Milvus collection (the concept index's)", "bytes": int(self.ws.n_documents * self.ws.dim * 4)}

    def dense(self, ann: bool) -> tuple[Any, int]:
        info = index_info(self.ws) or {}
        pointer = read_pointer(self.ws, info.get("sae", "")) if info.get("sae") else None
        if not pointer or not pointer.get("dense"):
            raise WorkspaceError(f"the Milvus index of {self.ws.path} holds no dense vectors; rebuild it with dense "
                                 "search on")
        return MilvusDenseIndex(pointer, self.ws.dim), int(self.ws.n_documents * self.ws.dim * 4)


class MilvusDenseIndex:
    """Cosine search over the dense vectors kept in a Milvus collection."""

    def __init__(self, pointer: dict[str, Any], dim: int) -> None:
        self.collection = pointer["collection"]
        self.dim = dim
        self.client = client(pointer["resolved_uri"], pointer.get("token_env", "MILVUS_TOKEN"))
        self.client.load_collection(self.collection)

    def search(self, queries: np.ndarray, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
        q = np.atleast_2d(np.asarray(queries, np.float32))
        if q.shape[1] != self.dim:
            raise InputError(f"query vectors are {q.shape[1]}-d but the index holds {self.dim}-d vectors")
        res = self.client.search(self.collection, data=q.tolist(), anns_field="dense", limit=min(k, 16384),
                                 search_params={"metric_type": "COSINE"}, output_fields=["row"])
        width = max((len(r) for r in res), default=0)
        rows = np.full((len(q), width), -1, np.int64)
        scores = np.full((len(q), width), -math.inf, np.float32)
        for i, hits in enumerate(res):
            rows[i, : len(hits)] = [int(h["row"]) for h in hits]
            scores[i, : len(hits)] = [h["distance"] for h in hits]
        return rows, scores
