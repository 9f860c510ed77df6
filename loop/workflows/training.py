"""The one training path: the project's policy, its labels as a training matrix, a model published.

`loop next-round` and the trainer (after each burst of annotations) both train through
`training_set` and `publish`, and `loop status`, `loop validate` and `loop export` read the labels
through `final_labels`, so they all apply the training policy recorded on the project
(`labels.policy.TrainingPolicy`) and get vectors the same way (`services.vectors.ItemVectors`:
an item whose vector this process lacks is embedded from its text; one with no text anywhere is
an error, never silently dropped).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from loop.core import model as model_lib
from loop.errors import ConfigError
from loop.labels.attribution import assigned_to, split
from loop.labels.policy import TrainingPolicy

log = logging.getLogger("loop.training")

KEEP = object()  # `set_policy`: leave this part of the policy as it is


def policy(store, p: int) -> TrainingPolicy:
    return TrainingPolicy.of(store.project(p))


def set_policy(store, p: int, *, aggregation: str | None = None, guideline_version: Any = KEEP) -> TrainingPolicy:
    """Record the project's training policy (None for `aggregation` and KEEP for
    `guideline_version` keep what is recorded; guideline_version None means every version)."""
    current = policy(store, p)
    version = current.guideline_version if guideline_version is KEEP else guideline_version
    new = TrainingPolicy(aggregation=aggregation or current.aggregation, guideline_version=version,
                         adjudications=current.adjudications)
    if new != current or "training_policy" not in (store.project(p) or {}):
        store.save_project(p, {"training_policy": new.as_dict()}, make_current=False)
        if new != current:  # the served model learnt under the old policy: have the trainer retrain
            store.append_event(p, {"action": "POLICY_CHANGED", "retrain": True})
    return new


def parse_guideline_version(value: str | None) -> Any:
    """The `--guideline-version` option: a version number, `all` (every version), or absent (KEEP)."""
    if value is None:
        return KEEP
    if value.strip().lower() == "all":
        return None
    try:
        version = int(value.lstrip("vV"))
    except ValueError:
        raise ConfigError(f"--guideline-version is {value!r}; give a version number (e.g. 2) or `all`") from None
    if version < 1:
        raise ConfigError(f"--guideline-version is {value!r}; versions start at 1")
    return version


def sent_to(store, p: int) -> dict[str, set[str]]:
    """item -> everyone it was sent to (by any round, as a new item or for another label, or as its
    adjudicator)."""
    rounds = store.round_numbers(p)
    return assigned_to([store.round_assignments(p, n) for n in rounds] + [store.round_relabels(p, n) for n in rounds],
                       store.adjudication(p))


def controls_sent(store, p: int) -> set[tuple[str, str]]:
    """(gold item, annotator) of every control item a round mixed into an annotator's queue."""
    return {(item, who) for n in store.round_numbers(p) for item, people in store.round_controls(p, n).items()
            for who in people}


def is_control_answer(record: Mapping, controls: set[tuple[str, str]]) -> bool:
    """A label its author gave in their own queue on a gold item sent to them as a control."""
    return record.get("queue") == record["annotator"] and (record["item_id"], record["annotator"]) in controls


def control_answers(store, p: int, annotations: Mapping[str, dict] | None = None) -> list[dict]:
    """The answers to control items: evidence of each annotator's accuracy on gold (`labels.gold`)."""
    annotations = store.annotations(p) if annotations is None else annotations
    controls = controls_sent(store, p)
    return [a for a in annotations.values() if is_control_answer(a, controls)] if controls else []


def labels_that_count(store, p: int, annotations: Mapping[str, dict] | None = None) -> tuple[list, list]:
    """(records that count, records left out with the reason): a label counts when its author was
    sent the item, in their own queue, or an operator accepted it (`labels.attribution`). Training,
    agreement, the contested queue, the budget and the pool all count the first list only.
    Answers to control items are in neither list (`control_answers`)."""
    annotations = store.annotations(p) if annotations is None else annotations
    controls = controls_sent(store, p)
    # A control answer measures its author against gold: never a label spent, and not "outside" either.
    records = [a for a in annotations.values() if not is_control_answer(a, controls)] if controls \
        else annotations.values()
    return split(records, sent_to(store, p), store.accepted(p))


def without_gold(store, p: int, counted: list) -> list:
    """The labels that count, minus those on gold items: gold is the evaluation set, never trained
    on. Every path that trains or reports training labels (here, `status`, `validate`, `export`)
    goes through it; the budget and round progress still see every label that counts."""
    gold = store.gold(p)
    return [a for a in counted if a["item_id"] not in gold] if gold else list(counted)


def final_labels(store, p: int, annotations: Mapping[str, dict] | None = None) -> dict[str, str]:
    """item -> the one label the project's models learn from, under its training policy (gold items
    never among them)."""
    counted, _ = labels_that_count(store, p, annotations)
    return policy(store, p).final_labels(without_gold(store, p, counted), store.adjudication(p))


@dataclass(frozen=True)
class TrainingSet:
    item_ids: list[str]   # sorted
    X: np.ndarray         # one row per item, in item_ids order
    y: list[str]
    policy: TrainingPolicy

    @property
    def trainable(self) -> bool:
        """At least two classes: a classifier can be fitted."""
        return len(set(self.y)) >= 2

    @property
    def digest(self) -> str:
        return model_lib.training_digest(self.item_ids, self.y, repr(sorted(self.policy.as_dict().items())))


def training_set(store, vectors, p: int, annotations: Mapping[str, dict] | None = None) -> TrainingSet:
    """The project's final labels (under its policy) as a matrix of item vectors and their labels."""
    labels = final_labels(store, p, annotations)
    ids = sorted(labels)
    return TrainingSet(ids, vectors.matrix(p, ids), [labels[i] for i in ids], policy(store, p))


def publish(store, p: int, classifier, *, n_labels: int, round: int | None = None,
            training_digest: str | None = None, lease: str | None = None) -> str:
    """Store a fitted classifier under a new version (an atomic counter: two writers never share
    one) and make it current in one step, unless a newer version is current already. With `lease`
    (a trainer's training lease) nothing is written once the lease is lost (`store.LeaseLost`)."""
    version = store.next_model_version(p)
    if not store.save_model(p, model_lib.snapshot(classifier, version, n_labels=n_labels, round=round,
                                                   training_digest=training_digest), lease=lease):
        log.info("project %s: model %s stored, but a newer one is current", p, version)
    return version


def retrain(store, vectors, p: int, lease: str | None = None) -> str | None:
    """Refit on the project's training set and publish it; None (nothing published) while fewer
    than two classes are labelled, or when the training set is the one the current model learnt
    (a skip, an edit back and forth, an event for labels that do not count). `lease`: see `publish`."""
    start = time.perf_counter()
    ts = training_set(store, vectors, p)
    if not ts.trainable:
        return None
    current = store.load_model(p)
    if current is not None and current.training_digest == ts.digest:
        log.info("project %s: training set unchanged since model %s; nothing to publish", p, current.version)
        return None
    version = publish(store, p, model_lib.train(ts.X, ts.y), n_labels=len(ts.y), training_digest=ts.digest,
                      lease=lease)
    log.info("project %s: model %s from %d labels (%s) in %.2f s", p, version, len(ts.y), ts.policy.describe(),
             time.perf_counter() - start)
    return version
