"""The classifier over embeddings, its snapshot, and its predictions.

One module for both the `loop` CLI and the ML backend, so training and serving never diverge.
Logistic regression: cheap to refit on a few thousand labels. Its raw probabilities are
under-confident on MiniLM embeddings (expected calibration error 0.05-0.13 on trec, 0.25-0.36 on
banking77's 77 classes: docs/benchmarks.md). A temperature fitted on cross-validated logits
(`cv_temperature`) or on held-out labelled items (`calibrate`: a dev set, gold items) fixes that and
folds into the coefficients (still a plain LogisticRegression, same predicted labels). `train` does
not apply it by default (`CALIBRATION_FOLDS = 0`): the strategies rank by these same probabilities,
and the sharpened ones cost label efficiency on banking77 (1,717 labels to 98% of full against
1,433, every seed worse). A calibrated `score` needs the temperature kept beside the raw model.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import log_softmax
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import KFold
from sklearn.utils.validation import check_is_fitted
from threadpoolctl import threadpool_limits

from loop.errors import LoopError


@dataclass(frozen=True)
class ModelSnapshot:
    """A fitted linear classifier as plain arrays and metadata, so any process can rebuild it
    (`services.store` owns how it is written to Redis)."""

    version: str
    classes: list[str]
    coef: np.ndarray
    intercept: np.ndarray
    n_labels: int
    created_at: float
    round: int | None = None
    training_digest: str | None = None  # what it was trained on (`training_digest`): a retrain on the same is skipped


CALIBRATION_FOLDS = 0       # folds of `cv_temperature` in `train`; 0: raw probabilities (the default, see above)
MIN_CALIBRATION_ITEMS = 30  # fewer training items: no temperature (too few held-out logits to fit one)


def new_classifier(seed: int = 0) -> LogisticRegression:
    return LogisticRegression(max_iter=1000, C=10.0, random_state=seed)


def train(X: np.ndarray, y: Sequence[str], seed: int = 0) -> LogisticRegression:
    """Fit a fresh classifier (temperature-scaled by `cv_temperature` when `CALIBRATION_FOLDS` >= 2);
    needs at least two distinct labels."""
    if len(set(y)) < 2:
        raise LoopError(f"training needs at least two distinct labels, got {sorted(set(y))}")
    # One BLAS thread: lbfgs on a few thousand rows spends more time syncing threads than computing,
    # and on 2 cores shared with Label Studio it ran 3-8x slower with two (docs/benchmarks.md).
    with threadpool_limits(limits=1, user_api="blas"):
        clf = new_classifier(seed).fit(X, np.asarray(y))
        t = cv_temperature(X, y, seed)
    return clf if t == 1.0 else with_temperature(clf, t)


def cv_temperature(X: np.ndarray, y: Sequence[str], seed: int = 0, folds: int | None = None) -> float:
    """The temperature minimising the log loss of `folds`-fold cross-validated logits of (X, y);
    each fold's model is the one `train` fits. Held-out items of a class their fold's model never
    saw are left out. 1.0 with fewer than `MIN_CALIBRATION_ITEMS` items or folds < 2."""
    folds = CALIBRATION_FOLDS if folds is None else folds
    y = np.asarray(y)
    if folds < 2 or len(y) < max(MIN_CALIBRATION_ITEMS, folds):
        return 1.0
    parts = []
    for fit_rows, held in KFold(folds, shuffle=True, random_state=seed).split(X):
        if len(np.unique(y[fit_rows])) < 2:
            continue
        clf = new_classifier(seed).fit(X[fit_rows], y[fit_rows])
        parts.append(_held_out_logits(clf, X[held], y[held]))
    return _best_temperature(parts)


def _held_out_logits(clf, X: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(logits, index of the true class) for the rows of X whose label `clf` knows."""
    classes = np.asarray(clf.classes_)
    y = np.asarray(y, dtype=classes.dtype)
    known = np.isin(y, classes)
    if not known.any():
        return np.empty((0, len(classes))), np.empty(0, dtype=np.int64)
    return logits(clf, np.asarray(X)[known]), np.searchsorted(classes, y[known])


def _best_temperature(parts: list[tuple[np.ndarray, np.ndarray]]) -> float:
    """The T in [0.05, 20] minimising the mean log loss of softmax(z / T) over all parts' rows."""
    parts = [(z, t) for z, t in parts if len(t)]
    n = sum(len(t) for _, t in parts)
    if n == 0:
        return 1.0

    def nll(log_t: float) -> float:
        return -sum(float(log_softmax(z / np.exp(log_t), axis=1)[np.arange(len(t)), t].sum()) for z, t in parts) / n

    return float(np.exp(minimize_scalar(nll, bounds=(np.log(0.05), np.log(20.0)), method="bounded").x))


