import numpy as np
import pytest

from loop.core.cover import (
    DEFAULT_COVER_SHARE,
    apportion,
    centrality,
    cluster_gaps,
    cover_budget,
    cover_picks,
    negative_scores,
    plan_cover,
)
from loop.core.coverage import assign_clusters, cluster_embeddings
from loop.core.model import train
from loop.errors import ConfigError, EmptyPool


def _blobs(rng, centres, counts, spread=0.05):
    X = np.concatenate([c + spread * rng.standard_normal((n, len(c))) for c, n in zip(centres, counts)])
    return (X / np.linalg.norm(X, axis=1, keepdims=True)).astype(np.float32)


def test_planted_gap_gets_the_cover_picks():
    """Production sends half its traffic to cluster 2; the labels have none there: all gap picks go to it."""
    pool_clusters = np.repeat([0, 1, 2], [40, 40, 40])
    production = [25, 25, 50]
    labelled = [30, 30, 0]
    ranking = np.arange(0, 80)  # the usual strategy never looks at cluster 2
    plan = cover_picks(pool_clusters, production, labelled, ranking, size=20, share=0.5, seed=1)
    assert plan.gap_picks == {2: 10}
    assert all(pool_clusters[i] == 2 for i in plan.cover)
    assert len(plan.picked) == 20 and len(set(plan.picked.tolist())) == 20
    assert plan.picked[10:].tolist() == list(range(10))  # the rest: the strategy's ranking, in order
    assert plan.as_dict()["clusters"] == {"2": 10}


def test_gap_picks_are_proportional_to_the_gap():
    pool_clusters = np.repeat([0, 1, 2, 3], 50)
    production = [10, 30, 60, 0]
    labelled = [10, 0, 0, 90]
    # gaps: 0.1 - 0.1 = 0, 0.3, 0.6, 0.0 - 0.9 -> 0: cluster 2 gets twice cluster 1's picks
    plan = cover_picks(pool_clusters, production, labelled, np.arange(200), size=30, share=1.0)
    assert plan.gap_picks == {1: 10, 2: 20}
    # cluster 2 holds only 50 pool rows: what it cannot take goes to cluster 1
    plan = cover_picks(pool_clusters, production, labelled, np.arange(200), size=90, share=1.0)
    assert plan.gap_picks == {1: 40, 2: 50} and len(plan.picked) == 90


def test_share_is_respected_and_no_duplicates():
    rng = np.random.default_rng(0)
    pool_clusters = rng.integers(0, 8, 500)
    production = rng.integers(0, 100, 8)
    labelled = rng.integers(0, 100, 8)
    ranking = rng.permutation(500)[:60]
    for share in (0.1, 0.2, 0.35, 0.5):
        plan = cover_picks(pool_clusters, production, labelled, ranking, size=60, share=share,
                           negative_scores=rng.random(500), seed=3)
        assert len(plan.cover) == cover_budget(60, share) == round(share * 60)
        assert len(plan.negative_picks) == round(round(share * 60) * 0.25)
        assert len(plan.picked) == 60 and len(np.unique(plan.picked)) == 60
        assert set(plan.picked.tolist()) - set(plan.cover.tolist()) <= set(ranking.tolist())


def test_zero_share_is_the_usual_strategy():
    pool_clusters = np.repeat([0, 1], [30, 30])
    ranking = np.array([5, 3, 59, 1, 2])
    plan = cover_picks(pool_clusters, [0, 100], [10, 0], ranking, size=5, share=0.0, negative_scores=np.ones(60))
    assert plan.picked.tolist() == ranking.tolist() and len(plan.cover) == 0


def test_no_gap_returns_the_picks_to_the_strategy():
    pool_clusters = np.repeat([0, 1], [30, 30])
    plan = cover_picks(pool_clusters, [50, 50], [10, 10], np.arange(10), size=10, share=0.5)
    assert plan.gap_picks == {} and plan.picked.tolist() == list(range(10))


def test_negative_looking_items_get_their_part():
    pool_clusters = np.zeros(100, dtype=int)
    scores = np.zeros(100)
    scores[[77, 88]] = [0.9, 0.8]
    plan = cover_picks(pool_clusters, [10], [10], np.arange(100), size=40, share=0.2, negative_scores=scores)
    assert plan.negative_picks.tolist() == [77, 88]  # 8 cover picks, a quarter of them negatives


def test_priority_orders_picks_inside_a_cluster_and_seed_is_deterministic():
    pool_clusters = np.repeat([0, 1], [20, 20])
    priority = np.arange(40, dtype=float)
    plan = cover_picks(pool_clusters, [0, 10], [5, 0], np.arange(20), size=10, share=0.3, priority=priority)
    assert plan.cover.tolist() == [39, 38, 37]
    a = cover_picks(pool_clusters, [0, 10], [5, 0], np.arange(20), size=10, share=0.3, seed=4)
    b = cover_picks(pool_clusters, [0, 10], [5, 0], np.arange(20), size=10, share=0.3, seed=4)
    c = cover_picks(pool_clusters, [0, 10], [5, 0], np.arange(20), size=10, share=0.3, seed=5)
    assert a.picked.tolist() == b.picked.tolist()
    assert a.cover.tolist() != c.cover.tolist()


