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


def test_plateau_on_dev_accuracy():
    rule = Plateau(min_gain=0.01, window=3)
    assert not rule([0.5, 0.6, 0.7]).stop                 # too short
    assert not rule([0.5, 0.6, 0.7, 0.8]).stop             # +0.2 over the last 3 rounds
    decision = rule([0.5, 0.8, 0.801, 0.805, 0.806])       # 0.806 - 0.8 = +0.006 < 0.01
    assert decision.stop and decision.value == pytest.approx(0.006)
