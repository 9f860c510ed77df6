"""near_pairs against a brute-force n x n check on small random data."""

from __future__ import annotations

import numpy as np
import pytest

from loop.core.neighbours import TOLERANCE, near_pairs
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
