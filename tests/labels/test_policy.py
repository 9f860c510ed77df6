"""The training policy: which labels count and how several become one, recorded as plain data."""

from __future__ import annotations

import pytest

from loop.errors import ConfigError
from loop.labels.aggregation import DEFAULT_METHOD
from loop.labels.policy import TrainingPolicy


def rec(aid, item, who, label, version=1, at=None):
    return {"id": aid, "item_id": item, "annotator": who, "label": label, "guideline_version": version,
            "created_at": at or f"2026-01-01T00:00:{int(aid):02d}"}


ANNOTATIONS = [
    rec("1", "x", "ann", "a", version=1), rec("2", "x", "bob", "a", version=1),
    rec("3", "y", "ann", "b", version=2), rec("4", "y", "bob", "b", version=2),
    rec("5", "z", "ann", "a", version=1), rec("6", "z", "bob", "b", version=2),
    rec("7", "w", "ann", None, version=2),  # a skip
    rec("8", "x", "judge", "b", version=1),  # the adjudicator's ruling on x
]
ADJUDICATION = {"x": {"adjudicator": "judge"}}


def test_the_default_policy_counts_every_version_and_adjudications():
    policy = TrainingPolicy()
    assert (policy.aggregation, policy.guideline_version, policy.adjudications) == (DEFAULT_METHOD, None, True)
    labels = policy.final_labels(ANNOTATIONS, ADJUDICATION)
    assert set(labels) == {"x", "y", "z"} and labels["x"] == "b" and labels["y"] == "b"


def test_a_guideline_version_keeps_only_its_labels():
    labels = TrainingPolicy(guideline_version=2).final_labels(ANNOTATIONS, ADJUDICATION)
    assert labels == {"y": "b", "z": "b"}  # x's labels (and its ruling) were made under v1
    # (by the vote: with two items, a model of who is reliable has nothing to go on)
    v1 = TrainingPolicy(guideline_version=1, aggregation="majority")
    assert v1.final_labels(ANNOTATIONS, ADJUDICATION) == {"x": "b", "z": "a"}


def test_without_adjudications_the_ruling_is_one_more_vote():
    decisions = TrainingPolicy(adjudications=False).decisions(ANNOTATIONS, ADJUDICATION)
    assert decisions["x"]["decided_by"] != "adjudicated" and decisions["x"]["n_labels"] == 3
    assert TrainingPolicy().decisions(ANNOTATIONS, ADJUDICATION)["x"]["decided_by"] == "adjudicated"


def test_round_trips_through_a_project_record():
    policy = TrainingPolicy(aggregation="dawid-skene", guideline_version=3)
    assert TrainingPolicy.of({"training_policy": policy.as_dict()}) == policy
    assert TrainingPolicy.of({}) == TrainingPolicy() == TrainingPolicy.of(None)
    assert "guideline v3" in policy.describe() and "dawid-skene" in policy.describe()


@pytest.mark.parametrize("kwargs, message", [
    ({"aggregation": "mean"}, "unknown aggregation method 'mean'"),
    ({"guideline_version": 0}, "not a version number"),
    ({"guideline_version": "2"}, "not a version number"),
])
def test_a_bad_policy_is_refused(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        TrainingPolicy(**kwargs)
