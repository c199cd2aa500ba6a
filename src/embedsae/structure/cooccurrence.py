"""Co-occurrence of features over documents, from the sparse codes (sparse matrix arithmetic throughout)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import scipy.sparse as sp

from ..errors import InputError

if TYPE_CHECKING:
    from ..sae.codes import Codes


NORMALISATIONS = ("min", "max", "sqrt")


@dataclass
class Cooccurrence:
    """How often features fire together: `counts[i, j]` = documents where both i and j fire.

    `counts` is a symmetric CSR matrix (latents x latents) whose diagonal holds each feature's document count
    (`freq`); `n_docs` is the number of documents.
    """

    counts: sp.csr_matrix
    freq: np.ndarray
    n_docs: int

    @property
    def density(self) -> np.ndarray:
        """Share of documents in which each feature fires."""
        return self.freq / max(self.n_docs, 1)

    def save(self, path, key: str) -> None:
        """Write the counts as .npz (atomically); `key` is the codes' (sae.codes.codes_key)."""
        from .._io import atomic_path

        c = self.counts
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as f:
                np.savez(f, indptr=c.indptr, indices=c.indices, data=c.data.astype(np.float32), freq=self.freq,
                         n_docs=np.int64(self.n_docs), key=np.str_(key))

    def normalised(self, features: np.ndarray | None = None, *, threshold: float = 0.0,
                   kind: str = "min") -> sp.csr_matrix:
        """Co-occurrence divided by feature frequency, symmetric, diagonal removed, entries below `threshold` dropped.

        `kind` picks the divisor of C_ij: "min" = min(n_i, n_j) + 1 (the share of the sparser feature's documents
        in which the denser one fires too: the larger of the seed's two row normalisations; used for the family
        statistics), "max" = max(n_i, n_j) + 1 (the smaller one), "sqrt" = sqrt(n_i n_j) + 1 (cosine of the two
        features' firing patterns). With `features`, the matrix is restricted to those rows and columns.
        """
        if kind not in NORMALISATIONS:
            raise InputError(f"unknown co-occurrence normalisation '{kind}'; use one of {', '.join(NORMALISATIONS)}")
        mat = self.counts if features is None else self.counts[features][:, features]
        freq = self.freq if features is None else self.freq[features]
        mat = sp.coo_matrix(mat)
        keep = mat.row != mat.col
        rows, cols, vals = mat.row[keep], mat.col[keep], mat.data[keep].astype(np.float64)
        fr, fc = freq[rows].astype(np.float64), freq[cols].astype(np.float64)
        if kind == "min":
            vals = vals / (np.minimum(fr, fc) + 1.0)
        elif kind == "max":
            vals = vals / (np.maximum(fr, fc) + 1.0)
        else:
            vals = vals / (np.sqrt(fr * fc) + 1.0)
        ok = vals >= threshold if threshold > 0 else vals > 0
        out = sp.csr_matrix((vals[ok], (rows[ok], cols[ok])), shape=mat.shape)
        out.sort_indices()
        return out

    def pmi(self, i: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Features co-occurring with feature `i`: (ids, counts, pointwise mutual information), self excluded."""
        row = self.counts.getrow(i)
        ids, counts = row.indices, row.data.astype(np.float64)
        keep = ids != i
        ids, counts = ids[keep], counts[keep]
        with np.errstate(divide="ignore"):
            pmi = np.log(counts * self.n_docs / (self.freq[i] * self.freq[ids]))
        return ids, counts, pmi


def binary_codes(codes: Codes) -> sp.csr_matrix:
    """Documents x latents 0/1 matrix of which features fire in which document."""
    mat = codes.to_csr()
    mat.data = np.ones_like(mat.data, dtype=np.float32)
    return mat


BLOCK_ROWS = 65_536
"""Documents whose codes are read at a time when counting co-occurrences."""


def cooccurrence(codes: Codes) -> Cooccurrence:
    """The feature co-occurrence counts of a set of sparse codes (Bᵀ B for the binary firing matrix B), summed
    block by block of documents, so only one block's codes are in memory at a time (codes may be memory-mapped)."""
    from ..sae.codes import Codes as _Codes

    counts = None
    freq = np.zeros(codes.n_latents, np.float64)
    for start in range(0, len(codes), BLOCK_ROWS):
        b = binary_codes(_Codes(np.asarray(codes.indices[start : start + BLOCK_ROWS]),
                                np.asarray(codes.values[start : start + BLOCK_ROWS]), codes.n_latents))
        part = (b.T @ b).tocsr()
        counts = part if counts is None else counts + part
        freq += np.asarray(b.sum(axis=0)).ravel()
    if counts is None:
        counts = sp.csr_matrix((codes.n_latents, codes.n_latents), dtype=np.float32)
    counts.data = np.rint(counts.data)
    counts.sort_indices()
    return Cooccurrence(counts=counts, freq=freq, n_docs=len(codes))


def segment_sums(values: np.ndarray, indptr: np.ndarray) -> np.ndarray:
    """Sum of values[indptr[i]:indptr[i + 1]] for each i, in float64 (0 for an empty segment, wherever it is)."""
    total = np.concatenate([[0.0], np.cumsum(values, dtype=np.float64)])
    return total[indptr[1:]] - total[indptr[:-1]]


class ActivationStats:
    """Per feature: the documents it fires on with its activations (feature-major, CSC arrays) and activation sums,
    kept to show a feature's documents and to correlate one feature with all others quickly. The feature-major
    arrays may be memory-mapped (`stored_stats`); correlations read the row-major `codes`."""

    def __init__(self, codes: Codes, indptr: np.ndarray | None = None, docs: np.ndarray | None = None,
                 acts: np.ndarray | None = None, sums: np.ndarray | None = None, sq: np.ndarray | None = None) -> None:
        self.codes = codes
        if indptr is None:
            csc = codes.to_csr().tocsc()
            indptr, docs, acts = csc.indptr, csc.indices, csc.data
            sums, sq = segment_sums(acts, indptr), segment_sums(np.square(acts, dtype=np.float64), indptr)
        self.indptr, self.docs, self.acts = indptr, docs, acts
        self.sums, self.sq = np.asarray(sums, np.float64), np.asarray(sq, np.float64)
        self.n = len(codes)
        self.mean = self.sums / max(self.n, 1)
        self.var = self.sq / max(self.n, 1) - self.mean**2

    def column(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """(documents, activations) where feature `i` fires."""
        lo, hi = int(self.indptr[i]), int(self.indptr[i + 1])
        return np.asarray(self.docs[lo:hi]), np.asarray(self.acts[lo:hi])

    def correlation(self, i: int) -> np.ndarray:
        """Pearson correlation, over documents, between feature `i`'s activation and every feature's (NaN if constant)."""
        docs, acts = self.column(i)
        order = np.argsort(docs, kind="stable")  # rows read in ascending order (memory-mapped codes)
        idx = np.asarray(self.codes.indices[docs[order]]).ravel()
        val = np.asarray(self.codes.values[docs[order]], np.float64) * acts[order, None].astype(np.float64)
        cross = np.bincount(idx, weights=val.ravel(), minlength=len(self.mean))
        cov = cross / self.n - self.mean * self.mean[i]
        with np.errstate(divide="ignore", invalid="ignore"):
            corr = cov / np.sqrt(self.var * self.var[i])
        corr[self.var <= 1e-12] = np.nan
        return corr

    def save(self, path, key: str) -> None:
        """Write the feature-major arrays and sums as .npz (atomically); `key` is the codes' (sae.codes.codes_key)."""
        from .._io import atomic_path

        with atomic_path(path) as tmp:
            with open(tmp, "wb") as f:
                np.savez(f, indptr=np.asarray(self.indptr, np.int64), docs=np.asarray(self.docs, np.int32),
                         acts=np.asarray(self.acts, np.float32), sums=self.sums, sq=self.sq, key=np.str_(key))


def activation_correlation(codes: Codes, i: int) -> np.ndarray:
    """Pearson correlation, over documents, between feature `i`'s activation and every feature's (NaN if constant)."""
    return ActivationStats(codes).correlation(i)


def stored_stats(ws, name: str, codes: Codes) -> ActivationStats | None:
    """The SAE's stored activation statistics (memory-mapped) when they are there and match its codes, else None."""
    from .. import layout
    from .._io import load_npz
    from ..integrity import reading
    from ..sae.codes import codes_key

    path = ws.sae_file(name, layout.ACTIVATIONS)
    if not path.is_file():
        return None
    with reading(path):
        z = load_npz(path)
        if str(z["key"]) != codes_key(ws, name) or len(z["indptr"]) != codes.n_latents + 1:
            return None
        return ActivationStats(codes, z["indptr"], z["docs"], z["acts"], z["sums"], z["sq"])


def stored_cooccurrence(ws, name: str) -> Cooccurrence | None:
    """The SAE's stored co-occurrence counts when they are there and match its codes, else None."""
    from .. import layout
    from ..integrity import reading
    from ..sae.codes import codes_key

    path = ws.sae_file(name, layout.COOCCURRENCE)
    if not path.is_file():
        return None
    with reading(path), np.load(path) as z:
        if str(z["key"]) != codes_key(ws, name):
            return None
        n = len(z["freq"])
        counts = sp.csr_matrix((z["data"], z["indices"], z["indptr"]), shape=(n, n))
        return Cooccurrence(counts=counts, freq=z["freq"], n_docs=int(z["n_docs"]))


def feature_cooccurrence(ws, name: str, codes: Codes, *, save: bool = False) -> Cooccurrence:
    """The co-occurrence counts of an SAE's codes: stored ones when they match, else counted (and written with
    `save`: stages save, views never write)."""
    from .. import layout
    from ..sae.codes import codes_key

    cooc = stored_cooccurrence(ws, name)
    if cooc is None:
        cooc = cooccurrence(codes)
        if save:
            cooc.save(ws.sae_file(name, layout.COOCCURRENCE), codes_key(ws, name))
    return cooc


def activation_stats(ws, name: str, codes: Codes, *, save: bool = False) -> ActivationStats:
    """The activation statistics of an SAE's codes: stored ones when they match, else computed (and written with
    `save`: stages save, views never write)."""
    from .. import layout
    from ..sae.codes import codes_key

    stats = stored_stats(ws, name, codes)
    if stats is None:
        stats = ActivationStats(codes)
        if save:
            stats.save(ws.sae_file(name, layout.ACTIVATIONS), codes_key(ws, name))
    return stats
