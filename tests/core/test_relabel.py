"""Relabel or label new: quality scores, how many relabels a round gets, and who gives them."""

from __future__ import annotations

import numpy as np
import pytest

from loop.core.relabel import (
    MAX_LABELS,
    assign_relabels,
    choose_relabels,
    labelled_quality,
    out_of_sample_proba,
    parse_mode,
    relabel_count,
    unlabelled_quality,
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
    labelled = np.array([0.3, 0.9, 0.5])
    unlabelled = np.array([0.4, 0.95, 0.6, 0.45])
    assert relabel_count("auto", 3, labelled, unlabelled) == 1  # 0.3 beats 0.4 and 0.45; 0.5 does not make the 3
    assert relabel_count("auto", 5, labelled, unlabelled) == 2
    assert relabel_count("off", 5, labelled, unlabelled) == 0
    assert relabel_count(2, 5, labelled, unlabelled) == 2 and relabel_count(9, 5, labelled, unlabelled) == 3
    assert relabel_count("auto", 3, labelled, np.empty(0)) == 3  # the pool is empty: every label is a relabel
    assert relabel_count("auto", 3, np.empty(0), unlabelled) == 0


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
    assert unlabelled_quality(np.array([0.7]))[0] == 0.7 and MAX_LABELS >= 3


def _two_blobs(seed=0):
    rng = np.random.default_rng(seed)
    X = np.vstack([rng.normal(-2, 1, size=(30, 4)), rng.normal(2, 1, size=(30, 4))])
    return X, ["a"] * 30 + ["b"] * 30


def test_the_flipped_and_the_split_labels_are_chosen_first_and_only_eligible_rows():
    from loop.core.model import train

    X, y = _two_blobs()
    y[0] = "b"                                   # a wrong consensus the model doubts
    confidence, n_labels = np.ones(60), np.full(60, 2)
    confidence[40] = 0.5                          # annotators split on row 40
    eligible = np.ones(60, bool)
    clf = train(X, y)
    pool = np.array([[0.0, 0.0, 0.0, 0.0]])       # one new item the model cannot place
    picked = choose_relabels(X, y, confidence, n_labels, eligible, clf, pool, 2, size=5)
    assert set(picked) == {0, 40}
    eligible[0] = False
    assert 0 not in choose_relabels(X, y, confidence, n_labels, eligible, clf, pool, 2, size=5)
    assert len(choose_relabels(X, y, confidence, n_labels, eligible, clf, pool, "off", size=5)) == 0
    assert len(choose_relabels(X, y, confidence, n_labels, eligible, None, pool, "auto", size=5)) == 0
    # auto weighs relabels against new items: sure labels lose to new items the model cannot place,
    # a doubted label beats new items the model is sure of
    clean = ["a"] * 30 + ["b"] * 30
    unsure_pool = np.zeros((3, 4))
    assert len(choose_relabels(X, clean, np.ones(60), n_labels, np.ones(60, bool), train(X, clean), unsure_pool,
                               "auto", size=3)) == 0
    sure_pool = np.vstack([np.full(4, -6.0), np.full(4, 6.0), np.full(4, 6.0)])
    assert list(choose_relabels(X, y, np.ones(60), n_labels, np.ones(60, bool), clf, sure_pool, "auto", size=1)) == [0]
