"""One step of active learning, shared by `loop next-round` and `loop simulate`: aggregate labels,
train, score, choose a batch, and measure the new model (stop set, dev set).

Both callers go through `choose_batch` and `measure_round`, so a simulation replays exactly the
selection, model and stop rule of the real loop.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
from sklearn.metrics import accuracy_score, f1_score

from loop.core import model as model_lib
from loop.core.stopping import prediction_kappa
from loop.core.strategies import select


@dataclass
class Batch:
    picked: np.ndarray            # indices into the pool
    classifier: object | None     # None: no model yet (cold start)
    strategy: str                 # what ran: the requested strategy, or "cold-start"


def fit(X_labelled: np.ndarray, y_labelled: Sequence[str], seed: int):
    """The round's classifier, or None while fewer than two classes are labelled (cold start)."""
    return model_lib.train(X_labelled, list(y_labelled), seed=seed) if len(set(y_labelled)) >= 2 else None


def choose_batch(X_labelled: np.ndarray, y_labelled: Sequence[str], X_pool: np.ndarray, size: int,
                 strategy: str, seed: int, classifier=None) -> Batch:
    """`size` items of the pool by `strategy` (cold start without a classifier). `classifier`: the
    one `fit` gave already, so a caller that needed it first does not fit it twice."""
    classifier = classifier if classifier is not None else fit(X_labelled, y_labelled, seed)
    if size < 1 or len(X_pool) == 0:
        picked = np.empty(0, dtype=int)
    else:
        picked = select(strategy, classifier, X_pool, size, seed=seed, X_train=X_labelled,
                        y_train=np.asarray(y_labelled))
    return Batch(picked, classifier, strategy if classifier is not None else "cold-start")


@dataclass
class RoundMetrics:
    n_labels: int
    kappa: float | None = None                 # vs the previous model, on the stop set
    dev_accuracy: float | None = None
    dev_macro_f1: float | None = None
    extra: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {"n_labels": self.n_labels, "kappa": self.kappa, "dev_accuracy": self.dev_accuracy,
                "dev_macro_f1": self.dev_macro_f1, **self.extra}


def measure_round(classifier, previous, X_stop: np.ndarray | None, X_dev: np.ndarray | None,
                  y_dev: Sequence[str] | None, n_labels: int) -> RoundMetrics:
    """Kappa between this and the previous model on the stop set; accuracy and macro-F1 on the dev set."""
    metrics = RoundMetrics(n_labels=n_labels)
    if classifier is None:
        return metrics
    if X_stop is not None and len(X_stop) and previous is not None:
        metrics.kappa = prediction_kappa(previous.predict(X_stop), classifier.predict(X_stop))
    if X_dev is not None and y_dev is not None and len(y_dev):
        pred = classifier.predict(X_dev)
        metrics.dev_accuracy = float(accuracy_score(y_dev, pred))
        metrics.dev_macro_f1 = float(f1_score(y_dev, pred, average="macro", zero_division=0))
    return metrics
