"""Agreement measures: hand-computed values, missing labels, undefined cases, real data."""

from __future__ import annotations

import json
import math

import pytest

from loop.errors import DataError
from loop.labels.agreement import (
    agreement_report,
    fleiss_kappa,
    krippendorff_alpha,
    label_confusions,
    pairwise_kappa,
    percent_agreement,
)


def recs(table: dict[str, dict[str, str | None]]) -> list[dict]:
    """{item: {annotator: label or None}} -> label records (None = that annotator skipped it)."""
    return [{"item_id": item, "annotator": ann, "label": lab}
            for item, row in table.items() for ann, lab in row.items() if lab is not None]


# Krippendorff (2011), "Computing Krippendorff's Alpha-Reliability", section C (nominal data,
# any number of observers, missing values): 4 observers, 12 units; unit 12 has a single value.
GWET = {
    "A": [1, 2, 3, 3, 2, 1, 4, 1, 2, None, None, None],
    "B": [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, None, 3],
    "C": [None, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, None],
    "D": [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, None],
}


def gwet_records() -> list[dict]:
    return [{"item_id": f"u{u + 1}", "annotator": obs, "label": str(v)}
            for obs, values in GWET.items() for u, v in enumerate(values) if v is not None]


def test_krippendorff_gwet_example():
    alpha = krippendorff_alpha(gwet_records())
    assert round(alpha["value"], 3) == 0.743
    assert alpha["n_items"] == 11      # unit 12 (one value) is not pairable
    assert alpha["n_labels"] == 40     # n.. in the paper


def test_krippendorff_by_hand_with_a_missing_label():
    # u1: a a  -> o[a,a] += 2
    # u2: a b b -> o[a,b] += 1, o[b,a] += 1, o[b,b] += 1
    # u3: b (one label, left out)
    # n_a = 3, n_b = 2, n = 5; alpha = 1 - (n-1) * 2 / (25 - 9 - 4) = 1 - 8/12 = 1/3
    alpha = krippendorff_alpha(recs({"u1": {"A": "a", "B": "a"},
                                     "u2": {"A": "a", "B": "b", "C": "b"},
                                     "u3": {"A": "b"}}))
    assert alpha["value"] == pytest.approx(1 / 3)
    assert (alpha["n_items"], alpha["n_labels"]) == (2, 5)


def test_krippendorff_undefined_cases():
    same = krippendorff_alpha(recs({"u1": {"A": "a", "B": "a"}, "u2": {"A": "a", "B": "a"}}))
    assert same["value"] is None and "no variation" in same["reason"]
    lonely = krippendorff_alpha(recs({"u1": {"A": "a"}, "u2": {"B": "b"}}))
    assert lonely["value"] is None and lonely["n_items"] == 0


def test_krippendorff_perfect_agreement_is_one():
    alpha = krippendorff_alpha(recs({"u1": {"A": "a", "B": "a"}, "u2": {"A": "b", "B": "b", "C": "b"}}))
    assert alpha["value"] == pytest.approx(1.0)


def test_percent_agreement_by_hand():
    # x: a a b -> 1 agreeing pair of 3; y: a a -> 1 of 1; z: one label, left out. Mean (1/3 + 1) / 2.
    pa = percent_agreement(recs({"x": {"A": "a", "B": "a", "C": "b"}, "y": {"A": "a", "B": "a"}, "z": {"A": "b"}}))
    assert pa == {"value": pytest.approx(2 / 3), "n_items": 2}


def test_percent_agreement_without_pairs():
    pa = percent_agreement(recs({"x": {"A": "a"}}))
    assert pa["value"] is None and pa["n_items"] == 0


def test_pairwise_kappa_by_hand():
    # A: a a b b, B: a b b b on 4 shared items. p_o = 3/4; p_e = .5*.25 + .5*.75 = .5; kappa = .5
    table = {f"i{k}": {"A": a, "B": b} for k, (a, b) in enumerate(zip("aabb", "abbb"))}
    (pair,) = pairwise_kappa(recs(table))
    assert pair["annotators"] == ["A", "B"]
    assert pair["n_items"] == 4
    assert pair["percent_agreement"] == pytest.approx(0.75)
    assert pair["kappa"] == pytest.approx(0.5)
    assert pair["reason"] is None


def test_pairwise_kappa_single_class_is_none_with_a_reason():
    table = {"i1": {"C": "a", "D": "a"}, "i2": {"C": "a", "D": "a"}, "i3": {"C": "a", "D": "a"}}
    (pair,) = pairwise_kappa(recs(table))
    assert pair["kappa"] is None                   # not NaN
    assert "chance agreement is 1" in pair["reason"]
    assert pair["percent_agreement"] == 1.0 and pair["n_items"] == 3


def test_pairwise_kappa_complete_disagreement_is_zero_not_undefined():
    # One always says a, the other always b: p_o = 0 and p_e = 0, so kappa = 0.
    (pair,) = pairwise_kappa(recs({"i1": {"A": "a", "B": "b"}, "i2": {"A": "a", "B": "b"}}))
    assert pair["kappa"] == 0.0 and pair["reason"] is None


