"""Query strategies and cold start: valid index sets, and the right rows for a known classifier."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from loop.core.strategies import STRATEGIES, cold_start, get_strategy, select
from loop.errors import ConfigError, EmptyPool

COLD = "cold-start"  # stands for select(..., classifier=None)


_rng = np.random.default_rng(7)
CENTRES = np.array([[0.0, 0.0], [3.0, 0.0], [0.0, 3.0]])
X_TRAIN = np.vstack([c + _rng.normal(scale=0.8, size=(15, 2)) for c in CENTRES])
Y_TRAIN = np.repeat(["a", "b", "c"], 15)
POOL = _rng.uniform(-2.0, 5.0, size=(60, 2))


@pytest.fixture(scope="module")
def clf_and_pool():
    clf = LogisticRegression(max_iter=1000).fit(X_TRAIN, Y_TRAIN)
    return clf, POOL


def run(name, clf, X, n, seed=0):
    """select() as the loop calls it: committee and ranked batch also get the labelled data."""
    return select("margin" if name == COLD else name, None if name == COLD else clf, X, n, seed=seed,
                  X_train=X_TRAIN, y_train=Y_TRAIN)


@pytest.mark.parametrize("name", [*STRATEGIES, COLD])
@pytest.mark.parametrize("n", [1, 5, 17])
def test_shape_unique_in_range(clf_and_pool, name, n):
    clf, X = clf_and_pool
    idx = np.asarray(run(name, clf, X, n))
    assert idx.shape == (n,)
    assert np.issubdtype(idx.dtype, np.integer)
    assert len(set(idx.tolist())) == n
    assert idx.min() >= 0 and idx.max() < X.shape[0]


@pytest.mark.parametrize("name", [*STRATEGIES, COLD])
@pytest.mark.parametrize("n", [60, 61, 1000])
def test_n_larger_than_pool_gives_whole_pool(clf_and_pool, name, n):
    clf, X = clf_and_pool
    idx = np.asarray(run(name, clf, X, n))
    assert sorted(idx.tolist()) == list(range(X.shape[0]))


@pytest.mark.parametrize("name", [*STRATEGIES, COLD])
def test_empty_pool(clf_and_pool, name):
    clf, X = clf_and_pool
    with pytest.raises(EmptyPool):
        run(name, clf, X[:0], 5)


def test_margin_picks_smallest_top2_margins(clf_and_pool):
    clf, X = clf_and_pool
    proba = np.sort(clf.predict_proba(X), axis=1)
    margin = proba[:, -1] - proba[:, -2]
    top = proba[:, -1]
    discriminating = 0
    for n in range(1, 30):
        expected = set(np.argsort(margin)[:n].tolist())
        assert set(select("margin", clf, X, n).tolist()) == expected, n
        discriminating += expected != set(np.argsort(top)[:n].tolist())
    # With three classes the margin ranking is not the least-confidence one for some n,
    # so this test would catch margin being computed as 1 - max proba.
    assert discriminating > 0


def test_least_confidence_picks_lowest_top_probability(clf_and_pool):
    clf, X = clf_and_pool
    top = clf.predict_proba(X).max(axis=1)
    for n in (1, 6, 20):
        idx = select("least-confidence", clf, X, n)
        assert set(idx.tolist()) == set(np.argsort(top)[:n].tolist())


def test_entropy_picks_highest_entropy(clf_and_pool):
    clf, X = clf_and_pool
    p = clf.predict_proba(X)
    entropy = -(p * np.log(p)).sum(axis=1)
    for n in (1, 6, 20):
        idx = select("entropy", clf, X, n)
        assert set(idx.tolist()) == set(np.argsort(-entropy)[:n].tolist())


def test_random_depends_on_seed_and_is_reproducible(clf_and_pool):
    clf, X = clf_and_pool
    first = select("random", clf, X, 10, seed=1)
    assert np.array_equal(first, select("random", clf, X, 10, seed=1))
    assert not np.array_equal(first, select("random", clf, X, 10, seed=2))


def blobs(k: int = 5, per: int = 20, dim: int = 8, seed: int = 0):
    """k tight, far-apart blobs; rows are grouped by blob, so the first rows are all blob 0."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(k, dim)) * 50
    X = np.vstack([c + rng.normal(scale=0.5, size=(per, dim)) for c in centres])
    return X, np.repeat(np.arange(k), per)


