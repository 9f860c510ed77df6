"""Relabel or label new: quality scores, how many relabels a round gets, and who gives them."""

from __future__ import annotations

import numpy as np
import pytest

from loop.core.relabel import (
    AUTO_BELOW,
    AUTO_SHARE,
    MAX_LABELS,
    assign_relabels,
    choose_relabels,
    labelled_quality,
    out_of_sample_proba,
    parse_mode,
    relabel_count,
)
from loop.errors import ConfigError


@pytest.mark.parametrize("given, expected", [(None, "off"), ("off", "off"), ("AUTO", "auto"), ("3", 3), (0, "off"),
                                             ("0", "off"), (5, 5)])
def test_modes(given, expected):
    assert parse_mode(given) == expected


@pytest.mark.parametrize("bad", ["some", "-1", "1.5"])
def test_a_bad_mode_says_what_it_takes(bad):
    with pytest.raises(ConfigError, match="--relabel"):
        parse_mode(bad)


def test_a_split_or_a_doubted_label_scores_lower_than_a_confident_one():
    q = labelled_quality(consensus_confidence=np.array([1.0, 0.5, 1.0, 0.5]), n_labels=np.array([2, 2, 2, 4]),
                         model_p_consensus=np.array([0.9, 0.9, 0.2, 0.9]))
    assert q[0] > q[2] > q[1]  # unanimous > unanimous-but-doubted-by-the-model > split
    assert q[3] < q[1]  # a split over 4 labels: the annotators' doubt outweighs the model's confidence more
    assert labelled_quality(np.array([1.0]), np.array([1]), np.array([0.0]))[0] == pytest.approx(0.5)


def test_how_many_relabels_a_round_gets():
    quality = np.array([0.3, 0.9, 0.5, 0.55, 0.2])
    assert AUTO_BELOW == 0.6 and AUTO_SHARE == 0.5
    assert relabel_count("auto", 10, quality) == 4  # every label more likely wrong than AUTO_BELOW
    assert relabel_count("auto", 5, quality) == 2   # ... in at most half the round: the rest are new items
    assert relabel_count("auto", 10, np.array([0.9, 0.61])) == 0
    assert relabel_count("off", 5, quality) == 0 and relabel_count("auto", 5, np.empty(0)) == 0
    assert relabel_count(2, 5, quality) == 2 and relabel_count(9, 5, quality) == 5  # N: the N lowest, within the round


def test_each_relabel_goes_to_someone_who_has_not_labelled_the_item_loads_balanced():
    out = assign_relabels(["x", "y", "z", "w"], ["ann", "bob", "cat"],
                          {"x": {"ann", "bob"}, "y": {"ann"}, "z": set(), "w": {"ann", "bob", "cat"}})
    assert out["x"] == ["cat"] and "w" not in out  # everyone labelled w
    assert out["y"][0] != "ann" and {p for v in out.values() for p in v} == {"ann", "bob", "cat"}


def test_out_of_sample_probabilities_do_not_vouch_for_a_flipped_label():
    rng = np.random.default_rng(0)
    X = np.vstack([rng.normal(-2, 1, size=(30, 4)), rng.normal(2, 1, size=(30, 4))])
    y = ["a"] * 30 + ["b"] * 30
    y[0] = "b"  # a wrong label deep in class a's region
    proba, classes = out_of_sample_proba(X, y)
    assert list(classes) == ["a", "b"] and proba.shape == (60, 2)
    assert proba[0, 1] < 0.5  # the model that did not see it doubts it
    assert MAX_LABELS >= 3


def _two_blobs(seed=0):
    rng = np.random.default_rng(seed)
    X = np.vstack([rng.normal(-2, 1, size=(30, 4)), rng.normal(2, 1, size=(30, 4))])
    return X, ["a"] * 30 + ["b"] * 30


def test_the_flipped_and_the_split_labels_are_chosen_first_and_only_eligible_rows():
    X, y = _two_blobs()
    y[0], y[41] = "b", "a"                        # wrong labels the model doubts
    confidence, n_labels = np.ones(60), np.full(60, 2)
    n_labels[0] = 1                               # row 0: one label
    confidence[40] = confidence[41] = 0.5         # rows 40 and 41: the annotators split
    eligible = np.ones(60, bool)
    assert set(choose_relabels(X, y, confidence, n_labels, eligible, 3, size=5)) == {0, 40, 41}
    # auto: the lone label the model doubts and the split it doubts; the split it backs (0.67) and
    # two agreeing labels (at least 0.67 whatever the model says) are left alone
    assert set(choose_relabels(X, y, confidence, n_labels, eligible, "auto", size=5)) == {0, 41}
    eligible[0] = False
    assert 0 not in choose_relabels(X, y, confidence, n_labels, eligible, 2, size=5)
    assert len(choose_relabels(X, y, confidence, n_labels, eligible, "off", size=5)) == 0
    assert len(choose_relabels(X, ["a"] * 60, confidence, n_labels, eligible, "auto", size=5)) == 0  # no model yet
    clean = ["a"] * 30 + ["b"] * 30
    assert len(choose_relabels(X, clean, np.ones(60), n_labels, np.ones(60, bool), "auto", size=10)) == 0
