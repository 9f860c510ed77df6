"""Relabel or label new: where the next label teaches most.

After ActiveLab (Goh & Mueller, 2023), written from the paper. Every item gets a quality score in
[0, 1], how sure we are of the label it would end up with, and a round's labels go to the lowest
scores, labelled and unlabelled items competing on one scale:

- a labelled item: the weighted mean of the annotators' confidence in its consensus label (the
  aggregation's posterior or vote share, weighted by its number of labels: each label counts as
  much as the model) and the model's probability of that label, predicted out of sample
  (cross-validated: a model that trained on the item would vouch for its own label);
- an unlabelled item: the model's confidence in its predicted label (it has no annotator yet).

An item whose annotators split, or whose consensus the model doubts, scores lower than a new
item the model is fairly sure of, and gets another label from someone who has not labelled it.
Pure functions over arrays: no labels module, no I/O (`workflows.rounds` and `workflows.simulate`
feed them).
"""

from __future__ import annotations

import warnings
from typing import Sequence

import numpy as np
from sklearn.model_selection import StratifiedKFold, cross_val_predict
from threadpoolctl import threadpool_limits

from loop.core.model import confidence as model_confidence
from loop.core.model import new_classifier
from loop.errors import ConfigError

MODES = ("off", "auto")
DEFAULT_MODE = "off"  # `next-round --relabel` and `simulate --relabel`: docs/benchmarks.md "Relabel or label new"
MODEL_WEIGHT = 1.0  # the model counts as much as one annotator's label
MAX_LABELS = 5      # an item with this many labels is not relabelled: more voices will not settle it, a ruling will


def parse_mode(value: str | int | None) -> str | int:
    """`--relabel`: "off", "auto", or a number of items to relabel per round."""
    if value is None:
        return "off"
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    else:
        text = str(value).strip().lower()
        if text in MODES:
            return text
        try:
            number = int(text)
        except ValueError:
            raise ConfigError(f"--relabel is {value!r}; give auto, off, or a number of items per round") from None
    if number < 0:
        raise ConfigError(f"--relabel is {value!r}; a number of items must be 0 or more")
    return "off" if number == 0 else number


def out_of_sample_proba(X: np.ndarray, y: Sequence[str], seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(probabilities, classes): each labelled item's class probabilities from a model that did not
    train on it (stratified k-fold, k up to 5, limited by the rarest class; with a class of one
    item there is no such model for it, and its row is the plain fit's)."""
    y = np.asarray(y)
    classes, counts = np.unique(y, return_counts=True)
    folds = int(min(5, counts.min()))
    with threadpool_limits(limits=1, user_api="blas"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if folds >= 2:
            proba = cross_val_predict(new_classifier(seed), X, y, method="predict_proba",
                                      cv=StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed))
        else:
            proba = new_classifier(seed).fit(X, y).predict_proba(X)
    return proba, classes


def labelled_quality(consensus_confidence: np.ndarray, n_labels: np.ndarray, model_p_consensus: np.ndarray,
                     model_weight: float = MODEL_WEIGHT) -> np.ndarray:
    """Quality scores of labelled items: annotators' confidence (weighted by their number of
    labels) and the model's out-of-sample probability of the consensus label (weighted as one)."""
    n = np.asarray(n_labels, dtype=float)
    return (model_weight * np.asarray(model_p_consensus) + n * np.asarray(consensus_confidence)) / (model_weight + n)


def unlabelled_quality(model_confidence: np.ndarray) -> np.ndarray:
    """Quality scores of unlabelled items: the model's confidence in its predicted label."""
    return np.asarray(model_confidence, dtype=float)


def relabel_count(mode: str | int, size: int, labelled: np.ndarray, unlabelled: np.ndarray) -> int:
    """How many of a round's `size` items should be relabels (the rest new items).

    "off": none; a number N: min(N, size, candidates); "auto": as many as there are labelled
    candidates among the `size` lowest quality scores of both kinds together.
    """
    if mode == "off" or size < 1 or len(labelled) == 0:
        return 0
    if mode != "auto":
        return int(min(int(mode), size, len(labelled)))
    both = np.concatenate([np.asarray(labelled, dtype=float), np.asarray(unlabelled, dtype=float)])
    is_labelled = np.r_[np.ones(len(labelled), bool), np.zeros(len(unlabelled), bool)]
    lowest = np.argsort(both, kind="stable")[:size]
    return int(is_labelled[lowest].sum())


def assign_relabels(items: Sequence[str], annotators: Sequence[str],
                    labelled_by: dict[str, set[str]]) -> dict[str, list[str]]:
    """item -> [one annotator who has not labelled it], loads balanced; an item every annotator
    labelled already is left out."""
    load = {a: 0 for a in annotators}
    out: dict[str, list[str]] = {}
    for item in items:
        free = [a for a in annotators if a not in labelled_by.get(item, set())]
        if free:
            who = min(free, key=lambda a: (load[a], annotators.index(a)))
            load[who] += 1
            out[item] = [who]
    return out


def choose_relabels(X_labelled: np.ndarray, y_labelled: Sequence[str], confidence: np.ndarray,
                    n_labels: np.ndarray, eligible: np.ndarray, classifier, X_pool: np.ndarray,
                    mode: str | int, size: int, seed: int = 0) -> np.ndarray:
    """Rows of the labelled set that get another label this round, lowest quality first.

    `confidence` and `n_labels` are each labelled row's aggregation (confidence in its consensus
    label `y_labelled`, number of labels); `eligible` masks the rows that may be relabelled (someone
    is left to ask, not adjudicated, not already out); `classifier` is the round's model, whose
    confidence on `X_pool` prices the new items the relabels compete with. `workflows.rounds` and
    `workflows.simulate` both call this, so a simulation measures the real decision.
    """
    eligible = np.asarray(eligible, dtype=bool)
    if mode == "off" or classifier is None or size < 1 or not eligible.any():
        return np.empty(0, dtype=int)
    rows = np.flatnonzero(eligible)
    proba, classes = out_of_sample_proba(X_labelled, y_labelled, seed=seed)
    column = {c: k for k, c in enumerate(classes)}
    model_p = np.array([proba[r, column[y_labelled[r]]] for r in rows])
    labelled = labelled_quality(np.asarray(confidence, dtype=float)[rows], np.asarray(n_labels)[rows], model_p)
    unlabelled = unlabelled_quality(model_confidence(classifier.predict_proba(X_pool)) if len(X_pool) else np.empty(0))
    k = relabel_count(mode, size, labelled, unlabelled)
    return rows[np.argsort(labelled, kind="stable")[:k]]
