"""near_pairs against a brute-force n x n check on small random data."""

from __future__ import annotations

import numpy as np
import pytest

from loop.core.neighbours import TOLERANCE, exact_scores, near_pairs
from loop.errors import ConfigError


def unit(rng: np.random.Generator, n: int, dim: int = 16) -> np.ndarray:
    X = rng.standard_normal((n, dim)).astype(np.float32)
    return X / np.linalg.norm(X, axis=1, keepdims=True)


def brute(X: np.ndarray, threshold: float, Y: np.ndarray | None = None) -> list[tuple[int, int]]:
    S = X.astype(np.float64) @ (X if Y is None else Y).astype(np.float64).T
    cut = threshold - TOLERANCE
    if Y is None:
        return [(i, j) for i in range(len(X)) for j in range(i + 1, len(X)) if S[i, j] >= cut]
    return [(i, j) for i in range(len(X)) for j in range(len(Y)) if S[i, j] >= cut]


def away_from_edges(X: np.ndarray, threshold: float, Y: np.ndarray | None = None) -> bool:
    """No score within float32 rounding of the threshold, so float32 and float64 must agree."""
    S = X.astype(np.float64) @ (X if Y is None else Y).astype(np.float64).T
    return not np.any(np.abs(S - (threshold - TOLERANCE)) < 1e-5)


@pytest.mark.parametrize("block", [1, 3, 7, 40, 1024])
@pytest.mark.parametrize("threshold", [0.3, 0.5, 0.8])
def test_within_x_matches_brute_force(block, threshold):
    rng = np.random.default_rng(0)
    X = unit(rng, 40, dim=6)  # low dimension: plenty of pairs above each threshold
    assert away_from_edges(X, threshold)
    got = near_pairs(X, threshold, block=block)
    assert got == sorted(got)
    want = brute(X, threshold)
    assert len(want) > 5
    assert [(i, j) for i, j, _ in got] == want
    S = X @ X.T
    assert all(abs(s - S[i, j]) < 1e-6 for i, j, s in got)


@pytest.mark.parametrize("block", [1, 4, 25, 1024])
def test_x_against_y_matches_brute_force(block):
    rng = np.random.default_rng(1)
    X, Y = unit(rng, 25, dim=5), unit(rng, 33, dim=5)
    assert away_from_edges(X, 0.6, Y)
    got = near_pairs(X, 0.6, Y, block=block)
    want = brute(X, 0.6, Y)
    assert len(want) > 5
    assert [(i, j) for i, j, _ in got] == want


def test_with_y_includes_same_index_pairs_and_x_is_not_compared_with_itself():
    X = np.eye(3, dtype=np.float32)
    Y = np.eye(3, dtype=np.float32)[[1, 0, 2]]
    assert [(i, j) for i, j, _ in near_pairs(X, 0.9, Y)] == [(0, 1), (1, 0), (2, 2)]
    assert near_pairs(X, 0.9) == []  # orthogonal rows: no pairs, and no (i, i) self-pairs


def test_threshold_one_finds_copies_despite_float32_rounding():
    rng = np.random.default_rng(2)
    X = unit(rng, 30, dim=384)
    X[17] = X[4]
    X[29] = X[4]
    got = near_pairs(X, 1.0, block=8)
    assert [(i, j) for i, j, _ in got] == [(4, 17), (4, 29), (17, 29)]
    assert all(s == pytest.approx(1.0, abs=1e-6) and s <= 1.0 for _, _, s in got)


def test_threshold_edges_inclusive():
    # Two pairs at exactly known cosines: 0.6 (3-4-5 triangle) and 0.8.
    X = np.array([[1, 0], [0.6, 0.8], [0.8, 0.6]], dtype=np.float32)
    found = {(i, j) for i, j, _ in near_pairs(X, 0.8)}
    assert found == {(0, 2), (1, 2)}  # 0.8 (at the edge: inclusive) and 0.96; not (0, 1) at 0.6
    assert (0, 1) in {(i, j) for i, j, _ in near_pairs(X, 0.6)}  # >= is inclusive at the edge
    assert (0, 1) not in {(i, j) for i, j, _ in near_pairs(X, 0.6 + 1e-4)}
    assert len(near_pairs(X, -1.0)) == 3  # every pair once


