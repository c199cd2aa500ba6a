"""Lexical baseline: BM25 over words with bm25s (English stopwords), stored in the workspace."""

from __future__ import annotations

import os
import shutil
import tempfile
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
    def build(cls, texts: list[str], *, k1: float = 1.5, b: float = 0.75) -> LexicalIndex:
        """Tokenise (lower case, English stopwords) and index the texts."""
        import bm25s

        tokens = bm25s.tokenize(texts, stopwords="en", show_progress=False)
        retriever = bm25s.BM25(k1=k1, b=b)
        retriever.index(tokens, show_progress=False)
        return cls(retriever, len(texts))

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

        with reading(folder):
            return cls(bm25s.BM25.load(str(folder), show_progress=False), int((folder / "n_docs.txt").read_text()))

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
        from .index import folder_bytes, index_dir

        LexicalIndex.build(ctx.ws.corpus["text"].astype(str).tolist()).save(index_dir(ctx.ws) / "bm25")
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