def test_pairwise_kappa_uses_only_shared_items():
    # A and B share i1, i2; C shares only i3 with A. Pairs without a shared item are not listed.
    table = {"i1": {"A": "a", "B": "a"}, "i2": {"A": "b", "B": "b"}, "i3": {"A": "a", "C": "b"}, "i4": {"B": "a"}}
    pairs = {tuple(p["annotators"]): p for p in pairwise_kappa(recs(table))}
    assert set(pairs) == {("A", "B"), ("A", "C")}
    assert pairs[("A", "B")]["n_items"] == 2 and pairs[("A", "B")]["kappa"] == pytest.approx(1.0)
    assert pairs[("A", "C")]["n_items"] == 1 and pairs[("A", "C")]["kappa"] == 0.0


def test_fleiss_by_hand():
    # 4 items x 3 raters: (3,0) (2,1) (0,3) (1,2). p_a = p_b = .5 -> P_e = .5;
    # P_i = 1, 1/3, 1, 1/3 -> P = 2/3; kappa = (2/3 - 1/2) / (1/2) = 1/3.
    rows = {"i1": "aaa", "i2": "aab", "i3": "bbb", "i4": "abb"}
    table = {item: dict(zip("XYZ", labs)) for item, labs in rows.items()}
    fk = fleiss_kappa(recs(table))
    assert fk["value"] == pytest.approx(1 / 3)
    assert (fk["n_items"], fk["labels_per_item"]) == (4, 3)


def test_fleiss_needs_the_same_number_of_labels_per_item():
    fk = fleiss_kappa(gwet_records())
    assert fk["value"] is None
    assert "different numbers of labels" in fk["reason"] and "8 with 4" in fk["reason"]


def test_fleiss_single_class_and_single_label():
    same = fleiss_kappa(recs({"i1": {"A": "a", "B": "a"}, "i2": {"A": "a", "B": "a"}}))
    assert same["value"] is None and "chance agreement is 1" in same["reason"]
    one = fleiss_kappa(recs({"i1": {"A": "a"}, "i2": {"A": "b"}}))
    assert one["value"] is None and one["labels_per_item"] == 1


def test_fleiss_counts_labels_not_raters():
    # Different annotators per item is fine for Fleiss; only the count must be constant.
    table = {"i1": {"A": "a", "B": "a"}, "i2": {"C": "a", "D": "b"}, "i3": {"A": "b", "D": "b"}}
    fk = fleiss_kappa(recs(table))
    assert fk["value"] is not None and fk["labels_per_item"] == 2


def test_label_confusions_by_hand_worst_first():
    table = {"x": {"A": "a", "B": "a", "C": "b"},   # (a,b) x2
             "y": {"A": "a", "B": "b", "C": "c"},   # (a,b) (a,c) (b,c)
             "z": {"A": "b", "B": "c"},             # (b,c)
             "w": {"A": "c", "B": "c"}}             # no disagreement
    conf = label_confusions(recs(table))
    assert [(c["labels"], c["pairs"], c["items"]) for c in conf] == [
        (["a", "b"], 3, 2), (["b", "c"], 2, 2), (["a", "c"], 1, 1)]
    assert [c["share"] for c in conf] == pytest.approx([0.5, 1 / 3, 1 / 6])


def test_report_is_json_serialisable_and_warns_on_thin_figures():
    rep = agreement_report(gwet_records(), min_items=20)
    again = json.loads(json.dumps(rep, allow_nan=False))   # no NaN anywhere
    assert again["krippendorff_alpha"]["value"] == pytest.approx(0.7434, abs=1e-4)
    assert rep["n_items"] == 12 and rep["n_annotators"] == 4 and rep["n_records"] == 41
    assert rep["labels_per_item"] == {"min": 1, "median": 4.0, "max": 4}
    text = " ".join(rep["warnings"])
    assert "Krippendorff's alpha rests on 11 item(s), fewer than 20" in text
    assert "Fleiss' kappa is undefined" in text
    assert "6 of 6 annotator pairs share fewer than 20 items" in text
    assert rep["cohen_kappa"]["n_pairs"] == 6 and rep["cohen_kappa"]["n_min_items"] == 0
    assert rep["cohen_kappa"]["mean_min_items"] is None
    assert rep["confusions"][0]["labels"] in (["1", "2"], ["2", "3"])


def test_report_without_warnings_when_enough_items():
    rep = agreement_report(gwet_records(), min_items=5)
    assert not any("rests on" in w or "share fewer" in w for w in rep["warnings"])
    assert rep["cohen_kappa"]["n_min_items"] == 6
    assert rep["cohen_kappa"]["mean"] == pytest.approx(rep["cohen_kappa"]["mean_min_items"])