def test_typed_errors_for_bad_arguments():
    clusters = np.zeros(5, dtype=int)
    with pytest.raises(ConfigError, match="cover-share"):
        cover_picks(clusters, [1], [1], np.arange(5), size=3, share=1.5)
    with pytest.raises(ConfigError, match="round size"):
        cover_picks(clusters, [1], [1], np.arange(5), size=0)
    with pytest.raises(ConfigError, match="one count per cluster"):
        cover_picks(clusters, [1, 2], [1], np.arange(5), size=3)
    with pytest.raises(ConfigError, match="cluster ids"):
        cover_picks(np.array([0, 3]), [1], [1], np.arange(2), size=1)
    with pytest.raises(ConfigError, match="twice"):
        cover_picks(clusters, [1], [1], np.array([1, 1]), size=2)
    with pytest.raises(ConfigError, match="negative_scores"):
        cover_picks(clusters, [1], [1], np.arange(5), size=2, negative_scores=np.ones(3))
    with pytest.raises(EmptyPool):
        cover_picks(np.array([], dtype=int), [1], [1], np.array([], dtype=int), size=2)


def test_budget_gaps_and_apportion():
    assert DEFAULT_COVER_SHARE == 0.2
    assert cover_budget(50, 0.2) == 10 and cover_budget(3, 0.1) == 1 and cover_budget(10, 0) == 0
    assert cluster_gaps([50, 50], [0, 0]).tolist() == [0.5, 0.5]
    assert cluster_gaps([0, 0], [3, 1]).tolist() == [0.0, 0.0]
    assert apportion(np.array([0.5, 0.25, 0.25]), 4, np.array([9, 9, 9])).tolist() == [2, 1, 1]
    assert apportion(np.array([0.9, 0.1]), 5, np.array([1, 9])).tolist() == [1, 4]
    assert apportion(np.array([0.9, 0.1]), 50, np.array([1, 2])).tolist() == [1, 2]


def test_negative_scores_are_the_models_probability_of_the_negative_labels():
    rng = np.random.default_rng(0)
    X3 = _blobs(rng, np.eye(8)[:3], [20, 20, 20])
    y3 = ["a"] * 20 + ["b"] * 20 + ["out_of_scope"] * 20
    clf = train(X3, y3, seed=0)
    probs = negative_scores(X3[[0, 25, 45]], clf, negatives=["out_of_scope"])
    assert np.argmax(probs) == 2 and probs[2] > 0.5
    assert negative_scores(X3, clf, negatives=["refuse"]) is None  # the model knows no negative label
    assert negative_scores(X3, None, negatives=["out_of_scope"]) is None  # no model yet


def test_plan_cover_finds_a_planted_gap_through_the_clustering_contract():
    """Constructed data: three regions; production sends 40% of its traffic to a region the labels miss."""
    rng = np.random.default_rng(1)
    centres = np.eye(16)[:3]
    X_pool = _blobs(rng, centres, [200, 200, 100])
    X_lab = _blobs(rng, centres[:2], [30, 30])
    y_lab = ["a"] * 30 + ["b"] * 30
    X_prod = _blobs(rng, centres, [30, 30, 40])
    clustering = cluster_embeddings(np.concatenate([X_pool, X_lab, X_prod]), k=3, seed=0)
    gap = int(assign_clusters(clustering, centres[2:3].astype(np.float32))[0])
    clf = train(X_lab, y_lab, seed=0)
    ranking = np.arange(50)  # a strategy stuck in region 0
    plan = plan_cover(clustering.k, assign_clusters(clustering, X_pool), assign_clusters(clustering, X_lab),
                      assign_clusters(clustering, X_prod), X_pool, clf, ranking, size=50, share=0.2)
    assert plan.gap_picks == {gap: 10}  # the labels have no negative label: the whole share goes to the gap
    assert set(plan.cover.tolist()) <= set(range(400, 500)) and len(plan.negative_picks) == 0
    assert len(plan.picked) == 50 and len(np.unique(plan.picked)) == 50


def test_plan_cover_spends_a_quarter_on_items_the_model_calls_out_of_scope():
    rng = np.random.default_rng(3)
    centres = np.eye(16)[:3]
    X_lab = _blobs(rng, centres, [20, 20, 20])
    y_lab = ["a"] * 20 + ["b"] * 20 + ["out_of_scope"] * 20
    X_pool = _blobs(rng, centres, [100, 100, 10])
    clusters = np.repeat([0, 1, 2], [100, 100, 10])
    clf = train(X_lab, y_lab, seed=0)
    plan = plan_cover(3, clusters, np.repeat([0, 1, 2], 20), np.repeat([0, 1], [50, 50]), X_pool, clf,
                      np.arange(20), size=40, share=0.2, negatives=["out_of_scope"])
    assert len(plan.negative_picks) == 2 and set(plan.negative_picks.tolist()) <= set(range(200, 210))
    assert sum(plan.gap_picks.values()) == 6


def test_before_a_model_the_most_typical_items_of_a_gap_cluster_come_first():
    rng = np.random.default_rng(2)
    centres = np.eye(8)[:2]
    X_pool = _blobs(rng, centres, [30, 30], spread=0.2)
    X_pool[35] = centres[1]  # the gap cluster's most typical item: its centre
    clusters = np.repeat([0, 1], 30)
    assert np.argmax(centrality(X_pool, clusters, 2)[30:]) == 5
    plan = plan_cover(2, clusters, np.array([], dtype=int), np.ones(10, dtype=int), X_pool, None,
                      np.arange(10), size=10, share=0.1)
    assert plan.cover.tolist() == [35] and len(plan.negative_picks) == 0  # no labels: no negative score
