"""Calibration of the default model's probabilities (issue 15): expected calibration error on a
held-out set at a few budgets, and whether temperature scaling or CalibratedClassifierCV fixes it.

    OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 .venv/bin/python -m bench.calibration --dataset trec --seeds 3
    (and --dataset banking77; default budgets 200,1000)

The labelled sets are the ones the loop itself would buy: the default strategy, batch 25, one
annotator without noise, from the cold start (`loop.core.learning.choose_batch`, as `loop
simulate`); a random set of the same size is measured too. ECE: 15 equal-width bins of the top
probability (the `score` annotators see), |accuracy - mean confidence| weighted by bin size.

Fixes measured (the first two fitted on the labelled items only, no held-out labels):
- temperature: one temperature T dividing the logistic regression's logits, chosen to minimise the
  log loss of 5-fold cross-validated logits of the labelled items; argmax (accuracy) unchanged.
- isotonic / sigmoid: scikit-learn's CalibratedClassifierCV (cv=3) around the same classifier.
- default (named so in the JSON; "3-fold CV temperature" in docs/benchmarks.md): `model.train` with
  `CALIBRATION_FOLDS = 3`, the model temperature-scaled by 3-fold cross-validated logits of its
  training items (`cv_temperature`); every other column is the raw model (`CALIBRATION_FOLDS = 0`,
  the loop's default). The labelled sets are bought with the module's `CALIBRATION_FOLDS`.
- gold temperature: `loop.core.model.calibrate`, one temperature fitted on `--gold` random pool items
  outside the labelled set (what a dev set or gold items are: labelled, not chosen by the strategy).

A reliability table (per bin: rows, mean confidence, accuracy, pooled over seeds) is printed for
the model as is and after the gold temperature.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import log_softmax, softmax
from sklearn.calibration import CalibratedClassifierCV
from sklearn.model_selection import KFold

from loop.core import model as model_lib
from loop.core.learning import choose_batch, fit
from loop.core.strategies import DEFAULT_STRATEGY

REPO = Path(__file__).resolve().parents[1]
BINS = 15


def ece(proba: np.ndarray, classes: np.ndarray, y: np.ndarray, bins: int = BINS) -> float:
    return model_lib.expected_calibration_error(proba, classes, y, bins)


def reliability(proba: np.ndarray, classes: np.ndarray, y: np.ndarray, bins: int = BINS) -> list[dict]:
    """Per non-empty equal-width bin of the top probability: rows, mean confidence, accuracy."""
    conf = proba.max(axis=1)
    correct = classes[proba.argmax(axis=1)] == y
    which = np.clip(np.digitize(conf, np.linspace(0.0, 1.0, bins + 1)[1:-1]), 0, bins - 1)
    return [{"bin": f"{b / bins:.2f}-{(b + 1) / bins:.2f}", "n": int((which == b).sum()),
             "confidence": float(conf[which == b].mean()), "accuracy": float(correct[which == b].mean())}
            for b in range(bins) if (which == b).any()]


def _logits(clf, X: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """Logits over all `classes` (a class the fold's model never saw gets -50)."""
    out = np.full((len(X), len(classes)), -50.0)
    out[:, np.searchsorted(classes, clf.classes_)] = model_lib.logits(clf, X)
    return out


def fit_temperature(X: np.ndarray, y: np.ndarray, seed: int, folds: int = 5) -> float:
    """The temperature minimising the log loss of cross-validated logits on the labelled items."""
    classes = np.unique(y)
    logits = np.zeros((len(y), len(classes)))
    for train, held in KFold(folds, shuffle=True, random_state=seed).split(X):
        if len(np.unique(y[train])) < 2:
            continue
        logits[held] = _logits(model_lib.train(X[train], list(y[train]), seed=seed), X[held], classes)
    target = np.searchsorted(classes, y)

    def nll(log_t: float) -> float:
        lp = log_softmax(logits / np.exp(log_t), axis=1)
        return float(-np.maximum(lp[np.arange(len(y)), target], np.log(1e-6)).mean())

    return float(np.exp(minimize_scalar(nll, bounds=(-3, 3), method="bounded").x))


def labelled_sets(X: np.ndarray, y: np.ndarray, budgets: list[int], seed: int,
                  batch: int = 25) -> dict[int, np.ndarray]:
    """The items the default strategy has bought at each budget (one noiseless annotator)."""
    pool, lab, out = np.arange(len(X)), np.empty(0, dtype=np.int64), {}
    round_no = 0
    while len(lab) < max(budgets):
        s = seed * 10_000 + round_no
        clf = fit(X[lab], list(y[lab]), seed=s)
        picked = pool[choose_batch(X[lab], list(y[lab]), X[pool], batch, DEFAULT_STRATEGY, seed=s,
                                   classifier=clf).picked]
        lab = np.concatenate([lab, picked])
        pool = np.setdiff1d(pool, picked, assume_unique=True)
        round_no += 1
        for b in budgets:
            if b not in out and len(lab) >= b:
                out[b] = lab[:b].copy()
    return out


def measure(X: np.ndarray, y: np.ndarray, X_test: np.ndarray, y_test: np.ndarray, idx: np.ndarray, seed: int,
            gold: np.ndarray) -> dict:
    """The model trained on `idx`, its ECE on the test set, and after each fix. `gold`: pool items
    outside `idx` (random, as a dev set or gold items would be) that `model.calibrate` fits on."""
    Xl, yl = X[idx], y[idx]
    folds = model_lib.CALIBRATION_FOLDS
    try:
        model_lib.CALIBRATION_FOLDS = 3  # `train` with its 3-fold cross-validated temperature
        default = model_lib.train(Xl, list(yl), seed=seed)
        model_lib.CALIBRATION_FOLDS = 0  # the raw model from here on
        row = _measure_raw(X, y, X_test, y_test, Xl, yl, seed, gold)
    finally:
        model_lib.CALIBRATION_FOLDS = folds
    default_proba = default.predict_proba(X_test)
    row.update({"default_temperature": model_lib.cv_temperature(Xl, yl, seed, folds=3),
                "ece_default": ece(default_proba, np.asarray(default.classes_), y_test),
                "reliability_default": reliability(default_proba, np.asarray(default.classes_), y_test)})
    return row


def _measure_raw(X, y, X_test, y_test, Xl, yl, seed, gold) -> dict:
    clf = model_lib.train(Xl, list(yl), seed=seed)
    classes = np.asarray(clf.classes_)
    proba = clf.predict_proba(X_test)
    t = fit_temperature(Xl, yl, seed)
    scaled = softmax(_logits(clf, X_test, classes) / t, axis=1)
    gold_t = model_lib.fit_temperature(clf, X[gold], y[gold])
    gold_proba = model_lib.with_temperature(clf, gold_t).predict_proba(X_test)
    row = {"accuracy": float((classes[proba.argmax(1)] == y_test).mean()),
           "mean_confidence": float(proba.max(1).mean()),
           "ece": ece(proba, classes, y_test), "temperature": t, "ece_temperature": ece(scaled, classes, y_test),
           "gold_temperature": gold_t, "ece_gold_temperature": ece(gold_proba, classes, y_test),
           "reliability": reliability(proba, classes, y_test),
           "reliability_gold_temperature": reliability(gold_proba, classes, y_test)}
    for method in ("sigmoid", "isotonic"):
        try:
            cal = CalibratedClassifierCV(model_lib.new_classifier(seed), method=method, cv=3).fit(Xl, yl)
        except ValueError as e:  # a class with fewer members than folds
            row[f"ece_{method}"] = row[f"accuracy_{method}"] = None
            row[f"error_{method}"] = str(e)[:80]
            continue
        p = cal.predict_proba(X_test)
        row[f"ece_{method}"] = ece(p, np.asarray(cal.classes_), y_test)
        row[f"accuracy_{method}"] = float((np.asarray(cal.classes_)[p.argmax(1)] == y_test).mean())
    return row


def main() -> None:
    from bench.label_efficiency import embedded

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", default="trec")
    ap.add_argument("--budgets", default="200,1000")
    ap.add_argument("--gold", type=int, default=200,
                    help="random pool items outside the labelled set for `model.calibrate`")
    ap.add_argument("--seeds", type=int, default=3)
    args = ap.parse_args()
    budgets = [int(b) for b in args.budgets.split(",")]
    X, y, X_test, y_test = embedded(args.dataset)
    y, y_test = np.asarray(y, dtype=str), np.asarray(y_test, dtype=str)
    rows = []
    for seed in range(args.seeds):
        active = labelled_sets(X, y, budgets, seed)
        rng = np.random.default_rng(seed)
        for b in budgets:
            for how, idx in (("active", active[b]), ("random", rng.choice(len(X), size=b, replace=False))):
                gold = rng.choice(np.setdiff1d(np.arange(len(X)), idx), size=args.gold, replace=False)
                rows.append({"budget": b, "labelled_by": how, "seed": seed,
                             **measure(X, y, X_test, y_test, idx, seed, gold)})
                r = rows[-1]
                print(f"{b:>5} {how:>6} seed {seed}: acc {r['accuracy']:.3f} conf {r['mean_confidence']:.3f} "
                      f"ECE {r['ece']:.3f} -> T={r['temperature']:.2f} {r['ece_temperature']:.3f}, "
                      f"gold T={r['gold_temperature']:.2f} {r['ece_gold_temperature']:.3f}, "
                      f"default (3-fold CV T={r['default_temperature']:.2f}) {r['ece_default']:.3f}, "
                      f"sigmoid {r['ece_sigmoid']}, isotonic {r['ece_isotonic']}", flush=True)
    out = REPO / "docs" / "bench" / f"calibration-{args.dataset}-{args.budgets.replace(',', '-')}.json"
    out.write_text(json.dumps(rows, indent=1))
    print("\nmeans over seeds")
    keys = ("accuracy", "mean_confidence", "ece", "temperature", "ece_temperature", "gold_temperature",
            "ece_gold_temperature", "default_temperature", "ece_default", "ece_sigmoid", "accuracy_sigmoid",
            "ece_isotonic", "accuracy_isotonic")
    for b in budgets:
        for how in ("active", "random"):
            mine = [r for r in rows if r["budget"] == b and r["labelled_by"] == how]
            means = {k: np.mean([r[k] for r in mine]) if all(r[k] is not None for r in mine) else None for k in keys}
            print(f"{b:>5} {how:>6}: " + "  ".join(f"{k} {'-' if v is None else f'{v:.3f}'}" for k, v in means.items()))
            for key in ("reliability", "reliability_gold_temperature", "reliability_default"):
                pooled: dict[str, list] = {}
                for r in mine:
                    for cell in r[key]:
                        pooled.setdefault(cell["bin"], []).append(cell)
                print(f"      {key} (bin: n, confidence, accuracy): " + "; ".join(
                    f"{k}: {sum(c['n'] for c in v)}, "
                    f"{sum(c['n'] * c['confidence'] for c in v) / sum(c['n'] for c in v):.2f}, "
                    f"{sum(c['n'] * c['accuracy'] for c in v) / sum(c['n'] for c in v):.2f}"
                    for k, v in sorted(pooled.items())))


if __name__ == "__main__":
    main()
