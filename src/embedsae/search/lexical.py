"""Lexical baseline: BM25 over words with bm25s (English stopwords), stored in the workspace."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import numpy as np

from ..errors import WorkspaceError
from .retriever import BuildContext, Query, Retriever


class LexicalIndex:
    """A bm25s retriever over the corpus texts."""

    def __init__(self, retriever, n_docs: int) -> None:
        self.retriever = retriever
        self.n_docs = n_docs

    @classmethod
    def build(cls, texts: Iterable[str] | Iterable[Sequence[str]], *, k1: float = 1.5, b: float = 0.75,
              chunked: bool = False, on_docs: Callable[[int], None] | None = None) -> LexicalIndex:
        """Tokenise (lower case, English stopwords, as bm25s does) and index the texts: a list, or with `chunked`
        an iterable of lists read one at a time, so memory holds one chunk's tokens and the index's arrays, never
        every document's tokens. The scores are bm25s's own (Lucene BM25); `on_docs(n)` is told of every chunk."""
        import bm25s
        import scipy.sparse as sp

        vocab: dict[str, int] = {}
        docs, terms, tfs, lengths = [], [], [], []
        n = 0
        for chunk in (texts if chunked else [texts]):
            tokens = bm25s.tokenize(list(chunk), stopwords="en", show_progress=False, return_ids=False)
            ids = [[vocab.setdefault(t, len(vocab)) for t in doc] for doc in tokens]
            counts = np.fromiter((len(d) for d in ids), np.int64, len(ids))
            flat = np.fromiter((t for d in ids for t in d), np.int64, int(counts.sum()))
            doc = np.repeat(np.arange(n, n + len(ids), dtype=np.int64), counts)
            key, tf = np.unique(doc << 32 | flat, return_counts=True)  # one entry per (document, term)
            docs.append((key >> 32).astype(np.int32))
            terms.append((key & 0xFFFFFFFF).astype(np.int32))
            tfs.append(tf.astype(np.float32))
            lengths.append(counts)
            n += len(ids)
            if on_docs is not None:
                on_docs(len(ids))
        retriever = bm25s.BM25(k1=k1, b=b)
        doc_len = np.concatenate(lengths) if lengths else np.zeros(0, np.int64)
        doc_i, term_i, tf = (np.concatenate(a) if a else np.zeros(0, np.int32) for a in (docs, terms, tfs))
        del docs, terms, tfs
        df = np.bincount(term_i, minlength=len(vocab)).astype(np.float64)
        idf = np.log(1 + (n - df + 0.5) / (df + 0.5)).astype(np.float32)  # bm25s's Lucene idf
        avg = float(doc_len.mean()) if n else 1.0
        norm = (k1 * ((1 - b) + b * doc_len / avg)).astype(np.float32)
        scores = (idf[term_i] * (tf / (norm[doc_i] + tf))).astype(np.float32)
        del tf, norm
        # term-major (CSC over documents x terms), documents ascending within a term (entries come in document order)
        csc = sp.csc_matrix((scores, (doc_i, term_i)), shape=(n, len(vocab)))
        del scores, doc_i, term_i
        retriever.scores = {"data": csc.data, "indices": csc.indices, "indptr": csc.indptr, "num_docs": n}
        if "" not in vocab:
            vocab[""] = len(vocab)
        retriever.vocab_dict = vocab
        retriever.unique_token_ids_set = set(vocab.values())
        retriever.nonoccurrence_array = None  # Lucene BM25 needs none
        return cls(retriever, n)

    def save(self, folder: str | os.PathLike) -> None:
        """Write the index into `folder` (built beside it, then renamed into place)."""
        folder = Path(folder)
        folder.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
        try:
            self.retriever.save(str(tmp), show_progress=False)
            (tmp / "n_docs.txt").write_text(str(self.n_docs))
            old = folder.with_name(f".{folder.name}.old")
            if folder.exists():
                os.replace(folder, old)
            os.replace(tmp, folder)
            shutil.rmtree(old, ignore_errors=True)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    @classmethod
    def load(cls, folder: str | os.PathLike) -> LexicalIndex:
        import bm25s

        folder = Path(folder)
        if not (folder / "n_docs.txt").is_file():
            raise WorkspaceError(f"no BM25 index at {folder}; build it with: embedsae index WORKSPACE")
        from ..integrity import reading

        with reading(folder):  # memory-mapped: a query reads the postings of its own terms only
            return cls(bm25s.BM25.load(str(folder), show_progress=False, mmap=True),
                       int((folder / "n_docs.txt").read_text()))

    def scores(self, query: str) -> np.ndarray:
        """BM25 score of every document for one query (zeros when no query word is in the vocabulary)."""
        import bm25s

        tokens = bm25s.tokenize([query], stopwords="en", show_progress=False, return_ids=False)[0]
        vocab = self.retriever.vocab_dict
        ids = [vocab[t] for t in tokens if t in vocab]
        if not ids:
            return np.zeros(self.n_docs, np.float32)
        return np.asarray(self.retriever.get_scores(ids), np.float32)


class BM25Retriever(Retriever):
    """BM25 over the words of the documents (bm25s), from the query text."""

    name = "bm25"
    needs_text = True
    needs_vector = False

    @classmethod
    def build(cls, ctx: BuildContext) -> dict:
        from ..progress import Tracker
        from .index import folder_bytes, index_dir

        tracker = Tracker(ctx.progress, "bm25", ctx.ws.n_documents, unit="doc")
        chunks = (part["text"].astype(str).tolist() for part in ctx.ws.corpus_batches(["text"]))
        LexicalIndex.build(chunks, chunked=True, on_docs=tracker.update).save(index_dir(ctx.ws) / "bm25")
        tracker.close()
        return {"folder": "index/bm25", "bytes": folder_bytes(index_dir(ctx.ws) / "bm25")}

    def load(self) -> None:
        from .index import folder_bytes, index_dir

        self.index = LexicalIndex.load(index_dir(self.searcher.ws) / "bm25")
        self._bytes = folder_bytes(index_dir(self.searcher.ws) / "bm25")

    def rank(self, query: Query, k: int) -> tuple[np.ndarray, np.ndarray]:
        from .dense import top_k

        i, s = top_k(self.index.scores(query.text)[None, :], k)
        return i[0], s[0]

    def size(self) -> int:
        return self._bytes

    def available(self) -> bool:
        from .index import index_dir, part_built

        ws = self.searcher.ws
        return part_built(ws, "bm25") is not False and (index_dir(ws) / "bm25" / "n_docs.txt").is_file()
