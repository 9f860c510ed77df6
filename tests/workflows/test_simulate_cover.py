"""`loop simulate --cover-share`: the replay spends the share on the cluster production sends and the
pool barely has, and measures the worst clusters of the test set."""

from __future__ import annotations

import numpy as np
import pytest

from loop.errors import ConfigError
from loop.workflows.simulate import SimConfig, cluster_accuracy, run_once, simulate


def planted(seed: int = 0):
    """Four classes in 16 dimensions; the pool has 8 items of c3 among 248, production is half c3."""
    rng = np.random.default_rng(seed)
    centres = np.eye(16)[:4] * 3

    def draw(counts):
        X = np.vstack([c + rng.normal(scale=0.6, size=(n, 16)) for c, n in zip(centres, counts)])
        return X, np.repeat([f"c{i}" for i in range(4)], counts)

    X, y = draw([80, 80, 80, 8])
    X_test, y_test = draw([20, 20, 20, 20])
    X_prod, _ = draw([10, 10, 10, 30])
    return X, y, X_test, y_test, X_prod


def test_cluster_accuracy_gives_the_worst_cluster_and_the_worst_tenth():
    clusters = np.repeat(np.arange(12), 2)
    correct = np.ones(24, dtype=bool)
    correct[[0, 1, 2]] = False  # cluster 0: 0 of 2 right, cluster 1: 1 of 2
    worst, decile = cluster_accuracy(correct, clusters)
    assert worst == 0.0 and decile == pytest.approx(0.25)  # 12 clusters: the worst ceil(1.2) = 2
    assert cluster_accuracy(np.ones(4, dtype=bool), np.array([0, 0, 1, 1])) == (1.0, 1.0)


def test_cover_labels_the_rare_region_production_sends_to():
    X, y, X_test, y_test, X_prod = planted()
    cfg = SimConfig(strategies=["margin"], batch=10, budget=40, seeds=1, annotators=1, overlap=1,
                    annotator_error=[0.0], relabel=["off"], cover_share=[0.0, 0.4])
    rare = set(np.flatnonzero(y == "c3").tolist())
    runs = {share: run_once(X, y, X_test, y_test, "margin", 0, cfg, cover_share=share, X_production=X_prod)
            for share in (0.0, 0.4)}
    found = {share: len(rare & set(r["labelled"])) for share, r in runs.items()}
    assert runs[0.0]["covered"] == 0 and runs[0.4]["covered"] == 4 * 4  # 4 of 10 in each round, the cold start too
    assert found[0.4] > found[0.0] and found[0.4] >= 6, found
    assert len(runs[0.4]["labelled"]) == len(runs[0.0]["labelled"]) == 40  # the same budget


def test_simulate_reports_accuracy_and_the_tail_per_cover_share():
    X, y, X_test, y_test, X_prod = planted(1)
    cfg = SimConfig(strategies=["margin"], batch=10, budget=40, seeds=2, annotators=1, overlap=1,
                    annotator_error=[0.0], relabel=["off"], cover_share=[0.0, 0.4])
    out = simulate(X, y, X_test, y_test, cfg, X_production=X_prod)
    assert set(out["strategies"]) == {"margin, cover 0", "margin, cover 0.4"}
    assert out["config"]["production"] == 60 and out["config"]["cover_share"] == [0.0, 0.4]
    for entry in out["strategies"].values():
        assert len(entry["worst_cluster_accuracy_mean"]) == len(entry["labels"])
        assert 0 <= entry["worst_cluster_auc"] <= entry["bottom_decile_auc"] <= 1
    with pytest.raises(ConfigError, match="cover-share"):
        SimConfig(strategies=["margin"], cover_share=[1.5]).check()
