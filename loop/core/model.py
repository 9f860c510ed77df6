"""The classifier over embeddings, its snapshot, and its predictions.

One module for both the `loop` CLI and the ML backend, so training and serving never diverge.
Logistic regression: cheap to refit on a few thousand labels, and its probabilities are
calibrated well enough for uncertainty sampling.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from sklearn.linear_model import LogisticRegression
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


def new_classifier(seed: int = 0) -> LogisticRegression:
    return LogisticRegression(max_iter=1000, C=10.0, random_state=seed)


def train(X: np.ndarray, y: Sequence[str], seed: int = 0) -> LogisticRegression:
    """Fit a fresh classifier; needs at least two distinct labels."""
    if len(set(y)) < 2:
        raise LoopError(f"training needs at least two distinct labels, got {sorted(set(y))}")
    # One BLAS thread: lbfgs on a few thousand rows spends more time syncing threads than computing,
    # and on 2 cores shared with Label Studio it ran 3-8x slower with two (docs/benchmarks.md).
    with threadpool_limits(limits=1, user_api="blas"):
        return new_classifier(seed).fit(X, np.asarray(y))


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
