"""The audit's statistics: the sample, the interval (its coverage checked by simulation), the verdict."""

from __future__ import annotations

import numpy as np
import pytest

from loop.labels.audit import SYSTEMIC_RATE, accuracy_interval, audit_report, draw_sample

FINAL = {f"i{k:03d}": ("billing" if k < 120 else "delivery" if k < 180 else "account") for k in range(200)}


def test_the_sample_is_simple_random_reproducible_and_never_larger_than_the_population():
    a, b = draw_sample(FINAL, 50, seed=7), draw_sample(FINAL, 50, seed=7)
    assert a == b and len(set(a)) == 50 and set(a) <= set(FINAL)
    assert draw_sample(FINAL, 50, seed=8) != a
    assert draw_sample({"x": "a", "y": "b"}, 50, seed=1) == ["x", "y"]
    # every item equally likely: over many draws each is picked about 50/200 of the time
    picks = np.zeros(len(FINAL))
    index = {item: k for k, item in enumerate(sorted(FINAL))}
    for seed in range(400):
        for item in draw_sample(FINAL, 50, seed=seed):
            picks[index[item]] += 1
    assert abs(picks.mean() / 400 - 0.25) < 1e-9 and picks.min() > 60 and picks.max() < 140


def test_a_stratified_sample_gives_each_label_its_share():
    chosen = draw_sample(FINAL, 20, seed=3, stratify="label")
    counts = {lab: sum(FINAL[i] == lab for i in chosen) for lab in ("billing", "delivery", "account")}
    assert counts == {"billing": 12, "delivery": 6, "account": 2}
    with pytest.raises(ValueError, match="stratify by one of label"):
        draw_sample(FINAL, 20, seed=3, stratify="annotator")


@pytest.mark.parametrize("accuracy", [0.80, 0.94, 0.99])
def test_the_95_percent_interval_holds_the_true_accuracy_at_least_95_percent_of_the_time(accuracy):
    """2000 simulated audits of 50 items each: the exact interval holds the true rate in >= 95% of them
    (Clopper-Pearson is conservative; a Wald interval fails this at 0.99)."""
    rng = np.random.default_rng(int(accuracy * 100))
    hits = 0
    for right in rng.binomial(50, accuracy, size=2000):
        low, high = accuracy_interval(int(right), 50)
        hits += low <= accuracy <= high
    assert hits / 2000 >= 0.945


def test_the_interval_on_edge_cases():
    assert accuracy_interval(0, 0) == (0.0, 1.0)
    low, high = accuracy_interval(50, 50)
    assert high == 1.0 and 0.92 < low < 0.94
    low, high = accuracy_interval(0, 50)
    assert low == 0.0 and 0.06 < high < 0.08


def frozen(label, annotators, version=1):
    return {"label": label, "annotators": annotators, "guideline_version": version, "decided_by": "unanimous"}


def test_more_than_6_percent_wrong_is_systemic_and_names_the_label_and_annotator_carrying_it():
    sample, answers = {}, {}
    for k in range(50):
        label = ("billing", "delivery")[k % 2]
        sample[f"i{k}"] = frozen(label, {"ann": label, "bob": label if k % 4 != 1 else "account"})
        answers[f"i{k}"] = label
    for k in (1, 3, 5, 7, 9):  # five delivery labels were wrong: 10%
        answers[f"i{k}"] = "account"
    rep = audit_report(sample, answers, population=400)
    assert (rep["n_answered"], rep["n_errors"], rep["verdict"]) == (50, 5, "systemic")
    assert rep["accuracy"] == 0.9 and rep["interval"][0] < 0.9 < rep["interval"][1]
    # ann gave all five wrong labels, bob two of them (on i1, i5 and i9 he had said what the auditor says)
    assert rep["carried_by"] == {"label": "delivery", "label_errors": 5, "annotator": "ann", "annotator_errors": 5}
    assert {r["name"]: r["errors"] for r in rep["by_annotator"]} == {"ann": 5, "bob": 2}
    assert rep["by_label"][0] == {"name": "delivery", "sampled": 25, "errors": 5, "error_rate": 0.2}
    assert "systemic: 5 of 50 audited labels wrong (10.0%, more than 6%)" in rep["summary"]
    assert "label 'delivery' (5 of 5" in rep["summary"]
    assert [d["item_id"] for d in rep["disagreements"]] == ["i1", "i3", "i5", "i7", "i9"]


def test_at_most_6_percent_wrong_is_individual_and_unanswered_items_are_left_out():
    sample = {f"i{k}": frozen("billing", {"ann": "billing"}) for k in range(60)}
    answers = {f"i{k}": "billing" for k in range(50)}
    answers["i0"] = answers["i1"] = answers["i2"] = "account"  # 3 of 50: 6%, not more
    rep = audit_report(sample, answers, population=60)
    assert rep["verdict"] == "individual" and rep["n_unanswered"] == 10 and rep["carried_by"] is None
    assert rep["error_rate"] == pytest.approx(SYSTEMIC_RATE)
    assert audit_report(sample, {}, population=60)["verdict"] is None
