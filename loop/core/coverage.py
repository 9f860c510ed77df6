"""Coverage: where the pool (and production) lies in embedding space, and how much of it the labels cover.

Pure numpy / scikit-learn, no I/O. The clustering contract (`Clustering`, `choose_k`,
`cluster_embeddings`, `assign_clusters`) is shared by `loop coverage` and coverage-aware rounds.
Rows are L2-normalised sentence embeddings (`loop.core.embeddings`), so cosine similarity is a
dot product and the nearest centroid is the one with the largest dot product.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from loop.errors import ConfigError

# choose_k: k = round(sqrt(n / 4)), clipped to [K_MIN, K_MAX] and to n.
K_MIN = 2
K_MAX = 100


@dataclass(frozen=True)
class Clustering:
    """A partition of the rows of X: `labels[i]` is the cluster of row i; `centroids` are unit rows."""

    labels: np.ndarray  # (n,) int, the cluster of each row of X
    centroids: np.ndarray  # (k, d) float32, L2-normalised

    @property
    def k(self) -> int:
        return int(self.centroids.shape[0])


def _matrix(name: str, M: np.ndarray) -> np.ndarray:
    M = np.asarray(M)
    if M.ndim != 2:
        raise ConfigError(f"{name} must be a 2-D matrix of embeddings (rows x dimensions), got shape {M.shape}")
    if not np.issubdtype(M.dtype, np.floating):
        raise ConfigError(f"{name} must hold floats (L2-normalised embeddings), got dtype {M.dtype}")
    return np.ascontiguousarray(M, dtype=np.float32)


def _normalise(M: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(M, axis=1, keepdims=True)
    return (M / np.maximum(norms, 1e-12)).astype(np.float32)


def choose_k(n: int) -> int:
    """The number of clusters for n rows: round(sqrt(n / 4)), at least 2 and at most 100, never above n.

    sqrt(n / 4) gives clusters of about 2 * sqrt(n) rows: 100 items -> 5 clusters of 20,
    10,000 -> 50 of 200 (banking77's 10,003 training texts -> 50 for its 77 intents). The cap of
    100 keeps the report readable and the clustering cheap at 1M rows (10,000 rows a cluster).
    """
    if n < 1:
        raise ConfigError(f"cannot cluster {n} rows; the pool needs items (`loop init DATA`)")
    return int(min(n, max(K_MIN, min(K_MAX, round((n / 4) ** 0.5)))))


def assign_clusters(clustering: Clustering, Y: np.ndarray) -> np.ndarray:
    """The nearest centroid (cosine) of each row of Y, shape (len(Y),), in blocks of 65,536 rows."""
    Y = _matrix("Y", Y)
    C = clustering.centroids
    if Y.shape[1] != C.shape[1]:
        raise ConfigError(f"Y has {Y.shape[1]} dimensions but the clustering has {C.shape[1]}; "
                          "embed both with the same model")
    out = np.empty(len(Y), dtype=np.int64)
    for start in range(0, len(Y), 65536):
        out[start:start + 65536] = np.argmax(Y[start:start + 65536] @ C.T, axis=1)
    return out


def cluster_embeddings(X: np.ndarray, k: int | None = None, seed: int = 0) -> Clustering:
    """MiniBatchKMeans on the rows of X (scales to 1M rows), deterministic for a seed.

    k defaults to `choose_k(len(X))`. The centroids are L2-normalised after fitting and each row's
    label is its nearest centroid by cosine (`assign_clusters`), so `labels` and
    `assign_clusters(c, X)` agree exactly. Clusters left empty by the fit are dropped (k can come out
    smaller than asked when X has fewer distinct rows).
    """
    from sklearn.cluster import MiniBatchKMeans

    X = _matrix("X", X)
    n = len(X)
    k = choose_k(n) if k is None else int(k)
    if not 1 <= k <= max(n, 1) or n == 0:
        raise ConfigError(f"k must be between 1 and the number of rows ({n}), got {k}")
    Xn = _normalise(X)
    if k == 1:
        centroids = _normalise(Xn.mean(axis=0, keepdims=True))
    else:
        km = MiniBatchKMeans(n_clusters=k, random_state=seed, n_init=3, batch_size=min(4096, n),
                             max_iter=100, reassignment_ratio=0.01)
        km.fit(Xn)
        centroids = _normalise(km.cluster_centers_.astype(np.float32))
    labels = assign_clusters(Clustering(np.empty(0, dtype=np.int64), centroids), Xn)
    used = np.unique(labels)
    if len(used) < len(centroids):  # renumber 0..k'-1 without the empty clusters
        centroids = centroids[used]
        labels = np.searchsorted(used, labels)
    return Clustering(labels=labels.astype(np.int64), centroids=np.ascontiguousarray(centroids, dtype=np.float32))
