"""The concept index's term weights, once for every storage backend.

A document's terms are the latents it keeps (forward layout: documents x doc_k latent ids and activations).
What each term weighs in a query's score depends on the scoring:

- ``projection``: activation x the inverse norm of the document's SAE reconstruction, so that the query's
  projection weights summed over them (plus ``q . b_pre`` times that inverse norm) give the cosine of the
  query with the reconstruction; with residual sketches (compress.py) the activation itself, so that the sum
  plus ``q . b_pre`` and the sketch's estimate gives the dot product with the document's unit vector;
- ``dot``: the activation itself;
- ``bm25``: BM25 over latents: the latent's idf times its activation saturated by `k1`, normalised by the
  document's code mass (the sum of its activations) against the corpus mean with `b`.

The embedded index and the Milvus collection both store these weights (`term_weights`), so both rank alike.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from .concept import ConceptSettings


def bm25_weight(tf: np.ndarray, idf: np.ndarray, doc_len: np.ndarray, avg_len: float, k1: float, b: float) -> np.ndarray:
    """BM25 weight of a latent in a document: its idf times its activation `tf` saturated by k1, normalised by
    the document's code mass `doc_len` against the corpus mean `avg_len`."""
    return idf * tf * (k1 + 1) / (tf + k1 * (1 - b + b * doc_len / max(avg_len, 1e-9)))


def latent_idf(indices: np.ndarray, values: np.ndarray, n_latents: int) -> np.ndarray:
    """BM25's idf of every latent over the documents' codes (a latent fires in a document when its value is > 0)."""
    keep = values > 0
    df = np.bincount(indices[keep].astype(np.int64), minlength=n_latents).astype(np.float64)
    return np.log1p((len(indices) - df + 0.5) / (df + 0.5)).astype(np.float32)


def term_weights(indices: np.ndarray, values: np.ndarray, inv_norms: np.ndarray, n_latents: int,
                 settings: ConceptSettings) -> np.ndarray:
    """Each kept latent's weight in its document, in the forward layout (documents x doc_k, float32; 0 where
    the document keeps no latent)."""
    tf = np.asarray(values, np.float32)
    keep = tf > 0
    if settings.scoring == "projection" and settings.residual:  # the dot product with d, not a cosine
        w = tf
    elif settings.scoring == "projection":
        w = tf * np.asarray(inv_norms, np.float32)[:, None]
    elif settings.scoring == "dot":
        w = tf
    else:
        dl = np.where(keep, tf, np.float32(0)).sum(1, dtype=np.float64).astype(np.float32)
        avg = float(dl.mean()) if len(dl) else 1.0
        idf = latent_idf(indices, tf, n_latents)
        w = bm25_weight(tf, idf[np.asarray(indices, np.int64)], dl[:, None], avg, settings.k1, settings.b)
    return np.where(keep, w, np.float32(0)).astype(np.float32)
