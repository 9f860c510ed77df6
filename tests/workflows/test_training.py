"""The one training path on a real Redis: the recorded policy, the training set, publishing."""

from __future__ import annotations

import json

import numpy as np
import pytest

from loop.core.embeddings import DIM
from loop.errors import ConfigError, LoopError
from loop.labels.policy import TrainingPolicy
from loop.workflows import training

P = 6


class FixedVectors:
    """Item vectors without a model: item i -> a vector that says its class; unknown items fail."""

    def __init__(self, known):
        self.known = set(known)

    def matrix(self, p, item_ids):
        missing = [i for i in item_ids if i not in self.known]
        if missing:
            raise LoopError(f"{len(missing)} items of project {p} (e.g. {missing[0]!r}) have no vector")
        return np.stack([np.full(DIM, 1.0 if i.startswith("p") else -1.0, dtype=np.float32) for i in item_ids]) \
            if item_ids else np.empty((0, DIM), dtype=np.float32)


def labelled(store, labels: dict[str, tuple[str, int]], round_id: int = 1):
    """alice's labels on items a round sent her (items not sent before join round `round_id`)."""
    store.save_project(P, {"labels": ["neg", "pos"]}, make_current=False)
    fresh = {item: ["alice"] for item in labels if item not in store.assigned(P)}
    if fresh:
        store.plan_round(P, {"id": round_id}, fresh)
    store.replace_annotations(P, {str(n): {"id": str(n), "item_id": item, "annotator": "alice", "label": label,
                                           "guideline_version": version, "created_at": f"2026-01-01T00:00:{n:02d}"}
                                  for n, (item, (label, version)) in enumerate(labels.items())})


def test_the_policy_is_recorded_once_and_kept_until_changed(redis_store):
    redis_store.save_project(P, {"labels": ["neg", "pos"]}, make_current=False)
    assert training.policy(redis_store, P) == TrainingPolicy()
    assert training.set_policy(redis_store, P) == TrainingPolicy()
    assert redis_store.project(P)["training_policy"] == TrainingPolicy().as_dict()  # recorded, even the default
    training.set_policy(redis_store, P, guideline_version=2)
    assert training.set_policy(redis_store, P, aggregation="dawid-skene") == TrainingPolicy("dawid-skene", 2)
    assert training.policy(redis_store, P) == TrainingPolicy("dawid-skene", 2)
    assert training.set_policy(redis_store, P, guideline_version=None).guideline_version is None


def test_the_guideline_version_option():
    assert training.parse_guideline_version(None) is training.KEEP  # not given: keep the recorded one
    assert training.parse_guideline_version("all") is None and training.parse_guideline_version("ALL") is None
    assert training.parse_guideline_version("2") == 2 and training.parse_guideline_version("v3") == 3


@pytest.mark.parametrize("bad", ["two", "0", "-1"])
def test_a_bad_guideline_version_option_says_what_it_takes(bad):
    with pytest.raises(ConfigError, match="--guideline-version"):
        training.parse_guideline_version(bad)


def test_training_set_and_final_labels_follow_the_policy(redis_store):
    labelled(redis_store, {"p1": ("pos", 1), "n1": ("neg", 1), "p2": ("pos", 2)})
    vectors = FixedVectors(["p1", "n1", "p2"])
    ts = training.training_set(redis_store, vectors, P)
    assert ts.item_ids == ["n1", "p1", "p2"] and ts.y == ["neg", "pos", "pos"] and ts.X.shape == (3, DIM)
    assert ts.trainable and ts.policy == TrainingPolicy()
    training.set_policy(redis_store, P, guideline_version=2)
    ts = training.training_set(redis_store, vectors, P)
    assert ts.item_ids == ["p2"] and not ts.trainable
    assert training.final_labels(redis_store, P) == {"p2": "pos"}
    assert training.retrain(redis_store, vectors, P) is None  # one class: nothing published
    assert redis_store.current_model_version(P) is None


def test_retrain_publishes_a_new_version_only_when_the_training_set_changed(redis_store):
    labelled(redis_store, {"p1": ("pos", 1), "n1": ("neg", 1)})
    vectors = FixedVectors(["p1", "n1", "p2"])
    assert training.retrain(redis_store, vectors, P) == "v1"
    assert training.retrain(redis_store, vectors, P) is None  # the same labels: the same model, no new version
    assert redis_store.current_model_version(P) == "v1"
    labelled(redis_store, {"p1": ("pos", 1), "n1": ("neg", 1), "p2": ("pos", 1)}, round_id=2)
    assert training.retrain(redis_store, vectors, P) == "v2"
    snap = redis_store.load_model(P)
    assert snap.version == "v2" and snap.n_labels == 3 and snap.classes == ["neg", "pos"]
    training.set_policy(redis_store, P, aggregation="dawid-skene")  # a new policy may decide otherwise: retrain
    assert training.retrain(redis_store, vectors, P) == "v3"


def test_an_item_without_a_vector_is_an_error_not_a_silent_drop(redis_store):
    labelled(redis_store, {"p1": ("pos", 1), "n1": ("neg", 1), "p9": ("pos", 1)})
    with pytest.raises(LoopError, match="'p9'"):
        training.retrain(redis_store, FixedVectors(["p1", "n1"]), P)


def test_a_policy_change_has_the_trainer_retrain(redis_store):
    redis_store.save_project(P, {"labels": ["neg", "pos"]}, make_current=False)
    training.set_policy(redis_store, P)  # the first record: nothing to redo
    assert redis_store.event_count(P) == 0
    training.set_policy(redis_store, P, guideline_version=2)
    training.set_policy(redis_store, P, guideline_version=2)  # unchanged: no second event
    events = [json.loads(f[b"event"]) for _, f in redis_store.r.xrange(f"loop:project:{P}:events")]
    assert events == [{"action": "POLICY_CHANGED", "retrain": True}]
