"""The classifier: training preconditions, snapshot/restore fidelity, confidence."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.exceptions import NotFittedError
from sklearn.linear_model import LogisticRegression

from loop.core import model as model_lib
from loop.errors import LoopError


def data(n_classes: int, n: int = 60, dim: int = 5, seed: int = 0):
    rng = np.random.default_rng(seed)
    labels = [f"label-{i}" for i in range(n_classes)]
    y = [labels[i % n_classes] for i in range(n)]
    X = rng.normal(size=(n, max(dim, n_classes)))
    X[np.arange(n), np.arange(n) % n_classes] += 2.5
    return X, y


@pytest.mark.parametrize("y", [[], ["a"], ["a", "a", "a"]])
def test_train_needs_two_distinct_labels(y):
    X = np.zeros((len(y), 3))
    with pytest.raises(LoopError) as exc:
        model_lib.train(X, y)
    assert "two distinct labels" in str(exc.value)


def test_train_with_two_labels_fits():
    X, y = data(2)
    clf = model_lib.train(X, y)
    assert list(clf.classes_) == ["label-0", "label-1"]
    assert (clf.predict(X) == np.asarray(y)).mean() > 0.8  # it learned something


def test_train_is_deterministic():
    X, y = data(3)
    a, b = model_lib.train(X, y, seed=1), model_lib.train(X, y, seed=1)
    assert np.array_equal(a.coef_, b.coef_)


@pytest.mark.parametrize("n_classes", [2, 3, 6])
def test_snapshot_restore_gives_identical_probabilities(n_classes):
    X, y = data(n_classes)
    clf = model_lib.train(X, y)
    snap = model_lib.snapshot(clf, "v3", n_labels=len(y), round=2)
    assert snap.version == "v3" and snap.n_labels == len(y) and snap.round == 2
    assert snap.classes == sorted(set(y))
    restored = model_lib.restore(snap)
    X_new, _ = data(n_classes, n=25, seed=9)
    assert np.array_equal(restored.predict_proba(X_new), clf.predict_proba(X_new))
    assert list(restored.predict(X_new)) == list(clf.predict(X_new))
    assert restored.n_features_in_ == X.shape[1] == max(5, n_classes)


def test_restore_does_not_share_memory_with_the_snapshot():
    X, y = data(2)
    snap = model_lib.snapshot(model_lib.train(X, y), "v1", n_labels=len(y))
    restored = model_lib.restore(snap)
    restored.coef_ += 1.0
    assert not np.array_equal(snap.coef, restored.coef_)


def test_snapshot_of_an_unfitted_classifier():
    with pytest.raises(NotFittedError):
        model_lib.snapshot(LogisticRegression(), "v1", n_labels=0)


def test_snapshot_of_numeric_classes_stores_strings():
    X, _ = data(2)
    clf = LogisticRegression().fit(X, np.arange(len(X)) % 2)
    assert model_lib.snapshot(clf, "v1", n_labels=len(X)).classes == ["0", "1"]


def test_confidence_hand_built():
    proba = np.array([[0.2, 0.8], [0.6, 0.4], [0.5, 0.5]])
    assert model_lib.confidence(proba).tolist() == [0.8, 0.6, 0.5]
    three = np.array([[0.1, 0.3, 0.6], [0.7, 0.2, 0.1]])
    assert model_lib.confidence(three).tolist() == [0.6, 0.7]


@pytest.mark.parametrize("n_classes", [2, 4])
def test_confidence_is_the_probability_of_the_predicted_class(n_classes):
    X, y = data(n_classes)
    clf = model_lib.train(X, y)
    proba = clf.predict_proba(X)
    conf = model_lib.confidence(proba)
    predicted = clf.predict(X)
    column = {c: i for i, c in enumerate(clf.classes_)}
    assert conf.shape == (len(X),)
    assert np.array_equal(conf, proba[np.arange(len(X)), [column[c] for c in predicted]])
    assert np.all(conf >= 1.0 / n_classes - 1e-12) and np.all(conf <= 1.0)


@pytest.mark.parametrize("n_classes", [2, 4])
def test_predict_gives_the_predicted_label_and_its_confidence(n_classes):
    X, y = data(n_classes)
    clf = model_lib.train(X, y)
    guesses = model_lib.predict(clf, X)
    assert [label for label, _ in guesses] == [str(c) for c in clf.predict(X)]
    assert np.allclose([score for _, score in guesses], model_lib.confidence(clf.predict_proba(X)))
    assert all(isinstance(label, str) and isinstance(score, float) for label, score in guesses)
    assert model_lib.predict(clf, X[:0]) == []


# -- calibration (temperature scaling) ---------------------------------------------------------
def overconfident(seed: int = 0, n: int = 1200, dim: int = 40, n_classes: int = 3):
    """Few training rows in many dimensions with 25% of labels flipped: C=10 overfits, so the
    model is far more sure than right on new rows."""
    rng = np.random.default_rng(seed)
    labels = np.array([f"label-{i}" for i in range(n_classes)])
    code = rng.integers(0, n_classes, size=n)
    X = rng.normal(size=(n, dim))
    X[np.arange(n), code] += 3.5
    flip = rng.random(n) < 0.25
    code = np.where(flip, (code + rng.integers(1, n_classes, size=n)) % n_classes, code)
    return X, labels[code]


def test_ece_hand_built():
    classes = np.array(["a", "b"])
    proba = np.array([[0.9, 0.1], [0.9, 0.1], [0.3, 0.7], [0.3, 0.7]])
    # bin of 0.9: 1 of 2 right (|0.5 - 0.9| = 0.4); bin of 0.7: 2 of 2 right (|1 - 0.7| = 0.3)
    assert model_lib.expected_calibration_error(proba, classes, ["a", "b", "b", "b"]) == pytest.approx(0.35)
    assert model_lib.expected_calibration_error(np.array([[1.0, 0.0]]), classes, ["a"]) == 0.0


def raw_train(monkeypatch, X, y, seed=0):
    """The classifier without a cross-validated temperature (the default)."""
    monkeypatch.setattr(model_lib, "CALIBRATION_FOLDS", 0)
    clf = model_lib.train(X, y, seed=seed)
    monkeypatch.undo()
    return clf


def test_train_gives_raw_probabilities_by_default():
    X, y = overconfident(0)
    clf = model_lib.train(X[:150], y[:150])
    plain = model_lib.new_classifier().fit(X[:150], y[:150])
    assert np.array_equal(clf.predict_proba(X[150:]), plain.predict_proba(X[150:]))


def ece_on(clf, X, y) -> float:
    return model_lib.expected_calibration_error(clf.predict_proba(X), clf.classes_, y)


@pytest.mark.parametrize("seed", [0, 1])
def test_train_is_calibrated_by_cross_validation_on_an_overconfident_set(monkeypatch, seed):
    X, y = overconfident(seed)
    fit_rows, test = slice(0, 150), slice(150, None)
    raw = raw_train(monkeypatch, X[fit_rows], y[fit_rows], seed)
    assert raw.predict_proba(X[test]).max(axis=1).mean() > (raw.predict(X[test]) == y[test]).mean() + 0.1
    monkeypatch.setattr(model_lib, "CALIBRATION_FOLDS", 3)
    clf = model_lib.train(X[fit_rows], y[fit_rows], seed=seed)
    assert model_lib.cv_temperature(X[fit_rows], y[fit_rows], seed, folds=3) > 1.5  # softens
    assert ece_on(clf, X[test], y[test]) < ece_on(raw, X[test], y[test]) / 2
    assert np.array_equal(clf.predict(X[test]), raw.predict(X[test]))  # same labels, other scores


def test_train_without_enough_items_keeps_the_raw_probabilities(monkeypatch):
    X, y = overconfident(0)
    n = model_lib.MIN_CALIBRATION_ITEMS - 1
    assert model_lib.cv_temperature(X[:n], y[:n], folds=3) == 1.0
    raw = raw_train(monkeypatch, X[:n], y[:n])
    monkeypatch.setattr(model_lib, "CALIBRATION_FOLDS", 3)
    assert np.array_equal(model_lib.train(X[:n], y[:n]).coef_, raw.coef_)


@pytest.mark.parametrize("seed", [0, 1])
def test_calibrate_lowers_ece_of_an_overconfident_model_on_held_out_rows(monkeypatch, seed):
    X, y = overconfident(seed)
    fit_rows, cal, test = slice(0, 80), slice(80, 480), slice(480, None)
    clf = raw_train(monkeypatch, X[fit_rows], y[fit_rows], seed)
    assert model_lib.fit_temperature(clf, X[cal], y[cal]) > 1.5
    fixed = model_lib.calibrate(clf, X[cal], y[cal])
    assert ece_on(fixed, X[test], y[test]) < ece_on(clf, X[test], y[test]) / 2
    assert np.array_equal(fixed.predict(X[test]), clf.predict(X[test]))


def test_temperature_below_one_for_an_underconfident_model():
    X, y = data(3, n=400)
    clf = model_lib.with_temperature(model_lib.train(X[:200], y[:200]), 5.0)  # made far too unsure
    assert model_lib.fit_temperature(clf, X[200:], y[200:]) < 0.5


@pytest.mark.parametrize("n_classes", [2, 4])
def test_with_temperature_is_softmax_of_scaled_logits_and_survives_snapshot(n_classes):
    X, y = data(n_classes)
    clf = model_lib.train(X, y)
    scaled = model_lib.with_temperature(clf, 2.0)
    assert isinstance(scaled, LogisticRegression)
    z = model_lib.logits(clf, X) / 2.0
    expected = np.exp(z - z.max(axis=1, keepdims=True))
    assert np.allclose(scaled.predict_proba(X), expected / expected.sum(axis=1, keepdims=True))
    assert np.allclose(model_lib.with_temperature(clf, 1.0).predict_proba(X), clf.predict_proba(X))
    assert not np.array_equal(clf.coef_, scaled.coef_)  # the original is untouched
    restored = model_lib.restore(model_lib.snapshot(scaled, "v1", n_labels=len(y)))
    assert np.array_equal(restored.predict_proba(X), scaled.predict_proba(X))


def test_fit_temperature_ignores_labels_the_model_does_not_know():
    X, y = data(3, n=120)
    clf = model_lib.train(X[:60], y[:60])
    t = model_lib.fit_temperature(clf, X[60:], y[60:])
    assert model_lib.fit_temperature(clf, np.vstack([X[60:], X[:5]]), list(y[60:]) + ["unknown"] * 5) == t
    assert model_lib.fit_temperature(clf, X[:3], ["unknown"] * 3) == 1.0


@pytest.mark.parametrize("t", [0.0, -1.0])
def test_with_temperature_must_be_positive(t):
    X, y = data(2)
    with pytest.raises(LoopError, match="positive"):
        model_lib.with_temperature(model_lib.train(X, y), t)
