"""Query strategies: plain functions `(classifier, X, n, rng) -> indices into X`.

Uncertainty strategies are modAL's functions applied to an already fitted estimator. We do not use
modAL's `ActiveLearner`: its `teach` passes `force_all_finite`, which scikit-learn 1.8 removed.
The cold-start strategy needs no classifier: it spreads the first batch over the embedding space.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
from modAL.uncertainty import entropy_sampling, margin_sampling, uncertainty_sampling
from sklearn.cluster import MiniBatchKMeans

from loop.errors import ConfigError, EmptyPool

Strategy = Callable[[object, np.ndarray, int, np.random.Generator], np.ndarray]


def _modal(fn) -> Strategy:
    def strategy(classifier, X, n, rng):
        idx, _ = fn(classifier, X, n_instances=n)
        return np.asarray(idx, dtype=np.int64)

    strategy.__doc__ = fn.__doc__
    return strategy


def random_sampling(classifier, X: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """The baseline: n items uniformly at random."""
    return rng.choice(X.shape[0], size=n, replace=False)


def cold_start(X: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """A diverse first batch: the item nearest each of n k-means centroids of the embeddings."""
    if n >= X.shape[0]:
        return np.arange(X.shape[0])
    km = MiniBatchKMeans(n_clusters=n, random_state=int(rng.integers(2**31)), n_init=1,
                         batch_size=min(4096, X.shape[0])).fit(X)
    # Nearest item per centroid; a centroid whose nearest item is taken gets the next free one.
    dist = km.transform(X)
    chosen: list[int] = []
    taken: set[int] = set()
    for c in range(n):
        for i in np.argsort(dist[:, c]):
            if int(i) not in taken:
                chosen.append(int(i))
                taken.add(int(i))
                break
    return np.asarray(chosen, dtype=np.int64)


STRATEGIES: dict[str, Strategy] = {
    "margin": _modal(margin_sampling),
    "least-confidence": _modal(uncertainty_sampling),
    "entropy": _modal(entropy_sampling),
    "random": random_sampling,
}


def get_strategy(name: str) -> Strategy:
    try:
        return STRATEGIES[name]
    except KeyError:
        raise ConfigError(f"unknown strategy {name!r}; choose one of {', '.join(STRATEGIES)}") from None


def select(name: str, classifier, X: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    """Indices of the n items to label next; with no classifier yet, a cold-start batch."""
    if X.shape[0] == 0:
        raise EmptyPool("the pool is exhausted: 0 unlabelled items available; import more items with `loop init`")
    n = min(n, X.shape[0])
    rng = np.random.default_rng(seed)
    if classifier is None:
        return cold_start(X, n, rng)
    return get_strategy(name)(classifier, X, n, rng)
