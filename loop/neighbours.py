"""Exact cosine near-neighbour pairs above a threshold, in blocks: memory O(block x n), never n x n.

The rows are L2-normalised, so cosine similarity is a dot product. Each block of rows is
multiplied against the other side with one float32 matrix product (BLAS sgemm), the block is
thresholded with numpy, and only the pairs above the threshold are kept. Exact search is fast
enough at the sizes a labelling project reaches (100k x 384 in docs/benchmarks.md, "Validator"),
so there is no approximate index to tune and no recall to explain.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from loop.errors import ConfigError

# Bytes of similarity scores per block (float32): the block's rows x the other side's rows.
# 32 MB keeps the block and its boolean mask well inside the memory of a small machine; the time
# is dominated by the matrix products, not by the block size (measured in bench/validate.py).
BLOCK_BYTES = 32 * 2**20
# Scores are float32 dot products, so identical unit vectors can score 0.99999994: a pair within
# TOLERANCE below the threshold still counts, and threshold 1.0 finds exact copies.
TOLERANCE = 1e-6


def _matrix(name: str, M: np.ndarray) -> np.ndarray:
    M = np.asarray(M)
    if M.ndim != 2:
        raise ConfigError(f"{name} must be a 2-D matrix of embeddings (rows x dimensions), got shape {M.shape}")
    if not np.issubdtype(M.dtype, np.floating):
        raise ConfigError(f"{name} must hold floats (L2-normalised embeddings), got dtype {M.dtype}")
    return np.ascontiguousarray(M, dtype=np.float32)


def default_block(n_other: int) -> int:
    """Rows per block so that one block of scores against `n_other` rows takes about BLOCK_BYTES."""
    return int(min(4096, max(16, BLOCK_BYTES // (4 * max(n_other, 1)))))


def near_pairs(X: np.ndarray, threshold: float, Y: np.ndarray | None = None, *, block: int | None = None,
               progress: Callable[[int], None] | None = None) -> list[tuple[int, int, float]]:
    """Every pair with cosine similarity >= threshold, as (i, j, similarity), sorted by (i, j).

    Without Y: pairs i < j of rows of X (each unordered pair once, no self-pairs). With Y: every
    (i in X, j in Y). Rows must be L2-normalised (as `loop.embeddings` stores them); they are
    computed on in float32. `block` is the number of rows of X per matrix product (default: sized
    so one block of scores is about 32 MB); `progress` is called with the number of rows of X done
    after each block. Similarities are clipped to 1.0.
    """
    if not -1.0 <= float(threshold) <= 1.0:
        raise ConfigError(f"similarity threshold must be between -1 and 1, got {threshold}")
    X = _matrix("X", X)
    other = X if Y is None else _matrix("Y", Y)
    if other.shape[1] != X.shape[1]:
        raise ConfigError(f"X has {X.shape[1]} dimensions but Y has {other.shape[1]}; embed both with the same model")
    n, m = X.shape[0], other.shape[0]
    if block is None:
        block = default_block(m)
    if block < 1:
        raise ConfigError(f"block must be at least 1 row, got {block}")
    cut = np.float32(float(threshold) - TOLERANCE)
    pairs: list[tuple[int, int, float]] = []
    for start in range(0, n, block):
        stop = min(start + block, n)
        if Y is None:
            # Only columns from `start` on: pairs (i, j) with j < start were found in an earlier block.
            scores = X[start:stop] @ X[start:].T
            rows, cols = np.nonzero(scores >= cut)
            keep = cols > rows  # within the diagonal square: j > i only, and never i == j
            rows, cols = rows[keep], cols[keep]
            sims = scores[rows, cols]
            cols = cols + start
        else:
            scores = X[start:stop] @ other.T
            rows, cols = np.nonzero(scores >= cut)
            sims = scores[rows, cols]
        rows = rows + start
        pairs.extend(zip(rows.tolist(), cols.tolist(), np.minimum(sims, 1.0).tolist()))
        if progress:
            progress(stop - start)
    return pairs
