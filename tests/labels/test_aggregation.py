"""aggregate(): majority vote, Dawid-Skene and majority with Dawid-Skene tie-breaks; adjudication;
annotator_reliability."""

from __future__ import annotations

import numpy as np
import pytest

from loop.errors import ConfigError, DataError
from loop.labels.aggregation import DECIDED_BY, DEFAULT_METHOD, METHODS, aggregate, annotator_reliability, dawid_skene


def rec(item, annotator, label, t=None):
    r = {"item_id": item, "annotator": annotator, "label": label}
    if t is not None:
        r["created_at"] = f"2024-01-01T00:00:{t:02d}Z"
    return r


def test_majority_decisions_by_hand():
    records = [
        rec("u", "A", "a", 1), rec("u", "B", "a", 2), rec("u", "C", "a", 3),          # unanimous
        rec("m", "A", "a", 1), rec("m", "B", "b", 2), rec("m", "C", "b", 3),          # 2 of 3
        rec("t", "A", "b", 2), rec("t", "B", "a", 1),                                  # tie: a is earlier
        rec("s", "A", "c", 1),                                                         # one label
    ]
    out = aggregate(records, "majority")
    assert out["u"] == {"label": "a", "confidence": 1.0, "decided_by": "unanimous", "n_labels": 3}
    assert out["m"] == {"label": "b", "confidence": pytest.approx(2 / 3), "decided_by": "majority", "n_labels": 3}
    assert out["t"] == {"label": "a", "confidence": 0.5, "decided_by": "tie-break", "n_labels": 2}
    assert out["s"] == {"label": "c", "confidence": 1.0, "decided_by": "single", "n_labels": 1}


@pytest.mark.parametrize("method", METHODS)
def test_one_label_is_single_not_unanimous_under_every_method(method):
    records = [rec("s", "A", "a", 1), rec("u", "A", "a", 2), rec("u", "B", "a", 3),
               rec("x", "A", "a", 4), rec("x", "B", "b", 5), rec("x", "C", "a", 6)]
    out = aggregate(records, method)
    assert out["s"]["decided_by"] == "single" and out["s"]["label"] == "a" and out["s"]["n_labels"] == 1
    assert out["u"]["decided_by"] == "unanimous" and out["u"]["n_labels"] == 2
    assert {d["decided_by"] for d in out.values()} <= set(DECIDED_BY)


@pytest.mark.parametrize("method", METHODS)
def test_one_label_then_adjudicated_is_adjudicated(method):
    out = aggregate([rec("s", "A", "a")], method, adjudicated={"s": "b"})
    assert out["s"] == {"label": "b", "confidence": 1.0, "decided_by": "adjudicated", "n_labels": 1}


def test_a_relabel_leaving_one_annotator_is_single():
    out = aggregate([rec("x", "A", "a", 1), rec("x", "A", "b", 2)], "majority")
    assert out["x"] == {"label": "b", "confidence": 1.0, "decided_by": "single", "n_labels": 1}


def test_the_default_method_is_the_one_default():
    records = [rec("t", "A", "b", 2), rec("t", "B", "a", 1), rec("u", "A", "a", 1), rec("u", "B", "a", 2)]
    assert aggregate(records) == aggregate(records, DEFAULT_METHOD)


def test_a_relabel_by_the_same_annotator_replaces_the_first():
    records = [rec("x", "A", "a", 1), rec("x", "B", "b", 2), rec("x", "A", "b", 3)]
    assert aggregate(records)["x"] == {"label": "b", "confidence": 1.0, "decided_by": "unanimous", "n_labels": 2}


@pytest.mark.parametrize("method", ["majority", "dawid-skene", "majority-ds"])
def test_adjudicated_label_is_final(method):
    records = [rec("x", "A", "a"), rec("x", "B", "a"), rec("y", "A", "b"), rec("y", "B", "b")]
    out = aggregate(records, method, adjudicated={"x": "b", "z": "c"})
    assert out["x"] == {"label": "b", "confidence": 1.0, "decided_by": "adjudicated", "n_labels": 2}
    assert out["z"] == {"label": "c", "confidence": 1.0, "decided_by": "adjudicated", "n_labels": 0}
    assert out["y"]["decided_by"] != "adjudicated" and out["y"]["n_labels"] == 2


def test_unknown_method_and_bad_adjudication():
    with pytest.raises(ConfigError, match="unknown aggregation method 'mean'; use one of: "
                                          "majority, dawid-skene, majority-ds"):
        aggregate([rec("x", "A", "a")], method="mean")
    with pytest.raises(DataError, match="adjudicated label of item 'x'"):
        aggregate([rec("x", "A", "a")], adjudicated={"x": ""})


def test_nothing_to_aggregate():
    assert aggregate([]) == {}
    assert aggregate([], "dawid-skene") == {}
    assert aggregate([], "majority-ds") == {}
    assert aggregate([], "dawid-skene", adjudicated={"x": "a"})["x"]["decided_by"] == "adjudicated"


