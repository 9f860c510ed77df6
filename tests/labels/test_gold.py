"""The gold set's statistics: the Wilson interval holds its coverage, measured accuracy counts
each annotator's latest answer on gold, and control items are drawn as the rate says."""

from __future__ import annotations

import numpy as np
import pytest

from loop.labels.gold import control_count, measured_accuracy, pick_controls, scores, wilson


def test_the_wilson_interval_covers_the_true_accuracy_95_times_in_100():
    """2000 simulated annotators, each with a known accuracy, answer 20 control items: the share of
    intervals holding their accuracy is about 95% (binomial coverage oscillates; Wilson's stays
    close to nominal, where the normal approximation would fall well short at n = 20)."""
    rng = np.random.default_rng(7)
    accuracy = rng.uniform(0.55, 0.98, size=2000)
    n = 20
    correct = rng.binomial(n, accuracy)
    held = [lo <= p <= hi for p, c in zip(accuracy, correct) for lo, hi in [wilson(int(c), n)]]
    assert 0.93 <= np.mean(held) <= 0.975
    # and with the normal approximation the same draws fall short: the test can tell them apart
    phat = correct / n
    half = 1.96 * np.sqrt(phat * (1 - phat) / n)
    assert np.mean((phat - half <= accuracy) & (accuracy <= phat + half)) < 0.93


def test_the_wilson_interval_stays_in_bounds_and_narrows_with_answers():
    assert wilson(0, 0) is None
    lo, hi = wilson(5, 5)
    assert 0.5 < lo < 1 and hi == pytest.approx(1.0)
    assert wilson(0, 5)[0] == pytest.approx(0.0)
    few, many = wilson(8, 10), wilson(80, 100)
    assert many[1] - many[0] < few[1] - few[0] and few[0] < 0.8 < few[1]


def test_measured_accuracy_counts_each_annotators_latest_answer_on_gold():
    gold = {"g1": {"label": "a"}, "g2": {"label": "b"}, "g3": {"label": "a"}}
    answers = [
        {"annotator": "ann", "item_id": "g1", "label": "b", "updated_at": "2026-11-22T10:00:01Z"},
        {"annotator": "ann", "item_id": "g1", "label": "a", "updated_at": "2026-11-22T10:00:05Z"},  # changed mind
        {"annotator": "ann", "item_id": "g2", "label": "a", "updated_at": "2026-11-22T10:00:02Z"},
        {"annotator": "ann", "item_id": "g3", "label": None, "updated_at": "2026-11-22T10:00:02Z"},  # a skip
        {"annotator": "bob", "item_id": "g3", "label": "a", "updated_at": "2026-11-22T10:00:02Z"},
        {"annotator": "bob", "item_id": "i9", "label": "a", "updated_at": "2026-11-22T10:00:02Z"},  # not gold
    ]
    got = measured_accuracy(answers, gold)
    assert got["ann"]["gold_n"] == 2 and got["ann"]["gold_correct"] == 1 and got["ann"]["gold_accuracy"] == 0.5
    assert got["bob"] == {"gold_n": 1, "gold_correct": 1, "gold_accuracy": 1.0, "gold_interval": wilson(1, 1)}


def test_control_count_is_about_the_rate_and_at_least_one():
    assert control_count(0.05, 40) == 2 and control_count(0.05, 10) == 1 and control_count(0.05, 1) == 1
    assert control_count(0.0, 40) == 0 and control_count(0.5, 0) == 0 and control_count(0.25, 10) == 3


def test_controls_are_gold_items_the_annotator_never_saw():
    gold = [f"g{k}" for k in range(6)]
    seen = {"ann": {"g0", "g1", "g2", "g3"}, "bob": set()}
    picked = pick_controls(gold, {"ann": 40, "bob": 40, "cat": 0}, 0.1, seen, seed=3)
    per = {}
    for item, people in picked.items():
        for who in people:
            per.setdefault(who, []).append(item)
    assert sorted(per["ann"]) == ["g4", "g5"]  # 4 asked, only 2 unseen
    assert len(per["bob"]) == 4 and "cat" not in per
    assert pick_controls(gold, {"ann": 40, "bob": 40}, 0.1, seen, seed=3) == picked  # seeded


def test_scores_on_gold():
    assert scores([], []) == {"gold_accuracy": None, "gold_macro_f1": None, "gold_n": 0}
    s = scores(["a", "a", "b", "b"], ["a", "b", "b", "b"])
    assert s["gold_accuracy"] == 0.75 and s["gold_n"] == 4 and 0.7 < s["gold_macro_f1"] < 0.75
