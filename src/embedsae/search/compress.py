"""How the concept index keeps each document compactly: its activations as uint8, and a one-bit sketch of what
its SAE reconstruction leaves out.

Activations: per document, uint8 codes of value / scale x 255, with scale its largest activation (float16);
the error is at most 1/510 of that largest activation.

Residual sketch: a document's unit vector d is its reconstruction R (from the latents it keeps) plus a residual
e = d - R. The sketch keeps the sign of each of e's d coordinates (d bits) and one float16,
c = |e|^2 / |e|_1, so that q . e ~ c x sum_j q_j sign(e_j) (the one-bit estimator of RaBitQ, Gao & Long 2024,
without its rotation, which changed nothing on the development collections). With it the concept score
q . R + c q . sign(e) is close to the query's cosine with the document itself, while the latents still say
what the document is about. Summing q_j sign(e_j) reads a table of 256 partial sums per byte (`residual_lut`).
"""

from __future__ import annotations

import numpy as np

BLOCK = 16384
_BITS = ((np.arange(256)[:, None] >> np.arange(8)[None, :]) & 1).astype(np.float32)  # value -> its 8 bits


def quantize(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Activations as stored: uint8 codes and one float16 scale per document (its largest activation)."""
    values = np.maximum(np.asarray(values, np.float32), 0)
    scale = values.max(1, initial=0.0).astype(np.float16)
    s32 = scale.astype(np.float32)[:, None]
    codes = np.rint(np.divide(values * 255, s32, out=np.zeros_like(values), where=s32 > 0))
    return np.clip(codes, 0, 255).astype(np.uint8), scale


def dequantize(codes: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """The activations that uint8 codes and their document scales stand for (float32)."""
    return codes.astype(np.float32) * (scale.astype(np.float32) / np.float32(255))[..., None]


def stored_values(values: np.ndarray) -> np.ndarray:
    """Activations as the index keeps them (quantised and back), so that norms and scores agree with it."""
    return dequantize(*quantize(values))


def reconstructions(indices: np.ndarray, values: np.ndarray, W_dec: np.ndarray, b_pre: np.ndarray) -> np.ndarray:
    """SAE reconstructions of documents from their forward rows (docs x d, float32)."""
    from scipy.sparse import csr_matrix

    idx = np.asarray(indices, np.int64)
    n, k = idx.shape
    codes = csr_matrix((np.asarray(values, np.float32).ravel(), idx.ravel(), np.arange(0, n * k + 1, k)),
                       shape=(n, len(W_dec)))
    return np.asarray(codes @ W_dec, np.float32) + b_pre


def residual_sketch(vectors, indices: np.ndarray, values: np.ndarray, W_dec: np.ndarray,
                    b_pre: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The sign bits (docs x ceil(d / 8) uint8, little-endian bit order) and float16 scale c = |e|^2 / |e|_1 of
    each document's residual e = unit vector - reconstruction; `vectors` is an array or a vector source."""
    from ..data.vectors import as_source, iter_chunks

    n, d = len(indices), W_dec.shape[1]
    bits = np.empty((n, -(-d // 8)), np.uint8)
    scale = np.empty(n, np.float16)
    for start, block in iter_chunks(as_source(vectors), BLOCK):
        rows = slice(start, start + len(block))
        x = np.asarray(block, np.float32)
        x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
        e = x - reconstructions(indices[rows], values[rows], W_dec, b_pre)
        bits[rows] = np.packbits(e > 0, axis=1, bitorder="little")
        scale[rows] = (np.square(e).sum(1) / np.maximum(np.abs(e).sum(1), 1e-12)).astype(np.float16)
    return bits, scale


def residual_lut(q: np.ndarray, n_bytes: int) -> tuple[np.ndarray, float]:
    """Per byte of a sketch, the sum of the query's coordinates over the bits set in each of its 256 values
    (n_bytes x 256), and the sum of all coordinates: q . sign(e) = 2 sum_b lut[b, bits_b] - total."""
    padded = np.zeros(n_bytes * 8, np.float32)
    padded[: len(q)] = q
    return np.ascontiguousarray(padded.reshape(n_bytes, 8) @ _BITS.T), float(padded.sum())


def residual_estimate(bits: np.ndarray, scale: np.ndarray, lut: np.ndarray, total: float) -> np.ndarray:
    """The sketch's estimate of q . e for some documents (rows of `bits`, float32)."""
    sums = lut[np.arange(lut.shape[0])[None, :], bits].sum(1, dtype=np.float32)
    return scale.astype(np.float32) * (2 * sums - np.float32(total))
