"""loop.core.coverage on constructed embeddings: blobs around known centres, a planted gap (a region
production sends that the labels miss), a planted shift, and a model's planted mistakes."""

from __future__ import annotations

import numpy as np
import pytest

from loop.core.coverage import (
    K_MAX,
    SHIFT_ALPHA,
    Clustering,
    assign_clusters,
    choose_k,
    cluster_embeddings,
    cluster_table,
    error_clusters,
    flag_clusters,
    map_coordinates,
    representatives,
    share_comparison,
    top_terms,
    two_sample_test,
)
from loop.errors import ConfigError

DIM = 64
CENTRES = 8


def centres(seed: int = 0) -> np.ndarray:
    C = np.random.default_rng(seed).standard_normal((CENTRES, DIM))
    return C / np.linalg.norm(C, axis=1, keepdims=True)


def draw(rng: np.random.Generator, which, n: int, noise: float = 0.1, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """n unit rows around the centres in `which` (chosen uniformly), and each row's true centre."""
    truth = rng.choice(list(which), n)
    X = centres(seed)[truth] + rng.normal(scale=noise, size=(n, DIM))
    return (X / np.linalg.norm(X, axis=1, keepdims=True)).astype(np.float32), truth


def test_choose_k_rule():
    assert choose_k(100) == 5
    assert choose_k(10_003) == 50
    assert choose_k(1_000_000) == K_MAX
    assert choose_k(3) == 2 and choose_k(1) == 1
    with pytest.raises(ConfigError, match="cannot cluster 0 rows"):
        choose_k(0)


def test_clustering_recovers_blobs_and_is_deterministic():
    rng = np.random.default_rng(1)
    X, truth = draw(rng, range(CENTRES), 800)
    c = cluster_embeddings(X, k=CENTRES, seed=3)
    assert c.k == CENTRES and c.labels.shape == (800,)
    assert np.allclose(np.linalg.norm(c.centroids, axis=1), 1.0, atol=1e-5)
    assert c.centroids.dtype == np.float32
    # Each found cluster is one true blob (purity 1 on well separated blobs).
    for k in range(c.k):
        assert len(set(truth[c.labels == k].tolist())) == 1
    again = cluster_embeddings(X, k=CENTRES, seed=3)
    assert np.array_equal(again.labels, c.labels) and np.array_equal(again.centroids, c.centroids)
    # labels are the nearest centroid, so assigning the same rows gives them back.
    assert np.array_equal(assign_clusters(c, X), c.labels)
    Y, ytruth = draw(rng, range(CENTRES), 200)
    got = assign_clusters(c, Y)
    blob_of = {k: int(truth[c.labels == k][0]) for k in range(c.k)}
    assert [blob_of[g] for g in got.tolist()] == ytruth.tolist()


def test_clustering_default_k_and_errors():
    rng = np.random.default_rng(2)
    X, _ = draw(rng, range(CENTRES), 400)
    assert cluster_embeddings(X).k <= choose_k(400)
    with pytest.raises(ConfigError, match="k must be between"):
        cluster_embeddings(X, k=401)
    with pytest.raises(ConfigError, match="2-D"):
        cluster_embeddings(X[0])
    c = cluster_embeddings(X, k=4)
    with pytest.raises(ConfigError, match="dimensions"):
        assign_clusters(c, X[:, :10])


def planted_gap(seed: int):
    """Pool over all 8 blobs; labels on 30% of blobs 0-6 and none of blob 7; production sends blob 7
    a quarter of its traffic."""
    rng = np.random.default_rng(seed)
    X, truth = draw(rng, range(CENTRES), 1600)
    labels = [None if t == 7 or rng.random() > 0.3 else f"label{t % 3}" for t in truth.tolist()]
    P, ptruth = draw(rng, range(CENTRES), 600)
    P = np.vstack([P, draw(rng, [7], 150)[0]])
    return X, truth, labels, P


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_planted_gap_is_flagged_first(seed):
    X, truth, labels, P = planted_gap(seed)
    c = cluster_embeddings(X, seed=seed)  # the stated rule: k = 20 for 1,600 rows, so blobs split
    rows = cluster_table(c, labels, production=assign_clusters(c, P))
    flags = flag_clusters(rows)
    first = flags["under_covered"][0]
    assert set(truth[c.labels == first["cluster"]].tolist()) == {7}
    assert first["labelled_share"] == 0.0 and first["labels_to_match"] > 0
    # Every cluster of blob 7 that production sends is flagged; no cluster of a labelled blob is.
    flagged = {f["cluster"] for f in flags["under_covered"]}
    gap = {k for k in range(c.k) if set(truth[c.labels == k].tolist()) == {7}}
    assert flagged <= gap
    assert sum(r["production"] for r in rows if r["cluster"] in flagged) >= 0.8 * sum(
        r["production"] for r in rows if r["cluster"] in gap)


def test_table_counts_and_negatives_and_disagreement():
    X = np.array([[1, 0], [0.99, 0.1], [0, 1], [0.1, 0.99], [0.05, 1.0]], dtype=np.float32)
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    c = Clustering(labels=np.array([0, 0, 1, 1, 1]), centroids=np.eye(2, dtype=np.float32))
    rows = cluster_table(c, ["a", None, "none", "b", "b"], production=np.array([1, 1, 1, 0]),
                         negatives=["none"],
                         agreement={0: {"value": 0.5, "n_items": 4}, 1: {"value": 1.0, "n_items": 9}},
                         evaluation={"clusters": np.array([0, 0, 1]), "correct": [True, False, True]})
    assert [r["pool"] for r in rows] == [2, 3]
    assert [r["production"] for r in rows] == [1, 3] and rows[1]["production_share"] == 0.75
    assert [r["labelled"] for r in rows] == [1, 3] and rows[1]["labelled_share"] == 0.75
    assert rows[0]["labelled_fraction"] == 0.5
    assert rows[1]["label_mix"] == {"b": 2, "none": 1}
    assert [r["negatives"] for r in rows] == [0, 1]
    assert [r["accuracy"] for r in rows] == [0.5, 1.0]
    flags = flag_clusters(rows, negatives=["none"], overall_agreement=0.9)
    assert [f["cluster"] for f in flags["disagreement"]] == [0]
    # Neither cluster has the 5 labelled items the no-negative flag asks for.
    assert flags["no_negative"]["clusters"] == []
    rows[0]["labelled"] = 5
    assert [f["cluster"] for f in flag_clusters(rows, negatives=["none"])["no_negative"]["clusters"]] == [0]
    assert flag_clusters(rows)["no_negative"]["status"] == "skipped"
    with pytest.raises(ConfigError, match="one per row"):
        cluster_table(c, ["a"])


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_planted_shift_is_detected_and_no_shift_is_not(seed):
    rng = np.random.default_rng(100 + seed)
    labelled, _ = draw(rng, range(7), 400)            # the labels never saw blob 7
    production, _ = draw(rng, range(CENTRES), 800)     # an eighth of production is blob 7
    same, _ = draw(rng, range(CENTRES), 400)           # drawn like production
    shifted = two_sample_test(labelled, production, seed=seed)
    assert shifted["status"] == "done" and shifted["shift"] is True and shifted["p_value"] < SHIFT_ALPHA
    assert shifted["mmd2"] > shifted["mmd2_null"]
    alike = two_sample_test(same, production, seed=seed)
    assert alike["shift"] is False and alike["p_value"] >= SHIFT_ALPHA


def test_shift_test_bounds_its_sample_and_skips_tiny_sides():
    rng = np.random.default_rng(5)
    A, _ = draw(rng, range(CENTRES), 300)
    r = two_sample_test(A, A[::-1].copy(), max_per_side=100, permutations=50)
    assert (r["sample_a"], r["sample_b"]) == (100, 100) and r["permutations"] == 50
    assert two_sample_test(A[:5], A)["status"] == "skipped"


def test_share_comparison_orders_production_heavy_clusters_first():
    out = share_comparison(np.array([0, 0, 0, 1]), np.array([0, 1, 2, 2]), 3)
    assert [r["cluster"] for r in out["clusters"]] == [2, 1, 0]
    assert out["clusters"][0]["share_b"] == 0.5 and out["clusters"][0]["share_a"] == 0.0
    assert out["total_variation"] == pytest.approx(0.5)


def test_error_clustering_worst_first_with_examples():
    clusters = np.array([0, 0, 0, 1, 1, 1, 1, 2])
    y_true = ["a", "a", "b", "b", "b", "b", "c", "c"]
    y_pred = ["a", "b", "a", "c", "c", "c", "c", "c"]
    texts = [f"t{i}" for i in range(8)]
    out = error_clusters(clusters, y_true, y_pred, texts)
    assert out["errors"] == 5 and out["accuracy"] == pytest.approx(3 / 8)
    assert [(r["cluster"], r["errors"]) for r in out["by_cluster"]] == [(1, 3), (0, 2)]
    assert out["by_cluster"][0]["pairs"] == {"b -> c": 3}
    assert [(r["label"], r["predicted"], r["errors"]) for r in out["by_pair"]] == [
        ("b", "c", 3), ("a", "b", 1), ("b", "a", 1)]
    assert out["by_pair"][0]["examples"][0] == {"index": 3, "label": "b", "predicted": "c", "text": "t3"}
    with pytest.raises(ConfigError, match="one of each"):
        error_clusters(clusters, y_true, y_pred[:3])


def test_top_terms_name_the_cluster():
    docs = [["my card has not arrived", "when will my card arrive", "card delivery is late"],
            ["I was charged twice", "a duplicate charge on my statement", "charged two times for one payment"]]
    terms = top_terms(docs, n_terms=3)
    assert any("card" in t for t in terms[0]) and not any("card" in t for t in terms[1])
    assert any("charge" in t for t in terms[1])
    assert top_terms([["the", "and"], []]) == [[], []]


def test_representatives_nearest_centroid_without_repeats():
    X = np.array([[1, 0], [0.8, 0.6], [1, 0], [0, 1]], dtype=np.float32)
    c = Clustering(labels=np.array([0, 0, 0, 1]), centroids=np.eye(2, dtype=np.float32))
    assert representatives(c, X, n=2) == [[0, 2], [3]]
    assert representatives(c, X, n=2, texts=["same", "other", "Same ", "x"]) == [[0, 1], [3]]


def test_map_coordinates_shape():
    rng = np.random.default_rng(0)
    X, _ = draw(rng, range(CENTRES), 200)
    c = cluster_embeddings(X, k=6)
    assert map_coordinates(c.centroids).shape == (6, 2)
    assert map_coordinates(c.centroids[:1]).shape == (1, 2)
