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


def cooccurrence(codes: Codes) -> Cooccurrence:
    """The feature co-occurrence counts of a set of sparse codes (Bᵀ B for the binary firing matrix B)."""
    b = binary_codes(codes)
    counts = (b.T @ b).tocsr()
    counts.data = np.rint(counts.data)
    counts.sort_indices()
    freq = np.asarray(b.sum(axis=0)).ravel()
    return Cooccurrence(counts=counts, freq=freq, n_docs=len(codes))


class ActivationStats:
    """Per-feature activation sums over documents, kept to correlate one feature with all others quickly."""

    def __init__(self, codes: Codes) -> None:
        self.csc = codes.to_csr().tocsc()
        self.n = self.csc.shape[0]
        sums = np.asarray(self.csc.sum(axis=0)).ravel().astype(np.float64)
        sq = np.asarray(self.csc.multiply(self.csc).sum(axis=0)).ravel().astype(np.float64)
        self.mean = sums / max(self.n, 1)
        self.var = sq / max(self.n, 1) - self.mean**2

    def column(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """(documents, activations) where feature `i` fires."""
        lo, hi = self.csc.indptr[i], self.csc.indptr[i + 1]
        return self.csc.indices[lo:hi], self.csc.data[lo:hi]

    def correlation(self, i: int) -> np.ndarray:
        """Pearson correlation, over documents, between feature `i`'s activation and every feature's (NaN if constant)."""
        docs, acts = self.column(i)
        cross = np.asarray(self.csc[docs].T @ acts.astype(np.float64)).ravel()
        cov = cross / self.n - self.mean * self.mean[i]
        with np.errstate(divide="ignore", invalid="ignore"):
            corr = cov / np.sqrt(self.var * self.var[i])
        corr[self.var <= 1e-12] = np.nan
        return corr


def activation_correlation(codes: Codes, i: int) -> np.ndarray:
    """Pearson correlation, over documents, between feature `i`'s activation and every feature's (NaN if constant)."""
    return ActivationStats(codes).correlation(i)
