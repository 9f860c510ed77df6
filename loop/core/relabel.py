"""Relabel or label new: which labelled items get another label, and how many.

After ActiveLab (Goh & Mueller, 2023), written from the paper. Every labelled item gets a quality
score in [0, 1], how likely its consensus label is right: the weighted mean of the annotators'
confidence in it (the aggregation's posterior, weighted by its number of labels) and the model's
probability of that label, predicted out of sample (cross-validated: a model that trained on the
item would vouch for its own label), weighted as one label. An item whose annotators split, or
whose consensus the model doubts, scores low.

ActiveLab also scores unlabelled items (the model's confidence) and spends each label on the
lowest score of either kind. In a pool of thousands there are always new items the model is less
sure of than any label, so that comparison never relabelled (0 relabels in a 1,500-label trec run,
docs/benchmarks.md "Relabel or label new"). `auto` instead relabels the items more likely wrong
than `AUTO_BELOW`, lowest first, in at most `AUTO_SHARE` of a round, and spends the rest on new
items: the rule and its numbers were chosen on `bench/relabel.py`.

Pure functions over arrays: no labels module, no I/O (`workflows.rounds` and `workflows.simulate`
feed them).
"""

from __future__ import annotations

import warnings
from typing import Sequence

import numpy as np
from sklearn.model_selection import StratifiedKFold, cross_val_predict
from threadpoolctl import threadpool_limits

from loop.core.model import new_classifier
from loop.errors import ConfigError

MODES = ("off", "auto")
DEFAULT_MODE = "off"  # `next-round --relabel` and `simulate --relabel`: docs/benchmarks.md "Relabel or label new"
MODEL_WEIGHT = 1.0  # the model counts as much as one annotator's label
MAX_LABELS = 5      # an item with this many labels is not relabelled: more voices will not settle it, a ruling will
AUTO_BELOW = 0.6    # auto relabels an item whose label is more likely wrong than this ...
AUTO_SHARE = 0.5    # ... in at most this share of a round: the rest grows the labelled set


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


def relabel_count(mode: str | int, size: int, quality: np.ndarray) -> int:
    """How many of a round's `size` items should be relabels, given the candidates' quality scores.

    "off": none; a number N: min(N, size, candidates); "auto": the candidates scoring below
    `AUTO_BELOW`, at most `AUTO_SHARE` of the round.
    """
    quality = np.asarray(quality, dtype=float)
    if mode == "off" or size < 1 or len(quality) == 0:
        return 0
    if mode != "auto":
        return int(min(int(mode), size, len(quality)))
    return int(min((quality < AUTO_BELOW).sum(), int(size * AUTO_SHARE)))


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
                    n_labels: np.ndarray, eligible: np.ndarray, mode: str | int, size: int,
                    seed: int = 0) -> np.ndarray:
    """Rows of the labelled set that get another label this round, lowest quality first.

    `confidence` and `n_labels` are each labelled row's aggregation (confidence in its consensus
    label `y_labelled`, number of labels); `eligible` masks the rows that may be relabelled (someone
    is left to ask, not adjudicated, not already out). `workflows.rounds` and `workflows.simulate`
    both call this, so a simulation measures the real decision.
    """
    eligible = np.asarray(eligible, dtype=bool)
    if mode == "off" or size < 1 or not eligible.any() or len(set(y_labelled)) < 2:
        return np.empty(0, dtype=int)
    rows = np.flatnonzero(eligible)
    proba, classes = out_of_sample_proba(X_labelled, y_labelled, seed=seed)
    column = {c: k for k, c in enumerate(classes)}
    model_p = np.array([proba[r, column[y_labelled[r]]] for r in rows])
    quality = labelled_quality(np.asarray(confidence, dtype=float)[rows], np.asarray(n_labels)[rows], model_p)
    k = relabel_count(mode, size, quality)
    return rows[np.argsort(quality, kind="stable")[:k]]
