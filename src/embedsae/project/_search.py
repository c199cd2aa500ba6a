"""Search through a project: every mode with every setting (ANN, hybrid fusion and weights, steering), the
query's own features, and retrieval evaluation on a BEIR benchmark."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from ..records import FeatureActivation, RetrievalRow, SearchResponse
from ._reads import Reads

if TYPE_CHECKING:
    from ..progress import ProgressCallback
    from ..search.hybrid import HybridSettings


class Search(Reads):
    def search(self, query: str | np.ndarray, mode: str = "dense", top: int = 10, *,
               steer: Sequence[str] | None = None, steer_form: str = "residual", explain: bool = True,
               ann: bool = False, hybrid: HybridSettings | Mapping[str, Any] | None = None,
               vector: np.ndarray | None = None, query_features: bool = False) -> SearchResponse:
        """Ranked hits for a query text (or vector), each with the concepts it shares with the query.

        `steer`: feature edits ("ID=VALUE", '"name"=VALUE', "=+X" raises, "=-X" lowers) applied to the query
        before ranking; `ann`: dense search through the approximate index; `hybrid`: the hybrid's fusion and
        weights (a HybridSettings or its fields); `vector`: the text's query vector when already embedded;
        `query_features`: also return the query's active features (the steering sliders' starting values)."""
        searcher = self.searcher_for(ann=ann, hybrid=self._hybrid(hybrid))
        if isinstance(query, str) and vector is None and not self.workspace.can_embed and mode != "bm25":
            vector = self.document_vectors([query])[0]  # vectors with no model: a document's id is the query
        if steer is not None and not isinstance(steer, str | bytes):
            steer = [str(s) for s in steer]
        result = searcher.search(query, mode, top, steer=steer or None, steer_form=steer_form, explain=explain,
                                 vector=vector)
        sae = self.sae_name if self.sae_names() else None
        response = SearchResponse.from_dict({**result.to_dict(), "sae": sae})
        if query_features and isinstance(query, str):
            response.query_features = self.query_features(query, vector=vector)
        return response

    def query_features(self, query: str, *, vector: np.ndarray | None = None) -> list[FeatureActivation]:
        """The query's active features with name and activation, strongest first."""
        vectors = None if vector is None else np.asarray(vector, np.float32)[None, :]
        n = int(self.sae_config["n_latents"])
        return self.activations([query], top=n, vectors=vectors)[0].top_features

    def embed_queries(self, texts: list[str]) -> np.ndarray:
        """Query vectors made by the workspace's model (or looked up, in a word workspace; a workspace of vectors
        with no model takes document ids: their vectors); concurrent callers share forward passes."""
        if not self.workspace.can_embed:
            return self.document_vectors(texts)
        return self.searcher.embed(texts)

    def submit_embed(self, texts: list[str]):
        """A future of `embed_queries(texts)`, for callers that wait without holding a thread (an async server)."""
        if not self.workspace.can_embed:
            from concurrent.futures import Future

            done: Future = Future()
            try:
                done.set_result(self.document_vectors(texts))
            except Exception as exc:  # noqa: BLE001 - the caller gets it from the future
                done.set_exception(exc)
            return done
        return self.searcher.submit_embed(texts)

    def document_vectors(self, ids: list[str]) -> np.ndarray:
        """The stored vectors of documents named by their ids (how a workspace of vectors with no model is queried:
        the documents like a given one); InputError for a text that is no document's id."""
        from .. import layout
        from ..errors import InputError

        rows_of = self._part("rows", (layout.CORPUS,), lambda: {d: i for i, d in enumerate(self.ids)}, sae_files=False)
        rows = [rows_of.get(str(t).strip()) for t in ids]
        if None in rows:
            bad = str(ids[rows.index(None)])
            raise InputError(f"workspace {self.path} holds precomputed vectors with no model to embed text: "
                             f"'{bad[:60]}' is not one of its document ids; give a document's id (e.g. "
                             f"'{self.ids[0]}') to find the documents like it, a query vector (`query_vector`), or "
                             "search by words (BM25)")
        return np.asarray(self.workspace.embeddings[np.asarray(rows)], dtype=np.float32)

    def modes(self) -> list[str]:
        """The registered search modes this workspace is indexed for."""
        return self.searcher.modes()

    def evaluate_retrieval(self, beir: str | os.PathLike, *, split: str = "test", modes: Sequence[str] | str = "all",
                           ann: bool = False, hybrid: HybridSettings | Mapping[str, Any] | None = None,
                           progress: ProgressCallback | None = None) -> list[RetrievalRow]:
        """nDCG@10, MRR@10, Recall@100, latency and index bytes per mode on a BEIR benchmark of this corpus
        (`modes="all"`: every mode the workspace is indexed for)."""
        from ..search.evaluate import evaluate_retrieval

        searcher = self.searcher_for(ann=ann, hybrid=self._hybrid(hybrid))
        rows = evaluate_retrieval(self.workspace, beir, split=split, modes="all" if modes == "all" else list(modes),
                                  searcher=searcher, progress=progress)
        return [RetrievalRow.from_dict(r) for r in rows]

    def _hybrid(self, hybrid: HybridSettings | Mapping[str, Any] | None) -> HybridSettings | None:
        if hybrid is None or not isinstance(hybrid, Mapping):
            return hybrid
        from ..search.hybrid import HybridSettings

        given = {k: v for k, v in hybrid.items() if v is not None}
        return HybridSettings(**given) if given else None
