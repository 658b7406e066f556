"""Frozen sentence vectors made fit for ranking: centred and (partly) whitened.

Raw sentence embeddings are anisotropic: every vector shares a large common direction, so the cosine of any two
item texts is high and tells little (WhitenRec, arXiv 2402.10602). Removing the mean and rescaling the principal
directions spreads the catalogue over the sphere. `power` interpolates: 0 only centres (and rotates), 1 whitens
fully (every principal direction gets unit variance), values between shrink the large directions less. Fitted on
the vectors given (a scenario's whole item table: item texts are known before any interaction, so this leaks no
test signal). The transform is returned as (mean, projection) so a model can keep it with its weights: the axes
of an eigendecomposition may differ in sign between machines, so they are never recomputed for a trained model.
"""
from __future__ import annotations

import numpy as np


BLOCK = 65536  # rows at a time: the float64 and output temporaries stay a few hundred MB at any catalogue size


def fit_whitening(vectors: np.ndarray, power: float = 0.5, dim: int | None = None,
                  eps: float = 1e-6) -> tuple[np.ndarray, np.ndarray]:
    """(mean (d,), projection (d, dim or d)) of vectors (n, d): the principal axes, largest first, axis j scaled
    by var_j^(-power/2). Rows that are all zero (items without text) take no part in the fit. Two passes over
    row blocks (the mean, then the centred scatter, in float64), never a float64 copy of every row."""
    d = vectors.shape[1]
    k = min(dim or d, d)

    def blocks():  # the rows with text, in float64, BLOCK at a time
        for lo in range(0, len(vectors), BLOCK):
            rows = np.asarray(vectors[lo:lo + BLOCK], dtype=np.float64)
            yield rows[np.any(rows != 0, axis=1)]

    n, total = 0, np.zeros(d)
    for rows in blocks():
        n, total = n + len(rows), total + rows.sum(0)
    if n < 2:
        return np.zeros(d, np.float32), np.eye(d, k, dtype=np.float32)
    mean, scatter = total / n, np.zeros((d, d))
    for rows in blocks():
        rows -= mean
        scatter += rows.T @ rows
    variance, axes = np.linalg.eigh(scatter / (n - 1))  # ascending
    variance, axes = np.clip(variance[::-1][:k], 0, None), axes[:, ::-1][:, :k]
    scale = (variance + eps * max(float(variance.max()), 1e-12)) ** (-power / 2)
    return mean.astype(np.float32), (axes * scale).astype(np.float32)


def apply_whitening(vectors, mean, projection):
    """Rows (numpy or torch) centred, projected and L2-normalised, block by block into one output; all-zero rows
    (no text) stay zero."""
    if len(vectors) <= BLOCK:
        return _whitened_rows(vectors, mean, projection)
    first = _whitened_rows(vectors[:BLOCK], mean, projection)
    shape = (len(vectors), first.shape[1])
    out = np.empty(shape, first.dtype) if isinstance(first, np.ndarray) else first.new_empty(shape)
    out[:BLOCK] = first
    for lo in range(BLOCK, len(vectors), BLOCK):
        out[lo:lo + BLOCK] = _whitened_rows(vectors[lo:lo + BLOCK], mean, projection)
    return out


def _whitened_rows(vectors, mean, projection):
    empty = ~(vectors != 0).any(1)
    out = (vectors - mean) @ projection
    out[empty] = 0
    norms = (out * out).sum(1, keepdims=True) ** 0.5 if isinstance(out, np.ndarray) else out.norm(dim=1, keepdim=True)
    return out / (norms + 1e-12)
