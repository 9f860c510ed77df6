"""Query strategies: plain functions `(classifier, X, n, rng) -> indices into X`, in a registry by name.

Uncertainty measures are modAL's functions applied to an already fitted estimator. We do not use
modAL's `ActiveLearner`/`Committee`: `ActiveLearner.teach` passes `force_all_finite`, which
scikit-learn 1.8 removed. Where a modAL function wants one of those objects (query by committee,
ranked batch mode) a small adapter below gives it the few attributes it reads.

A batch must not be 50 paraphrases of one question, so the default strategies add a diversity
step: take the most uncertain candidates, cluster them with k-means over the embeddings, and pick
the most uncertain item of each cluster.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
from modAL.batch import uncertainty_batch_sampling
from modAL.disagreement import vote_entropy
from modAL.uncertainty import classifier_entropy, classifier_margin, classifier_uncertainty
from sklearn.base import clone
from sklearn.cluster import KMeans, MiniBatchKMeans
from threadpoolctl import threadpool_limits

from loop.errors import ConfigError, EmptyPool

Strategy = Callable[[object, np.ndarray, int, np.random.Generator], np.ndarray]
Measure = Callable[[object, np.ndarray], np.ndarray]  # higher = more informative

# How many uncertain candidates the diversity step clusters, per item picked.
CANDIDATES_PER_PICK = 10


# -- measures (higher = more informative) ---------------------------------------------------
def margin_measure(classifier, X: np.ndarray) -> np.ndarray:
    return 1.0 - classifier_margin(classifier, X)


def least_confidence_measure(classifier, X: np.ndarray) -> np.ndarray:
    return classifier_uncertainty(classifier, X)


def entropy_measure(classifier, X: np.ndarray) -> np.ndarray:
    return classifier_entropy(classifier, X)


# -- selectors ------------------------------------------------------------------------------
def top_n(scores: np.ndarray, n: int) -> np.ndarray:
    """Indices of the n highest scores, highest first."""
    idx = np.argpartition(-scores, n - 1)[:n] if n < len(scores) else np.arange(len(scores))
    return idx[np.argsort(-scores[idx], kind="stable")]


def diverse_top(scores: np.ndarray, X: np.ndarray, n: int, rng: np.random.Generator,
                candidates_per_pick: int = CANDIDATES_PER_PICK) -> np.ndarray:
    """The most informative item in each of n k-means clusters of the top candidates.

    Near-duplicates share a cluster, so at most one of them enters the batch.
    """
    shortlist = top_n(scores, min(len(scores), n * candidates_per_pick))
    if len(shortlist) <= n:
        return shortlist
    # One thread: on a few hundred candidates k-means spends its time syncing OpenMP/BLAS threads;
    # on 2 contended cores it took 2.5-3 s instead of 0.2 s, for the same clusters (docs/benchmarks.md,
    # "Vectors at scale").
    with threadpool_limits(limits=1):
        km = KMeans(n_clusters=n, n_init=1, random_state=int(rng.integers(2**31))).fit(X[shortlist])
    picked = []
    for c in range(n):
        members = shortlist[km.labels_ == c]
        if len(members):
            picked.append(members[np.argmax(scores[members])])
    picked = np.asarray(picked, dtype=np.int64)
    if len(picked) < n:  # an empty cluster: fill with the best remaining candidates
        rest = shortlist[~np.isin(shortlist, picked)]
        picked = np.concatenate([picked, rest[: n - len(picked)]])
    return picked[np.argsort(-scores[picked], kind="stable")]


# -- adapters for modAL functions that expect its learner classes ----------------------------
class BootstrapCommittee:
    """A committee of bootstrap refits of one classifier, with the interface modAL's
    disagreement measures read (`vote`, `classes_`, `len`)."""

    def __init__(self, classifier, X_train: np.ndarray, y_train: np.ndarray, size: int, rng: np.random.Generator):
        self.classes_ = classifier.classes_
        self.members = [classifier]
        y_train = np.asarray(y_train)
        for _ in range(size - 1):
            idx = rng.integers(0, len(y_train), len(y_train))
            if len(np.unique(y_train[idx])) < 2:
                continue
            self.members.append(clone(classifier).fit(X_train[idx], y_train[idx]))

    def __len__(self) -> int:
        return len(self.members)

    def vote(self, X: np.ndarray) -> np.ndarray:
        return np.stack([m.predict(X) for m in self.members], axis=1)


class _RankedBatchView:
    """What `modAL.batch.ranked_batch` reads from a learner: predict_proba and the labelled X."""

    def __init__(self, classifier, X_training: np.ndarray):
        self.classifier, self.X_training, self.on_transformed = classifier, X_training, False

    def predict_proba(self, X):
        return self.classifier.predict_proba(X)


# -- strategies -----------------------------------------------------------------------------
def _plain(measure: Measure, doc: str) -> Strategy:
    def strategy(classifier, X, n, rng, **_):
        return top_n(measure(classifier, X), n)

    strategy.__doc__ = doc
    return strategy


def _diverse(measure: Measure, doc: str) -> Strategy:
    def strategy(classifier, X, n, rng, **_):
        return diverse_top(measure(classifier, X), X, n, rng)

    strategy.__doc__ = doc
    return strategy


def random_sampling(classifier, X: np.ndarray, n: int, rng: np.random.Generator, **_) -> np.ndarray:
    """The baseline: n items uniformly at random."""
    return rng.choice(X.shape[0], size=n, replace=False)


def committee_sampling(classifier, X: np.ndarray, n: int, rng: np.random.Generator, *,
                       X_train: np.ndarray | None = None, y_train=None, committee_size: int = 5, **_) -> np.ndarray:
    """Query by committee: vote entropy (modAL.disagreement) of bootstrap refits, with the diversity step."""
    if X_train is None or y_train is None:
        raise ConfigError("the committee strategy needs the labelled data to refit its members")
    committee = BootstrapCommittee(classifier, X_train, y_train, committee_size, rng)
    # Vote entropy ties a lot with few members; the margin breaks ties inside one vote pattern.
    scores = vote_entropy(committee, X) + 1e-3 * margin_measure(classifier, X)
    return diverse_top(scores, X, n, rng)


def ranked_batch_sampling(classifier, X: np.ndarray, n: int, rng: np.random.Generator, *,
                          X_train: np.ndarray | None = None, **_) -> np.ndarray:
    """modAL's ranked batch mode (uncertainty traded against distance to labelled and chosen items),
    run on a shortlist of the most uncertain candidates: on the whole pool it costs pool x labels
    distances per pick."""
    if X_train is None:
        raise ConfigError("the ranked-batch strategy needs the labelled data")
    shortlist = top_n(least_confidence_measure(classifier, X), min(len(X), n * CANDIDATES_PER_PICK))
    idx, _ = uncertainty_batch_sampling(_RankedBatchView(classifier, X_train), X[shortlist], n_instances=n)
    return shortlist[np.asarray(idx, dtype=np.int64)]


def cold_start(X: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """A diverse first batch: the item nearest each of n k-means centroids of the embeddings."""
    if n >= X.shape[0]:
        return np.arange(X.shape[0])
    km = MiniBatchKMeans(n_clusters=n, random_state=int(rng.integers(2**31)), n_init=1,
                         batch_size=min(4096, X.shape[0])).fit(X)
    dist = km.transform(X)
    chosen: list[int] = []
    taken: set[int] = set()
    for c in range(n):  # nearest item per centroid; if taken already, the next nearest
        for i in np.argsort(dist[:, c]):
            if int(i) not in taken:
                chosen.append(int(i))
                taken.add(int(i))
                break
    return np.asarray(chosen, dtype=np.int64)


STRATEGIES: dict[str, Strategy] = {
    "margin-diverse": _diverse(margin_measure,
                               "Smallest top-2 margin (modAL), one pick per k-means cluster of candidates."),
    "margin": _plain(margin_measure, "Smallest top-2 margin (modAL.uncertainty.classifier_margin)."),
    "least-confidence": _plain(least_confidence_measure, "Lowest top probability (modAL.uncertainty)."),
    "entropy": _plain(entropy_measure, "Highest predictive entropy (modAL.uncertainty)."),
    "entropy-diverse": _diverse(entropy_measure, "Highest entropy, one pick per k-means cluster of candidates."),
    "committee": committee_sampling,
    "ranked-batch": ranked_batch_sampling,
    "random": random_sampling,
}
DEFAULT_STRATEGY = "margin-diverse"


def get_strategy(name: str) -> Strategy:
    try:
        return STRATEGIES[name]
    except KeyError:
        raise ConfigError(f"unknown strategy {name!r}; choose one of {', '.join(STRATEGIES)}") from None


def select(name: str, classifier, X: np.ndarray, n: int, seed: int = 0, *,
           X_train: np.ndarray | None = None, y_train=None) -> np.ndarray:
    """Indices of the n items to label next; with no classifier yet, a cold-start batch."""
    strategy = get_strategy(name)
    if X.shape[0] == 0:
        raise EmptyPool("the pool is exhausted: 0 unlabelled items available; import more items with `loop init`")
    n = min(n, X.shape[0])
    rng = np.random.default_rng(seed)
    if classifier is None:
        return cold_start(X, n, rng)
    return strategy(classifier, X, n, rng, X_train=X_train, y_train=y_train)
