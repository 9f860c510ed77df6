"""Cosine near-neighbour pairs above a threshold: exact tiles for small sets, an IVF index above.

The rows are L2-normalised, so cosine similarity is a dot product. Exact search: each tile of
scores (a block of rows against a block of the other side) is one float32 matrix product (BLAS
sgemm), thresholded with numpy while still in cache; only the pairs above the threshold are kept,
never an n x n matrix. Its cost is quadratic (100k x 384 in 43 s, 1M would take over an hour).

Approximate search (`method="ann"`, chosen by "auto" above EXACT_MAX_SCORES scores, about 10k
rows within one set): an inverted-file index. FAISS's k-means cuts the indexed rows into about
sqrt(probes x rows) cells (spherical centroids); each row lives in its nearest cell and each query
looks into its `probes` nearest cells. Per cell, the queries that probe it are scored against the
rows that live in it with one sgemm, thresholded like a tile. A pair is missed only when neither
side probes the other's cell: at cosine 0.95 and 8 probes the measured recall was 1.0 on banking77
and on a synthetic 1M set (docs/benchmarks.md, "Approximate nearest neighbours", which also says
why this beats FAISS's own IVF range_search and hnswlib here). Every pair it returns is a true
pair with its float32 score; the result is deterministic for a given seed.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from loop.errors import ConfigError

# Rows and columns per tile of scores. 1024 x 1024 float32 is 4 MB, about the L2 cache of this
# machine: thresholding a tile while it is still in cache took a fifth of the time that
# thresholding a 1024 x n strip did, and the matrix products ran as fast (bench/validate.py).
BLOCK = 1024
# Scores are float32 dot products, so identical unit vectors can score 0.99999994: a pair within
# TOLERANCE below the threshold still counts, and threshold 1.0 finds exact copies.
TOLERANCE = 1e-6
# "auto" uses the index when the exact scan would compute more scores than this (n(n-1)/2 within
# X, n x m against Y). Within one set the exact scan and the index cost the same between 5k rows
# (exact 0.28 CPU s, index 0.42) and 10k (1.21 against 0.62) (bench/ann.py --part cutover,
# docs/benchmarks.md): exact up to 10k rows, 5e7 scores.
EXACT_MAX_SCORES = 50_000_000
# Cells each query looks into; recall >= 0.99 at cosine 0.95 (bench/ann.py).
PROBES = 8
METHODS = ("auto", "exact", "ann")


def embedding_matrix(name: str, M: np.ndarray) -> np.ndarray:
    """`M` as a C-contiguous float32 matrix of embeddings; ConfigError naming `name` if it is not one."""
    M = np.asarray(M)
    if M.ndim != 2:
        raise ConfigError(f"{name} must be a 2-D matrix of embeddings (rows x dimensions), got shape {M.shape}")
    if not np.issubdtype(M.dtype, np.floating):
        raise ConfigError(f"{name} must hold floats (L2-normalised embeddings), got dtype {M.dtype}")
    return np.ascontiguousarray(M, dtype=np.float32)


def near_pairs(X: np.ndarray, threshold: float, Y: np.ndarray | None = None, *, block: int = BLOCK,
               progress: Callable[[int], None] | None = None, method: str = "auto", probes: int = PROBES,
               seed: int = 0) -> list[tuple[int, int, float]]:
    """Every pair with cosine similarity >= threshold, as (i, j, similarity), sorted by (i, j).

    Without Y: pairs i < j of rows of X (each unordered pair once, no self-pairs). With Y: every
    (i in X, j in Y). Rows must be L2-normalised (as `loop.core.embeddings` stores them); they are
    computed on in float32. Similarities are clipped to 1.0. `progress` is called with numbers of
    rows of X done, summing to len(X).

    method: "exact" scores every pair in tiles of `block` x `block` (memory O(block^2) besides the
    inputs and the result); "ann" uses the inverted-file index with `probes` cells per query and
    k-means seeded by `seed` (finds a subset of the exact pairs: recall, not precision, is
    approximate); "auto" (default) is exact up to EXACT_MAX_SCORES scores and the index above.
    """
    if not -1.0 <= float(threshold) <= 1.0:
        raise ConfigError(f"similarity threshold must be between -1 and 1, got {threshold}")
    if method not in METHODS:
        raise ConfigError(f"near-neighbour method must be one of {', '.join(METHODS)}, got {method!r}")
    if isinstance(probes, bool) or not isinstance(probes, int) or probes < 1:
        raise ConfigError(f"probes must be a whole number of cells, at least 1, got {probes!r}")
    X = embedding_matrix("X", X)
    other = X if Y is None else embedding_matrix("Y", Y)
    if other.shape[1] != X.shape[1]:
        raise ConfigError(f"X has {X.shape[1]} dimensions but Y has {other.shape[1]}; embed both with the same model")
    if block < 1:
        raise ConfigError(f"block must be at least 1 row, got {block}")
    n, m = X.shape[0], other.shape[0]
    if method == "ann" or (method == "auto" and exact_scores(n, None if Y is None else m) > EXACT_MAX_SCORES):
        if n == 0 or m == 0:
            return []
        return _index_pairs(X, None if Y is None else other, float(threshold), probes, seed, progress)
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


def exact_scores(n: int, m: int | None = None) -> int:
    """Scores the exact scan computes: n(n-1)/2 within n rows, n x m against m other rows."""
    return n * (n - 1) // 2 if m is None else n * m


def _index_pairs(X: np.ndarray, Y: np.ndarray | None, threshold: float, probes: int, seed: int,
                 progress: Callable[[int], None] | None) -> list[tuple[int, int, float]]:
    """near_pairs through an inverted-file index on Y (on X without Y); see the module docstring."""
    import faiss  # imported here: loading it costs a second, and small sets never need it

    base = X if Y is None else Y
    n, m, dim = X.shape[0], base.shape[0], X.shape[1]
    cells = max(1, min(m, round(math.sqrt(probes * m))))
    probes = min(probes, cells)
    rng = np.random.default_rng(seed)
    # 16 training rows per cell: the cells only route queries and every score is exact, so a rough
    # k-means is enough (10 iterations; recall is measured, not assumed).
    sample = np.sort(rng.choice(m, size=min(m, 16 * cells), replace=False))
    kmeans = faiss.Kmeans(dim, cells, niter=10, seed=int(rng.integers(2**31)), spherical=True,
                          min_points_per_centroid=1, max_points_per_centroid=m)
    kmeans.train(base[sample])
    _, near = kmeans.index.search(X, probes)  # each query's probes, nearest cell first
    home = near[:, 0] if Y is None else kmeans.index.search(base, 1)[1][:, 0]
    members = _by_cell(home, np.arange(m), cells)
    askers = _by_cell(near.ravel(), np.repeat(np.arange(n), probes), cells)
    cut = np.float32(threshold - TOLERANCE)

    def join(cell: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        q, d = askers[cell], members[cell]
        scores = X[q] @ base[d].T
        rows, cols = np.nonzero(scores >= cut)
        return q[rows], d[cols], np.minimum(scores[rows, cols], 1.0)

    found, done, reported = [], 0, 0
    # Per-cell matrix products are small: one BLAS thread each, one cell per core, ran faster
    # than multithreaded BLAS on one cell at a time on this machine.
    with _one_blas_thread(), ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        for cell, part in enumerate(pool.map(join, range(cells))):
            found.append(part)
            done += len(askers[cell])
            if progress and done // probes > reported:
                progress(done // probes - reported)
                reported = done // probes
    if progress and reported < n:
        progress(n - reported)
    i = np.concatenate([p[0] for p in found])
    j = np.concatenate([p[1] for p in found])
    s = np.concatenate([p[2] for p in found])
    if Y is None:  # each unordered pair once, i < j; found from both sides when both probe
        i, j = np.minimum(i, j), np.maximum(i, j)
        keep = i != j
        i, j, s = i[keep], j[keep], s[keep]
    key, first = np.unique(i.astype(np.int64) * m + j, return_index=True)  # sorted by (i, j)
    return list(zip((key // m).tolist(), (key % m).tolist(), s[first].tolist()))


def _by_cell(cell_of: np.ndarray, rows: np.ndarray, cells: int) -> list[np.ndarray]:
    """rows grouped by their cell: entry c holds the rows r with cell_of[r] == c, ascending."""
    order = np.argsort(cell_of, kind="stable")
    bounds = np.searchsorted(cell_of[order], np.arange(cells + 1))
    grouped = rows[order]
    return [grouped[bounds[c]:bounds[c + 1]] for c in range(cells)]


def _one_blas_thread():
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=1, user_api="blas")