def experts_and_noisy_annotators():
    """Two experts are always right; three others are each wrong on 3 items in 10, independently
    except on every tenth item, where all three are wrong together.

    On those items the vote is 3 to 2 for the wrong label; from the other items Dawid-Skene learns
    that the experts are reliable and the three are not, and sides with the experts. (A clique
    that always errs together would fool it: the model assumes annotators err independently.)
    """
    wrong_on = {"N1": {0, 1, 2}, "N2": {0, 3, 4}, "N3": {0, 5, 6}}
    truth = {f"i{k:02d}": "ab"[k % 2] for k in range(60)}
    records = []
    for k, (item, true) in enumerate(truth.items()):
        wrong = "b" if true == "a" else "a"
        records += [rec(item, "E1", true), rec(item, "E2", true)]
        records += [rec(item, ann, wrong if k % 10 in ks else true) for ann, ks in wrong_on.items()]
    return truth, records


def test_dawid_skene_outweighs_a_wrong_majority():
    truth, records = experts_and_noisy_annotators()
    maj = aggregate(records, "majority")
    ds = aggregate(records, "dawid-skene")
    flipped = [item for k, item in enumerate(truth) if k % 10 == 0]
    assert all(maj[i]["label"] != truth[i] and maj[i]["decided_by"] == "majority" for i in flipped)
    assert all(ds[i]["label"] == truth[i] for i in truth)
    assert all(ds[i]["decided_by"] == "model-weighted" for i in flipped)
    unanimous = [item for k, item in enumerate(truth) if k % 10 in (7, 8, 9)]
    assert all(ds[i]["decided_by"] == "unanimous" for i in unanimous)
    assert all(ds[i]["confidence"] > 0.9 for i in truth)


def test_majority_ds_breaks_ties_by_reliability_and_keeps_majorities():
    truth, records = experts_and_noisy_annotators()
    # Tied items: N1 (wrong on 3 items in 10) labels first, an expert second.
    records += [rec("t1", "N1", "b", 1), rec("t1", "E1", "a", 2), rec("t2", "E2", "b", 1), rec("t2", "N3", "a", 2)]
    maj = aggregate(records, "majority")
    hyb = aggregate(records, "majority-ds")
    assert maj["t1"]["label"] == "b" and maj["t2"]["label"] == "b"        # the earliest label
    assert hyb["t1"] == {"label": "a", "confidence": 0.5, "decided_by": "tie-break", "n_labels": 2}
    assert hyb["t2"]["label"] == "b"                                    # the expert was first anyway
    # Everything that is not a tie is the plain majority, wrong 3-2 majorities included.
    assert all(hyb[i] == maj[i] for i in truth)


def test_majority_ds_exact_tie_keeps_the_earliest_label():
    out = aggregate([rec("x", "A", "b", 1), rec("x", "B", "a", 2)], "majority-ds")
    assert out["x"] == {"label": "b", "confidence": 0.5, "decided_by": "tie-break", "n_labels": 2}


def test_dawid_skene_is_deterministic_and_consistent():
    _, records = experts_and_noisy_annotators()
    m1, m2 = dawid_skene(records), dawid_skene(records)
    assert m1.converged and m1.classes == ["a", "b"] and m1.annotators == ["E1", "E2", "N1", "N2", "N3"]
    np.testing.assert_array_equal(m1.confusion, m2.confusion)
    np.testing.assert_array_equal(m1.posteriors, m2.posteriors)
    np.testing.assert_allclose(dawid_skene(list(reversed(records))).confusion, m1.confusion, atol=1e-12)
    # The returned posteriors are the E-step of the returned priors and confusions, by hand:
    # P(c | item) ~ prior[c] * prod over its annotators of confusion[a, c, label].
    item = m1.items.index("i00")   # true a: E1, E2 say a; N1-N3 say b
    a, b = 0, 1
    like = [m1.priors[c] * m1.confusion[0, c, a] * m1.confusion[1, c, a]
            * m1.confusion[2, c, b] * m1.confusion[3, c, b] * m1.confusion[4, c, b] for c in (a, b)]
    np.testing.assert_allclose(m1.posteriors[item], np.array(like) / sum(like), rtol=1e-9)
    np.testing.assert_allclose(m1.confusion.sum(axis=2), 1.0)
    assert m1.priors.sum() == pytest.approx(1.0)


def test_dawid_skene_exact_tie_falls_back_to_the_earliest_label():
    # Perfect symmetry: the posteriors are exactly 1/2, so the vote's tie-break decides.
    out = aggregate([rec("x", "A", "b", 1), rec("x", "B", "a", 2)], "dawid-skene")
    assert out["x"] == {"label": "b", "confidence": 0.5, "decided_by": "model-weighted", "n_labels": 2}