def test_empty_and_single_row():
    assert near_pairs(np.zeros((0, 4), dtype=np.float32), 0.5) == []
    assert near_pairs(np.ones((1, 4), dtype=np.float32) / 2, 0.5) == []
    assert near_pairs(np.ones((1, 4), dtype=np.float32) / 2, 0.5, np.zeros((0, 4), dtype=np.float32)) == []


def test_progress_counts_every_row():
    rng = np.random.default_rng(3)
    done: list[int] = []
    near_pairs(unit(rng, 23), 0.9, block=5, progress=done.append)
    assert done == [5, 5, 5, 5, 3]


def test_float64_input_is_accepted():
    rng = np.random.default_rng(4)
    X = unit(rng, 20, dim=4).astype(np.float64)
    assert [(i, j) for i, j, _ in near_pairs(X, 0.7)] == brute(X.astype(np.float32), 0.7)


@pytest.mark.parametrize("kwargs, message", [
    ({"threshold": 1.5}, "between -1 and 1"),
    ({"threshold": 0.5, "block": 0}, "at least 1"),
    ({"threshold": 0.5, "Y": np.ones((2, 3), dtype=np.float32)}, "dimensions"),
])
def test_bad_arguments(kwargs, message):
    X = np.ones((2, 4), dtype=np.float32) / 2
    with pytest.raises(ConfigError, match=message):
        near_pairs(X, **kwargs)


def test_bad_matrices():
    with pytest.raises(ConfigError, match="2-D"):
        near_pairs(np.ones(4, dtype=np.float32), 0.5)
    with pytest.raises(ConfigError, match="floats"):
        near_pairs(np.ones((2, 4), dtype=np.int64), 0.5)


# -- the index path (method="ann") and the cut-over -------------------------------------------
def planted_groups(rng: np.random.Generator, n: int, dim: int = 32, groups: int = 40) -> np.ndarray:
    """n random unit rows; `groups` of them get 1 to 4 noisy copies (cosine about 0.97 to the source)."""
    X = unit(rng, n, dim)
    rows = rng.choice(n, size=groups * 5, replace=False).reshape(groups, 5)
    for g, size in zip(rows, rng.integers(1, 5, size=groups)):
        noise = rng.standard_normal((size, dim)).astype(np.float32) * np.float32(0.2 / np.sqrt(dim))
        copies = X[g[0]] + noise
        X[g[1:1 + size]] = copies / np.linalg.norm(copies, axis=1, keepdims=True)
    return X


def test_index_finds_the_same_pairs_as_exact_within_x():
    rng = np.random.default_rng(10)
    X = planted_groups(rng, 3000)
    exact = near_pairs(X, 0.9, method="exact")
    assert len(exact) > 60  # the planted groups, and (almost) nothing else at 32 random dimensions
    got = near_pairs(X, 0.9, method="ann", probes=8, seed=0)
    assert [(i, j) for i, j, _ in got] == [(i, j) for i, j, _ in exact]
    assert all(abs(s - t) < 1e-5 for (_, _, s), (_, _, t) in zip(got, exact))
    assert all(i < j for i, j, _ in got)


def test_index_finds_the_same_pairs_as_exact_against_y():
    rng = np.random.default_rng(11)
    X = planted_groups(rng, 2500)
    Y = X[1000:]
    X = X[:1000]
    exact = near_pairs(X, 0.9, Y, method="exact")
    assert len(exact) > 10
    got = near_pairs(X, 0.9, Y, method="ann")
    assert [(i, j) for i, j, _ in got] == [(i, j) for i, j, _ in exact]


def test_index_recall_with_one_probe_is_below_one_and_rises_with_probes():
    # Clustered data with near pairs spread everywhere: one probe per query misses pairs split
    # across cells, more probes find them. Every pair returned is a true pair (recall, not precision).
    rng = np.random.default_rng(12)
    X = unit(rng, 4000, dim=4)  # dimension 4: thousands of pairs above 0.98, across cell borders
    want = {(i, j) for i, j, _ in near_pairs(X, 0.98, method="exact")}
    assert len(want) > 1000
    recall = {}
    for probes in (1, 4, 16):
        got = {(i, j) for i, j, _ in near_pairs(X, 0.98, method="ann", probes=probes)}
        assert got <= want
        recall[probes] = len(got) / len(want)
    assert recall[1] < 0.9
    assert recall[1] < recall[4] <= recall[16]
    assert recall[16] >= 0.99


