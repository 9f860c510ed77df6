"""Exact cosine near-neighbour pairs above a threshold, in tiles: never an n x n matrix in memory.

The rows are L2-normalised, so cosine similarity is a dot product. Each tile of scores (a block
of rows against a block of the other side) is one float32 matrix product (BLAS sgemm), it is
thresholded with numpy while still in cache, and only the pairs above the threshold are kept. Exact search is fast
enough at the sizes a labelling project reaches (100k x 384 in docs/benchmarks.md, "Validator"),
so there is no approximate index to tune and no recall to explain.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from loop.errors import ConfigError

# Rows and columns per tile of scores. 1024 x 1024 float32 is 4 MB, about the L2 cache of this
# machine: thresholding a tile while it is still in cache took a fifth of the time that
# thresholding a 1024 x n strip did, and the matrix products ran as fast (bench/validate.py).
BLOCK = 1024
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


def near_pairs(X: np.ndarray, threshold: float, Y: np.ndarray | None = None, *, block: int = BLOCK,
               progress: Callable[[int], None] | None = None) -> list[tuple[int, int, float]]:
    """Every pair with cosine similarity >= threshold, as (i, j, similarity), sorted by (i, j).

    Without Y: pairs i < j of rows of X (each unordered pair once, no self-pairs). With Y: every
    (i in X, j in Y). Rows must be L2-normalised (as `loop.core.embeddings` stores them); they are
    computed on in float32. Scores are computed in tiles of `block` x `block` (memory
    O(block^2) besides the inputs and the result); `progress` is called with the number of rows
    of X done after each row block. Similarities are clipped to 1.0.
    """
    if not -1.0 <= float(threshold) <= 1.0:
        raise ConfigError(f"similarity threshold must be between -1 and 1, got {threshold}")
    X = _matrix("X", X)
    other = X if Y is None else _matrix("Y", Y)
    if other.shape[1] != X.shape[1]:
        raise ConfigError(f"X has {X.shape[1]} dimensions but Y has {other.shape[1]}; embed both with the same model")
    if block < 1:
        raise ConfigError(f"block must be at least 1 row, got {block}")
    n, m = X.shape[0], other.shape[0]
    cut = np.float32(float(threshold) - TOLERANCE)
    pairs: list[tuple[int, int, float]] = []
    for r0 in range(0, n, block):
        rows_x = X[r0:r0 + block]
        # Without Y, only tiles on or right of the diagonal: (i, j) with j < i was found as (j, i).
        for c0 in range(r0 if Y is None else 0, m, block):
            scores = rows_x @ other[c0:c0 + block].T
            hits = scores >= cut
            if not hits.any():  # the common case: most tiles hold no near pair at all
                continue
            rows, cols = np.nonzero(hits)
            if Y is None and c0 == r0:
                keep = cols > rows  # the diagonal tile: j > i only, and never i == j
                rows, cols = rows[keep], cols[keep]
            sims = np.minimum(scores[rows, cols], 1.0)
            pairs.extend(zip((rows + r0).tolist(), (cols + c0).tolist(), sims.tolist()))
        if progress:
            progress(len(rows_x))
    # Tiles run column-block by column-block, so one row's pairs arrive in column order only
    # within a tile: sort once at the end.
    pairs.sort()
    return pairs
