"""Majority vote per item, ties to the earliest annotation."""

from __future__ import annotations

import pytest

from loop.labels.aggregation import aggregate, majority_vote


@pytest.mark.parametrize("labels, expected", [
    (["a"], "a"),
    (["a", "b", "b"], "b"),
    (["b", "a", "b", "c", "a", "b"], "b"),
    (["c", "c", "a", "a", "a"], "a"),
])
def test_majority_vote(labels, expected):
    assert majority_vote(labels) == expected


@pytest.mark.parametrize("labels, expected", [
    (["a", "b"], "a"),
    (["b", "a"], "b"),
    (["c", "a", "a", "c"], "c"),
    (["x", "y", "z"], "x"),
    (["z", "y", "y", "z", "x"], "z"),
])
def test_tie_goes_to_the_earliest_label(labels, expected):
    assert majority_vote(labels) == expected


def test_majority_vote_accepts_an_iterator():
    assert majority_vote(iter(["a", "b", "b"])) == "b"


def test_majority_vote_of_nothing():
    with pytest.raises(ValueError):
        majority_vote([])


def ann(i, item, label, created_at):
    return {"id": str(i), "item_id": item, "annotator": f"person{i}", "label": label, "created_at": created_at}


def majority(annotations):
    return {item: d["label"] for item, d in aggregate(annotations, "majority").items()}


def test_majority_orders_labels_by_created_at():
    # Listed newest first: the tie must still go to the earlier annotation.
    annotations = [
        ann(1, "x", "billing", "2024-05-01T10:00:03Z"),
        ann(2, "x", "delivery", "2024-05-01T10:00:01Z"),
        ann(3, "y", "account", "2024-05-01T09:00:00Z"),
        ann(4, "y", "technical", "2024-05-01T08:00:00Z"),
    ]
    assert majority(annotations) == {"x": "delivery", "y": "technical"}
    assert majority(list(reversed(annotations))) == {"x": "delivery", "y": "technical"}


def test_majority_beats_order():
    annotations = [
        ann(1, "x", "a", "2024-01-01T00:00:00Z"),
        ann(2, "x", "b", "2024-01-02T00:00:00Z"),
        ann(3, "x", "b", "2024-01-03T00:00:00Z"),
        ann(4, "z", "solo", "2024-01-04T00:00:00Z"),
    ]
    assert majority(annotations) == {"x": "b", "z": "solo"}


def test_same_time_falls_back_to_the_annotation_id():
    annotations = [ann("b", "x", "late", "2024-01-01T00:00:00Z"), ann("a", "x", "early", "2024-01-01T00:00:00Z")]
    assert majority(annotations) == {"x": "early"}


def test_how_the_vote_decided():
    annotations = [
        ann(1, "x", "a", "2024-01-01T00:00:00Z"), ann(2, "x", "b", "2024-01-02T00:00:00Z"),
        ann(3, "x", "b", "2024-01-03T00:00:00Z"),                                            # 2 of 3
        ann(4, "t", "a", "2024-01-04T00:00:00Z"), ann(5, "t", "b", "2024-01-05T00:00:00Z"),  # 1-1
        ann(6, "u", "a", "2024-01-06T00:00:00Z"), ann(7, "u", "a", "2024-01-07T00:00:00Z"),  # 2 alike
        ann(8, "z", "solo", "2024-01-08T00:00:00Z"),                                         # one label
    ]
    decided = {item: d["decided_by"] for item, d in aggregate(annotations, "majority").items()}
    assert decided == {"x": "majority", "t": "tie-break", "u": "unanimous", "z": "single"}