def test_report_with_an_undefined_pair_leaves_it_out_of_the_means():
    table = {"i1": {"A": "a", "B": "a", "C": "b"}, "i2": {"A": "a", "B": "a", "C": "a"}}
    rep = agreement_report(recs(table))
    k = rep["cohen_kappa"]
    assert k["n_pairs"] == 3 and k["n_defined"] == 2
    assert any("undefined for 1 of 3" in w for w in rep["warnings"])
    assert all(not (isinstance(v, float) and math.isnan(v)) for v in (k["mean"], k["weighted_mean"]))


def test_an_annotator_counts_once_per_item_latest_label_wins():
    records = [
        {"item_id": "i1", "annotator": "A", "label": "b", "created_at": "2024-01-02T00:00:00Z"},
        {"item_id": "i1", "annotator": "A", "label": "a", "created_at": "2024-01-01T00:00:00Z"},
        {"item_id": "i1", "annotator": "B", "label": "b", "created_at": "2024-01-01T12:00:00Z"},
    ]
    rep = agreement_report(records)
    assert rep["duplicates_dropped"] == 1
    assert rep["percent_agreement"] == {"value": 1.0, "n_items": 1}   # A's latest label is b
    assert any("repeated by the same annotator" in w for w in rep["warnings"])


def test_empty_report():
    rep = agreement_report([])
    assert rep["n_items"] == 0 and rep["labels_per_item"] is None
    assert rep["krippendorff_alpha"]["value"] is None and rep["cohen_kappa"]["mean"] is None
    json.dumps(rep, allow_nan=False)


@pytest.mark.parametrize("bad, message", [
    ({"item_id": "i", "annotator": "A"}, "no 'label' key"),
    ({"item_id": "i", "annotator": "", "label": "a"}, "'annotator' is empty"),
    ({"item_id": "i", "annotator": "A", "label": 1}, "must be a string"),
])
def test_bad_records_are_data_errors(bad, message):
    with pytest.raises(DataError, match=message):
        agreement_report([{"item_id": "ok", "annotator": "A", "label": "a"}, bad])


# Real data (../shared/data): the published figures in each SOURCE.md.

@pytest.mark.realdata
def test_armis_same_three_annotators_fleiss_defined():
    from loop.labels.label_files import read_label_file
    from tests.helpers import shared_data

    records = read_label_file(shared_data("armis") / "annotations.jsonl")
    rep = agreement_report(records)
    assert rep["n_items"] == 943 and rep["n_annotators"] == 3
    assert rep["labels_per_item"] == {"min": 3, "median": 3, "max": 3}
    assert round(rep["krippendorff_alpha"]["value"], 4) == 0.5242     # SOURCE.md
    assert rep["fleiss_kappa"]["labels_per_item"] == 3
    assert rep["fleiss_kappa"]["value"] == pytest.approx(0.524, abs=0.002)
    assert rep["cohen_kappa"]["n_pairs"] == rep["cohen_kappa"]["n_defined"] == 3
    assert rep["warnings"] == []


@pytest.mark.realdata
def test_md_agreement_five_labels_per_item_and_one_repeat():
    from loop.labels.label_files import read_label_file
    from tests.helpers import shared_data

    records = read_label_file(shared_data("md_agreement") / "annotations.jsonl")
    assert len(records) == 53765 and len(records) == 5 * 10753
    alpha = krippendorff_alpha(records)
    assert round(alpha["value"], 4) == 0.3587                        # SOURCE.md, all splits
    # Ann448 labelled md_agreement-test-2038 twice (0 both times): counted once, that item has
    # 4 annotators, so Fleiss is not defined over all items.
    fk = fleiss_kappa(records)
    assert fk["value"] is None and "10752 with 5" in fk["reason"] and "1 with 4" in fk["reason"]
    five = [r for r in records if r["item_id"] != "md_agreement-test-2038"]
    assert fleiss_kappa(five)["labels_per_item"] == 5
    assert fleiss_kappa(five)["value"] == pytest.approx(alpha["value"], abs=0.01)


@pytest.mark.realdata
def test_convabuse_varying_labels_per_item():
    from loop.labels.label_files import read_label_file
    from tests.helpers import shared_data

    records = read_label_file(shared_data("convabuse") / "annotations.jsonl")
    rep = agreement_report(records)
    assert round(rep["krippendorff_alpha"]["value"], 4) == 0.6495    # SOURCE.md
    assert rep["fleiss_kappa"]["value"] is None
    assert rep["labels_per_item"]["min"] == 2 and rep["labels_per_item"]["max"] == 8
    assert rep["cohen_kappa"]["n_pairs"] == 28                       # 8 annotators


@pytest.mark.realdata
def test_weather_sentiment_alpha():
    from loop.labels.label_files import read_label_file
    from tests.helpers import shared_data

    records = read_label_file(shared_data("weather_sentiment") / "annotations.jsonl")
    assert round(krippendorff_alpha(records)["value"], 4) == 0.2886  # SOURCE.md
    fk = fleiss_kappa(records)
    assert fk["labels_per_item"] == 20 and fk["value"] == pytest.approx(0.2886, abs=0.002)