def snapshot(clf: LogisticRegression, version: str, *, n_labels: int, round: int | None = None,
             training_digest: str | None = None) -> ModelSnapshot:
    check_is_fitted(clf)
    return ModelSnapshot(version=version, classes=[str(c) for c in clf.classes_], coef=clf.coef_,
                         intercept=clf.intercept_, n_labels=n_labels, created_at=time.time(), round=round,
                         training_digest=training_digest)


def training_digest(item_ids: Sequence[str], labels: Sequence[str], settings: str = "") -> str:
    """A fingerprint of a training set (items, their labels, and how they were chosen): equal
    digests train equal models, so the trainer publishes a new version only when it changed."""
    h = hashlib.sha256(settings.encode())
    for item, label in zip(item_ids, labels):
        h.update(f"\x00{item}\x01{label}".encode())
    return h.hexdigest()[:16]


def restore(snap: ModelSnapshot) -> LogisticRegression:
    """A fitted LogisticRegression from a snapshot (its learned attributes set directly)."""
    clf = new_classifier()
    clf.classes_ = np.asarray(snap.classes)
    clf.coef_ = np.array(snap.coef)
    clf.intercept_ = np.array(snap.intercept)
    clf.n_features_in_ = clf.coef_.shape[1]
    return clf


def logits(clf, X: np.ndarray) -> np.ndarray:
    """One column per class of `clf.classes_` whose softmax is `clf.predict_proba` (binary: [0, z])."""
    raw = clf.decision_function(X)
    return np.column_stack([np.zeros_like(raw), raw]) if raw.ndim == 1 else raw


def fit_temperature(clf, X: np.ndarray, y: Sequence[str]) -> float:
    """The temperature T in [0.05, 20] minimising the log loss of softmax(logits / T) on labelled
    items (X, y) that `clf` was not trained on. T < 1 sharpens (under-confident model), T > 1
    softens. Items whose label the classifier does not know are left out; 1.0 when none is left."""
    return _best_temperature([_held_out_logits(clf, X, y)])


def with_temperature(clf: LogisticRegression, temperature: float) -> LogisticRegression:
    """`clf` with probabilities softmax(logits / temperature): coefficients and intercepts divided by
    it, so the result is a plain fitted LogisticRegression (snapshot/restore unchanged) with the same
    predicted labels."""
    check_is_fitted(clf)
    if not temperature > 0:
        raise LoopError(f"temperature must be positive, got {temperature}")
    scaled = restore(snapshot(clf, "", n_labels=0))
    scaled.coef_, scaled.intercept_ = clf.coef_ / temperature, clf.intercept_ / temperature
    return scaled


def calibrate(clf: LogisticRegression, X_held: np.ndarray, y_held: Sequence[str]) -> LogisticRegression:
    """Temperature scaling (Guo et al. 2017) fitted on held-out labelled items: a dev set or gold
    items, not the strategy's picks (cross-validated on those the model looks as unsure as it is on
    them, and T stays about 1: docs/benchmarks.md)."""
    return with_temperature(clf, fit_temperature(clf, X_held, y_held))


def expected_calibration_error(proba: np.ndarray, classes: Sequence[str], y: Sequence[str],
                               bins: int = 15) -> float:
    """ECE of the top-label confidence: |accuracy - mean confidence| per equal-width bin, weighted
    by the bin's share of the rows."""
    conf = proba.max(axis=1)
    correct = np.asarray(classes)[proba.argmax(axis=1)] == np.asarray(y)
    which = np.clip(np.digitize(conf, np.linspace(0.0, 1.0, bins + 1)[1:-1]), 0, bins - 1)
    return float(sum((which == b).mean() * abs(correct[which == b].mean() - conf[which == b].mean())
                     for b in range(bins) if (which == b).any()))


def confidence(proba: np.ndarray) -> np.ndarray:
    """The probability of the predicted class: the `score` Label Studio shows (low = uncertain)."""
    return proba.max(axis=1)


def predict(clf, X: np.ndarray) -> list[tuple[str, float]]:
    """(label, confidence) per row of X: what a prediction shows an annotator, and its `score`."""
    if len(X) == 0:
        return []
    proba = clf.predict_proba(X)
    labels = np.asarray(clf.classes_)[proba.argmax(axis=1)]
    return [(str(label), float(score)) for label, score in zip(labels, confidence(proba))]