@pytest.mark.parametrize("seed", range(5))
def test_cold_start_spreads_over_clusters(seed):
    X, blob = blobs(seed=seed)
    assert len(set(blob[:5].tolist())) == 1  # a naive first-5 would all come from one blob
    idx = select("margin", None, X, 5, seed=seed)
    assert sorted(blob[idx].tolist()) == [0, 1, 2, 3, 4]


def test_cold_start_picks_items_near_blob_centres():
    X, blob = blobs()
    idx = cold_start(X, 5, np.random.default_rng(0))
    for i in idx:
        members = X[blob == blob[i]]
        dist = np.linalg.norm(members - members.mean(axis=0), axis=1)
        # the chosen item is among the most central of its blob
        assert np.linalg.norm(X[i] - members.mean(axis=0)) <= np.quantile(dist, 0.5)


def test_cold_start_with_more_picks_than_clusters_has_no_repeats():
    X, blob = blobs(k=3, per=10)
    idx = select("margin", None, X, 12, seed=3)
    assert len(set(idx.tolist())) == 12
    assert set(blob[idx].tolist()) == {0, 1, 2}


def test_without_a_classifier_every_strategy_cold_starts():
    X, _ = blobs()
    expected = cold_start(X, 5, np.random.default_rng(4))
    for name in STRATEGIES:
        assert np.array_equal(select(name, None, X, 5, seed=4), expected)


@pytest.mark.parametrize("name", ["", "Margin", "uncertainty", "bald"])
def test_unknown_strategy(clf_and_pool, name):
    clf, X = clf_and_pool
    with pytest.raises(ConfigError) as exc:
        get_strategy(name)
    assert repr(name) in str(exc.value)
    for known in STRATEGIES:
        assert known in str(exc.value)
    with pytest.raises(ConfigError):
        select(name, clf, X, 3)


def test_get_strategy_known_names():
    assert set(STRATEGIES) == {"margin", "margin-diverse", "least-confidence", "entropy", "entropy-diverse",
                               "committee", "ranked-batch", "random"}
    for name, fn in STRATEGIES.items():
        assert get_strategy(name) is fn


def _paraphrase_pool(rng):
    """60 near-copies of the classifier's most ambiguous point plus 140 spread items."""
    clf = LogisticRegression(max_iter=1000).fit(X_TRAIN, Y_TRAIN)
    grid = np.stack(np.meshgrid(np.linspace(-2, 5, 141), np.linspace(-2, 5, 141)), -1).reshape(-1, 2)
    top2 = np.sort(clf.predict_proba(grid), axis=1)[:, -2:]
    boundary = grid[np.argmin(top2[:, 1] - top2[:, 0])]
    copies = boundary + rng.normal(scale=0.01, size=(60, 2))
    spread = rng.uniform(-2.0, 5.0, size=(140, 2))
    return np.vstack([copies, spread]), np.arange(60)


@pytest.mark.parametrize("name", ["margin-diverse", "entropy-diverse", "committee"])
def test_diverse_strategies_do_not_fill_a_batch_with_paraphrases(clf_and_pool, name):
    clf, _ = clf_and_pool
    X, copies = _paraphrase_pool(np.random.default_rng(3))
    plain = run("margin", clf, X, 10)
    assert np.isin(plain, copies).sum() == 10  # the plain ranking would spend the batch on one question
    diverse = run(name, clf, X, 10)
    assert np.isin(diverse, copies).sum() <= 2
    assert len(set(diverse.tolist())) == 10


def test_ranked_batch_spreads_picks_too(clf_and_pool):
    clf, _ = clf_and_pool
    X, copies = _paraphrase_pool(np.random.default_rng(4))
    picked = run("ranked-batch", clf, X, 10)
    assert np.isin(picked, copies).sum() < 10


def test_bootstrap_committee_votes_one_label_per_member():
    from loop.core.strategies import BootstrapCommittee

    clf = LogisticRegression(max_iter=1000).fit(X_TRAIN, Y_TRAIN)
    committee = BootstrapCommittee(clf, X_TRAIN, Y_TRAIN, 5, np.random.default_rng(0))
    votes = committee.vote(POOL)
    assert votes.shape == (len(POOL), len(committee)) and len(committee) == 5
    assert set(np.unique(votes)) <= set(Y_TRAIN)
