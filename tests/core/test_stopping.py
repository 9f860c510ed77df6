import numpy as np
import pytest

from loop.core.stopping import Plateau, StabilizingPredictions, prediction_kappa


def test_prediction_kappa_matches_hand_computation():
    prev = ["a", "a", "b", "b"]
    new = ["a", "b", "b", "b"]
    # observed agreement 3/4; chance: P(a)=2/4*1/4 + P(b)=2/4*3/4 = 1/2 -> kappa = (0.75-0.5)/(1-0.5) = 0.5
    assert prediction_kappa(prev, new) == pytest.approx(0.5)
    assert prediction_kappa(["a", "a"], ["a", "a"]) == 1.0  # identical constant predictions: stable
    with pytest.raises(ValueError):
        prediction_kappa(["a"], ["a", "b"])


def test_stabilizing_predictions_fires_on_the_first_stable_window():
    rule = StabilizingPredictions(threshold=0.99, window=3, min_rounds=5)
    kappas = [None, 0.6, 0.8, 0.95, 0.991, 0.995, 0.999, 0.999]
    fired = [rule(kappas[: i + 1]).stop for i in range(len(kappas))]
    # mean of the last 3: round 6 -> (0.95+0.991+0.995)/3 = 0.979 (no); round 7 -> 0.995 (yes)
    assert fired == [False, False, False, False, False, False, True, True]
    assert rule(kappas[:7]).value == pytest.approx(np.mean([0.991, 0.995, 0.999]))


def test_stabilizing_predictions_waits_for_min_rounds():
    rule = StabilizingPredictions(threshold=0.9, window=2, min_rounds=4)
    assert not rule([None, 1.0, 1.0]).stop
    assert rule([None, 1.0, 1.0, 1.0]).stop


def test_a_dip_resets_the_rule():
    rule = StabilizingPredictions(threshold=0.99, window=3, min_rounds=3)
    assert rule([None, 0.995, 0.995, 0.995]).stop
    assert not rule([None, 0.995, 0.995, 0.995, 0.9]).stop


def test_per_label_rule_hand_computed():
    rule = StabilizingPredictions(window=3, min_rounds=4, disagreement_per_label=2e-4)
    labels = [100, 200, 300, 400, 500]
    kappas = [None, 0.9, 0.99, 0.985, 0.975]
    # (1 - kappa) / 100 new labels: 1e-3, 1e-4, 1.5e-4, 2.5e-4
    decisions = [rule(kappas[: i + 1], labels[: i + 1]) for i in range(len(kappas))]
    assert [d.stop for d in decisions] == [False, False, False, False, True]
    assert decisions[3].value == pytest.approx((1e-3 + 1e-4 + 1.5e-4) / 3)  # 4.2e-4 > 2e-4
    assert decisions[4].value == pytest.approx((1e-4 + 1.5e-4 + 2.5e-4) / 3)  # 1.7e-4 <= 2e-4
    assert "per new label" in decisions[4].reason


def test_per_label_rule_reads_the_same_disagreement_per_label_at_any_round_size():
    rule = StabilizingPredictions(window=3, min_rounds=3, disagreement_per_label=2e-4)
    # rounds of 25 labels, 1 - kappa = 0.004 (1.6e-4 per label): stop; the per-round rule at 0.995 would too
    assert rule([None, 0.996, 0.996, 0.996], [25, 50, 75, 100]).stop
    # rounds of 100 labels, 1 - kappa = 0.016 (the same 1.6e-4 per label): stop; kappa 0.984 per round would not
    assert rule([None, 0.984, 0.984, 0.984], [100, 200, 300, 400]).stop
    assert not StabilizingPredictions(threshold=0.99, window=3, min_rounds=3)([None, 0.984, 0.984, 0.984]).stop
    # rounds of 25 labels with 1 - kappa = 0.016 (6.4e-4 per label): keep going
    assert not rule([None, 0.984, 0.984, 0.984], [25, 50, 75, 100]).stop


def test_per_label_rule_skips_rounds_without_new_labels_and_checks_lengths():
    rule = StabilizingPredictions(window=3, min_rounds=3, disagreement_per_label=2e-4)
    # a retrain on the same labels (200 -> 200) says nothing per label: left out, so 2 rates of 3 needed
    assert not rule([None, 0.99, 1.0, 0.999], [100, 200, 200, 300]).stop
    assert rule([None, 0.99, 1.0, 0.999, 0.999], [100, 200, 200, 300, 400]).stop
    with pytest.raises(ValueError, match="one per round"):
        rule([None, 0.99], [100])


def test_plateau_on_dev_accuracy():
    rule = Plateau(min_gain=0.01, window=3)
    assert not rule([0.5, 0.6, 0.7]).stop                 # too short
    assert not rule([0.5, 0.6, 0.7, 0.8]).stop             # +0.2 over the last 3 rounds
    decision = rule([0.5, 0.8, 0.801, 0.805, 0.806])       # 0.806 - 0.8 = +0.006 < 0.01
    assert decision.stop and decision.value == pytest.approx(0.006)