def test_index_is_deterministic_for_a_seed():
    rng = np.random.default_rng(13)
    X = unit(rng, 3000, dim=4)
    a = near_pairs(X, 0.98, method="ann", probes=2, seed=5)
    assert a == near_pairs(X, 0.98, method="ann", probes=2, seed=5)
    assert len(a) > 100


def test_index_edge_cases():
    X = np.eye(4, dtype=np.float32)
    assert near_pairs(X, 0.5, method="ann") == []
    assert near_pairs(X[:1], 0.5, method="ann") == []
    assert near_pairs(X[:0], 0.5, method="ann") == []
    assert near_pairs(X, 0.5, np.zeros((0, 4), dtype=np.float32), method="ann") == []
    copies = np.repeat(X[:1], 3, axis=0)
    assert [(i, j) for i, j, _ in near_pairs(copies, 1.0, method="ann")] == [(0, 1), (0, 2), (1, 2)]
    assert [(i, j) for i, j, _ in near_pairs(X[:2], 1.0, X[[1, 0, 1]], method="ann")] == [(0, 1), (1, 0), (1, 2)]


def test_progress_sums_to_rows_on_the_index_path():
    rng = np.random.default_rng(14)
    done: list[int] = []
    near_pairs(unit(rng, 2000), 0.9, method="ann", progress=done.append)
    assert sum(done) == 2000 and len(done) > 1 and all(d > 0 for d in done)


def test_auto_uses_exact_up_to_the_cut_over_and_the_index_above(monkeypatch):
    import loop.core.neighbours as neighbours

    calls: list[int] = []
    real = neighbours._index_pairs
    monkeypatch.setattr(neighbours, "_index_pairs", lambda X, *a: calls.append(len(X)) or real(X, *a))
    rng = np.random.default_rng(15)
    X = planted_groups(rng, 600)
    monkeypatch.setattr(neighbours, "EXACT_MAX_SCORES", exact_scores(600))
    small = near_pairs(X, 0.9)  # exactly at the cut-over: exact
    assert calls == []
    monkeypatch.setattr(neighbours, "EXACT_MAX_SCORES", exact_scores(600) - 1)
    assert [p[:2] for p in near_pairs(X, 0.9)] == [p[:2] for p in small]  # one score above: the index
    assert calls == [600]
    near_pairs(X[:100], 0.9, X, method="auto")  # 100 x 600 scores, below: exact
    assert calls == [600]
    near_pairs(X[:100], 0.9, X, method="exact")
    assert calls == [600]
    assert exact_scores(600) == 600 * 599 // 2 and exact_scores(100, 600) == 60_000
    assert neighbours.EXACT_MAX_SCORES > 0


@pytest.mark.parametrize("kwargs, message", [
    ({"method": "fast"}, "method must be one of auto, exact, ann"),
    ({"probes": 0}, "probes must be a whole number"),
    ({"probes": 2.5}, "probes must be a whole number"),
    ({"probes": True}, "probes must be a whole number"),
    ({"block": 0}, "block must be at least 1"),
])
def test_bad_parameters_are_config_errors(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        near_pairs(np.eye(3, dtype=np.float32), 0.5, **kwargs)


@pytest.mark.parametrize("X, Y, threshold, message", [
    (np.ones(4, dtype=np.float32), None, 0.5, "must be a 2-D matrix"),
    (np.ones((3, 4), dtype=np.int64), None, 0.5, "must hold floats"),
    (np.ones((3, 4), dtype=np.float32), np.ones((3, 5), dtype=np.float32), 0.5, "X has 4 dimensions but Y has 5"),
    (np.ones((3, 4), dtype=np.float32), None, 1.5, "between -1 and 1"),
])
@pytest.mark.parametrize("method", ["exact", "ann"])
def test_bad_input_is_a_config_error_on_both_paths(X, Y, threshold, message, method):
    with pytest.raises(ConfigError, match=message):
        near_pairs(X, threshold, Y, method=method)