def test_dawid_skene_single_class():
    out = aggregate([rec("x", "A", "a"), rec("x", "B", "a"), rec("y", "A", "a")], "dawid-skene")
    assert out["x"] == {"label": "a", "confidence": 1.0, "decided_by": "unanimous", "n_labels": 2}
    assert out["y"]["label"] == "a" and out["y"]["decided_by"] == "single"


def test_dawid_skene_overruling_a_lone_label_is_model_weighted():
    # A always says a where the adjudicated truth is b, so A's lone "a" on z is read as b.
    records = [rec("z", "A", "a")]
    adjudicated = {}
    for k in range(6):
        records += [rec(f"y{k}", "A", "a"), rec(f"y{k}", "B", "b")]
        adjudicated[f"y{k}"] = "b"
    out = aggregate(records, "dawid-skene", adjudicated=adjudicated)
    assert out["z"]["label"] == "b" and out["z"]["decided_by"] == "model-weighted" and out["z"]["n_labels"] == 1


def test_adjudication_teaches_dawid_skene():
    # The only conflict: A says a, B says b on x. Adjudicating the items where A and B disagree
    # elsewhere in B's favour makes B the reliable one, so x goes to b.
    records = [rec("x", "A", "a", 1), rec("x", "B", "b", 2)]
    adjudicated = {}
    for k in range(6):
        item = f"y{k}"
        records += [rec(item, "A", "a"), rec(item, "B", "b")]
        adjudicated[item] = "b"
    assert aggregate(records, "majority")["x"]["label"] == "a"
    out = aggregate(records, "dawid-skene", adjudicated=adjudicated)
    assert out["x"]["label"] == "b" and out["x"]["decided_by"] == "model-weighted"


def test_annotator_reliability_by_hand():
    _, records = experts_and_noisy_annotators()
    consensus = aggregate(records, "majority")
    rel = annotator_reliability(records, consensus)
    assert list(rel) == ["E1", "E2", "N1", "N2", "N3"]
    # The majority is wrong on 6 of 60 items: the experts agree with it on 54; N1 is wrong on
    # 18 items, 6 of them the majority's, so it agrees on 60 - 12 = 48.
    assert rel["E1"]["n"] == 60 and rel["E1"]["agreement_with_consensus"] == pytest.approx(54 / 60)
    assert rel["N1"]["agreement_with_consensus"] == pytest.approx(48 / 60)
    # Dawid-Skene recovers the truth: experts near 1, the others near their 0.7.
    assert rel["E1"]["estimated_accuracy"] > 0.95
    assert 0.65 < rel["N1"]["estimated_accuracy"] < 0.75
    model = dawid_skene(records)
    assert rel["N2"]["estimated_accuracy"] == pytest.approx(
        float(model.priors @ np.diag(model.confusion[3])))


def test_annotator_reliability_takes_plain_labels_and_partial_consensus():
    records = [rec("x", "A", "a"), rec("x", "B", "b"), rec("y", "A", "a"), rec("z", "C", "c")]
    rel = annotator_reliability(records, {"x": "a", "y": "b"})
    assert rel["A"]["n"] == 2 and rel["A"]["agreement_with_consensus"] == 0.5
    assert rel["B"] == {"n": 1, "agreement_with_consensus": 0.0, "estimated_accuracy": rel["B"]["estimated_accuracy"]}
    assert rel["C"]["n"] == 0 and rel["C"]["agreement_with_consensus"] is None


@pytest.mark.realdata
def test_weather_sentiment_both_methods_near_the_platform_aggregate():
    import json

    from loop.labels.label_files import read_label_file
    from tests.helpers import shared_data

    folder = shared_data("weather_sentiment")
    records = read_label_file(folder / "annotations.jsonl")
    platform = {}
    for line in (folder / "items.jsonl").open(encoding="utf-8"):
        row = json.loads(line)
        platform[row["item_id"]] = row["crowdflower_aggregated_label"]
    for method, floor in (("majority", 0.96), ("dawid-skene", 0.94), ("majority-ds", 0.96)):
        out = aggregate(records, method)
        assert len(out) == 1000 and {d["n_labels"] for d in out.values()} == {20}
        agree = np.mean([out[i]["label"] == platform[i] for i in platform])
        assert agree >= floor, (method, agree)
    assert dawid_skene(records).converged


@pytest.mark.realdata
def test_armis_reliability_of_the_three_annotators():
    from loop.labels.label_files import read_label_file
    from tests.helpers import shared_data

    records = read_label_file(shared_data("armis") / "annotations.jsonl")
    rel = annotator_reliability(records, aggregate(records))
    assert set(rel) == {"Ann1", "Ann2", "Ann3"} and all(r["n"] == 943 for r in rel.values())
    # SOURCE.md: agreement with the majority of the *other* annotators is 0.892 / 0.842 / 0.82;
    # with a majority that includes their own label it can only be higher.
    assert rel["Ann1"]["agreement_with_consensus"] > 0.892
    assert all(0.5 < r["estimated_accuracy"] < 1 for r in rel.values())
