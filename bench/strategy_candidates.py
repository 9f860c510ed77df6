"""Candidate query strategies measured against `margin-diverse`, `margin` and `random` (issue 15).

    OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 .venv/bin/python -m bench.strategy_candidates \\
        --dataset trec --seeds 5 --batch 25 --budget 3000 \\
        --strategy margin-diverse,margin,random,badge,density-margin,margin-diverse-3,class-balanced-margin

The candidates live here, not in `loop.core.strategies`, until one wins (docs/benchmarks.md,
"Label efficiency of the strategies"). Each has the strategy signature `(classifier, X, n, rng,
**kw) -> indices into X` and is added to the registry for the run only. The simulation is
`loop.workflows.simulate.simulate`, the code behind `loop simulate`. Writes
docs/bench/candidates-<dataset>[-noisy].json (summary per strategy, per-seed labels to 95/98%, AUC).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from loop.core import relabel as relabel_lib
from loop.core import strategies as strategies_lib
from loop.core.strategies import CANDIDATES_PER_PICK, diverse_top, margin_measure, top_n
from loop.workflows.simulate import SimConfig, simulate

REPO = Path(__file__).resolve().parents[1]


# -- BADGE (Ash et al. 2020): k-means++ seeding over gradient embeddings -----------------------
def badge(classifier, X: np.ndarray, n: int, rng: np.random.Generator, **_) -> np.ndarray:
    """k-means++ seeding on the last layer's gradient embeddings g_i = (p_i - onehot(argmax p_i)) x x_i.

    For a linear model the gradient of the loss with the predicted label as target is that outer
    product; its norm grows with uncertainty, and k-means++ spreads the batch over directions. The
    pairwise inner products factor (<g_i, g_j> = <a_i, a_j> <x_i, x_j>), so the C x d embeddings
    are never built.
    """
    proba = classifier.predict_proba(X)
    a = proba.copy()
    a[np.arange(len(a)), proba.argmax(axis=1)] -= 1.0
    sq = (a * a).sum(axis=1) * (X * X).sum(axis=1)  # ||g_i||^2
    if n >= len(X):
        return np.arange(len(X))
    first = int(np.argmax(sq))
    chosen = [first]
    d2 = sq + sq[first] - 2.0 * (a @ a[first]) * (X @ X[first])
    d2 = np.maximum(d2, 0.0)
    d2[first] = 0.0
    for _ in range(n - 1):
        total = d2.sum()
        if total <= 0:
            rest = np.setdiff1d(np.arange(len(X)), chosen)
            chosen.extend(rng.choice(rest, size=n - len(chosen), replace=False).tolist())
            break
        i = int(rng.choice(len(X), p=d2 / total))
        chosen.append(i)
        new = np.maximum(sq + sq[i] - 2.0 * (a @ a[i]) * (X @ X[i]), 0.0)
        d2 = np.minimum(d2, new)
        d2[chosen] = 0.0
    return np.asarray(chosen, dtype=np.int64)


# -- information density: uncertainty x typicality -------------------------------------------
def typicality(X: np.ndarray, k: int = 20, block: int = 2048) -> np.ndarray:
    """TypiClust's typicality (Hacohen et al. 2022): 1 / mean cosine distance to the k nearest
    other items of the pool (rows are L2-normalised)."""
    X32 = np.asarray(X, dtype=np.float32)
    k = min(k, len(X) - 1)
    out = np.empty(len(X))
    if k < 1:
        return np.ones(len(X))
    for r0 in range(0, len(X), block):
        sims = X32[r0:r0 + block] @ X32.T
        top = -np.partition(-sims, k, axis=1)[:, 1:k + 1]  # drop the item itself (similarity 1)
        out[r0:r0 + block] = 1.0 / np.maximum(1.0 - top.mean(axis=1), 1e-6)
    return out


def density_margin(classifier, X: np.ndarray, n: int, rng: np.random.Generator, **_) -> np.ndarray:
    """Information density (Settles & Craven 2008): margin uncertainty times typicality, with the
    k-means diversity step; uncertain outliers (typos, one-off questions) rank lower."""
    t = typicality(X)
    return diverse_top(margin_measure(classifier, X) * (t / t.max()), X, n, rng)


# -- a smaller shortlist for the diversity step -----------------------------------------------
def margin_diverse_3(classifier, X: np.ndarray, n: int, rng: np.random.Generator, **_) -> np.ndarray:
    """`margin-diverse` clustering the 3 x n most uncertain candidates instead of 10 x n: closer to
    plain margin, still one pick per cluster."""
    return diverse_top(margin_measure(classifier, X), X, n, rng, candidates_per_pick=3)


# -- class-balanced margin --------------------------------------------------------------------
def class_balanced_margin(classifier, X: np.ndarray, n: int, rng: np.random.Generator, *,
                          y_train=None, **_) -> np.ndarray:
    """Margin sampling that fills the batch class by class (by predicted class), rarest labelled
    class first, taking the most uncertain candidate of the class each time, from the 10 x n
    most uncertain: a class with few labels gets its uncertain items asked before a common one."""
    scores = margin_measure(classifier, X)
    shortlist = top_n(scores, min(len(X), n * CANDIDATES_PER_PICK))
    if len(shortlist) <= n:
        return shortlist
    classes = np.asarray(classifier.classes_)
    predicted = classes[classifier.predict_proba(X[shortlist]).argmax(axis=1)]
    labelled = {c: 0 for c in classes}
    if y_train is not None:
        for label, count in zip(*np.unique(np.asarray(y_train), return_counts=True)):
            labelled[label] = int(count)
    queues = {c: list(shortlist[predicted == c]) for c in classes}  # shortlist is sorted, best first
    picked: list[int] = []
    while len(picked) < n:
        open_classes = [c for c in classes if queues[c]]
        c = min(open_classes, key=lambda c: (labelled[c], -scores[queues[c][0]]))
        picked.append(int(queues[c].pop(0)))
        labelled[c] += 1
    return np.asarray(picked, dtype=np.int64)


# -- contrastive active learning (Margatina et al. 2021) ----------------------------------------
def _nearest_labelled(X: np.ndarray, X_train: np.ndarray, k: int, block: int = 2048) -> np.ndarray:
    """Indices of the k most similar labelled rows for each pool row (cosine; rows are unit length)."""
    k = min(k, len(X_train))
    out = np.empty((len(X), k), dtype=np.int64)
    Xt = np.asarray(X_train, dtype=np.float32)
    for r0 in range(0, len(X), block):
        sims = np.asarray(X[r0:r0 + block], dtype=np.float32) @ Xt.T
        out[r0:r0 + block] = np.argpartition(-sims, k - 1, axis=1)[:, :k]
    return out


def contrastive_scores(classifier, X: np.ndarray, X_train: np.ndarray, k: int = 10) -> np.ndarray:
    """CAL: mean KL(p(labelled neighbour) || p(item)) over the item's k nearest labelled items: an
    item the model treats unlike its labelled look-alikes sits on a boundary the labels have not fixed."""
    p_pool = np.clip(classifier.predict_proba(X), 1e-12, 1.0)
    p_lab = np.clip(classifier.predict_proba(X_train), 1e-12, 1.0)
    nbr = _nearest_labelled(X, X_train, k)
    pl = p_lab[nbr]                                           # (n, k, C)
    kl = (pl * (np.log(pl) - np.log(p_pool)[:, None, :])).sum(axis=2)
    return kl.mean(axis=1)


def contrastive(classifier, X: np.ndarray, n: int, rng: np.random.Generator, *, X_train=None, **_) -> np.ndarray:
    """CAL over the whole pool: the n items with the largest contrastive score."""
    return top_n(contrastive_scores(classifier, X, X_train), n)


def margin_contrastive(classifier, X: np.ndarray, n: int, rng: np.random.Generator, *, X_train=None,
                       **_) -> np.ndarray:
    """CAL re-ranking the 3 x n smallest margins: margin finds the boundary, CAL prefers the items
    that disagree with their labelled neighbours."""
    shortlist = top_n(margin_measure(classifier, X), min(len(X), 3 * n))
    if len(shortlist) <= n:
        return shortlist
    return shortlist[top_n(contrastive_scores(classifier, X[shortlist], X_train), n)]


# -- plain margin without near-duplicates -----------------------------------------------------
def margin_dedup(classifier, X: np.ndarray, n: int, rng: np.random.Generator, *, threshold: float = 0.9,
                 **_) -> np.ndarray:
    """Plain margin order, skipping an item whose cosine similarity to one already in the batch is
    at least `threshold` (a paraphrase): margin's picks, without the duplicates margin-diverse avoids."""
    order = top_n(margin_measure(classifier, X), len(X))
    picked: list[int] = []
    for i in order:
        if not picked or float((X[picked] @ X[i]).max()) < threshold:
            picked.append(int(i))
            if len(picked) == n:
                break
    if len(picked) < n:
        rest = order[~np.isin(order, picked)]
        picked.extend(rest[: n - len(picked)].tolist())
    return np.asarray(picked, dtype=np.int64)


CANDIDATES = {
    "contrastive": contrastive,
    "margin-contrastive": margin_contrastive,
    "margin-dedup": margin_dedup,
    "badge": badge,
    "density-margin": density_margin,
    "margin-diverse-3": margin_diverse_3,
    "class-balanced-margin": class_balanced_margin,
}


def calibrate_on_gold(X: np.ndarray, y, n: int, seed: int = 0) -> None:
    """Benchmark-only: every round's classifier in `loop simulate` is temperature-scaled
    (`loop.core.model.calibrate`) on `n` random pool items with their true labels, as a dev set or
    gold items would calibrate it. Predictions are unchanged; only the probabilities the strategy
    ranks by move."""
    from loop.core import model as model_lib
    from loop.workflows import simulate as simulate_lib

    gold = np.random.default_rng(seed).choice(len(X), size=n, replace=False)
    X_gold, y_gold = X[gold], np.asarray(y, dtype=str)[gold]
    plain_fit = simulate_lib.fit

    def fit(X_labelled, y_labelled, seed):
        clf = plain_fit(X_labelled, y_labelled, seed)
        return None if clf is None else model_lib.calibrate(clf, X_gold, y_gold)

    simulate_lib.fit = fit


def spread_screen(dataset: str, budgets=(200, 1000), seeds: int = 3, taus=(0.9, 0.97)) -> None:
    """Label spreading (scikit-learn LabelSpreading, kernel="knn", 10 neighbours, alpha 0.2) over the
    pool and the test texts, before a simulation: with random labelled sets, how right its
    pseudo-labels are, and the test accuracy of the classifier trained on the labelled items alone,
    with the pseudo-labels above `tau` added, and of the spreading itself."""
    from sklearn.semi_supervised import LabelSpreading

    from bench.label_efficiency import embedded
    from loop.core import model as model_lib

    X, y, X_test, y_test = embedded(dataset)
    y, y_test = np.asarray(y, dtype=str), np.asarray(y_test, dtype=str)
    classes = np.unique(y)
    X_all = np.vstack([X, X_test])
    for budget in budgets:
        for seed in range(seeds):
            lab = np.random.default_rng(seed).choice(len(X), size=budget, replace=False)
            code = np.full(len(X_all), -1)
            code[lab] = np.searchsorted(classes, y[lab])
            spread = LabelSpreading(kernel="knn", n_neighbors=10, alpha=0.2, max_iter=30).fit(X_all, code)
            dist = spread.label_distributions_
            conf, guess = dist.max(axis=1), classes[dist.argmax(axis=1)]
            base = model_lib.train(X[lab], list(y[lab]), seed=seed)
            line = (f"{dataset} {budget} seed {seed}: LR {float((base.predict(X_test) == y_test).mean()):.3f}, "
                    f"spreading {float((guess[len(X):] == y_test).mean()):.3f}")
            rest = np.setdiff1d(np.arange(len(X)), lab)
            for tau in taus:
                add = rest[conf[rest] >= tau]
                clf = model_lib.train(np.vstack([X[lab], X[add]]), list(y[lab]) + list(guess[add]), seed=seed)
                line += (f"; tau {tau}: {len(add)} pseudo-labels {float((guess[add] == y[add]).mean()):.3f} right, "
                         f"LR + them {float((clf.predict(X_test) == y_test).mean()):.3f}")
            print(line, flush=True)


def spread_on_pool(X: np.ndarray, tau: float, min_labels: int = 500) -> None:
    """Benchmark-only: from `min_labels` labels on, every round's classifier in `loop simulate` is
    trained on the labelled items plus the pool items that label spreading (LabelSpreading, knn,
    10 neighbours, alpha 0.2, over the labelled rows and the whole pool) gives a label with
    probability >= `tau` (self-training over the kNN graph)."""
    from sklearn.semi_supervised import LabelSpreading

    from loop.core import model as model_lib
    from loop.workflows import simulate as simulate_lib

    plain_fit = simulate_lib.fit

    def fit(X_labelled, y_labelled, seed):
        if len(y_labelled) < min_labels or len(set(y_labelled)) < 2:
            return plain_fit(X_labelled, y_labelled, seed)
        classes = np.unique(np.asarray(y_labelled, dtype=str))
        code = np.concatenate([np.searchsorted(classes, np.asarray(y_labelled, dtype=str)), np.full(len(X), -1)])
        dist = LabelSpreading(kernel="knn", n_neighbors=10, alpha=0.2, max_iter=30).fit(
            np.vstack([X_labelled, X]), code).label_distributions_[len(y_labelled):]
        add = dist.max(axis=1) >= tau
        return model_lib.train(np.vstack([X_labelled, X[add]]),
                               list(y_labelled) + list(classes[dist[add].argmax(axis=1)]), seed=seed)

    simulate_lib.fit = fit


def register() -> None:
    for name, fn in CANDIDATES.items():
        strategies_lib.STRATEGIES.setdefault(name, fn)


def main() -> None:
    from bench.label_efficiency import embedded

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", default="trec")
    ap.add_argument("--strategy", default="margin-diverse,margin,random," + ",".join(CANDIDATES))
    ap.add_argument("--batch", type=int, default=25)
    ap.add_argument("--budget", type=int, default=3000)
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--annotators", type=int, default=1)
    ap.add_argument("--overlap", type=int, default=1)
    ap.add_argument("--annotator-error", default="0")
    ap.add_argument("--relabel", default=relabel_lib.DEFAULT_MODE)
    ap.add_argument("--out", default=None, help="JSON file (default docs/bench/candidates-<dataset>[-noisy].json)")
    ap.add_argument("--calibrate-gold", type=int, default=0,
                    help="temperature-scale each round's model on this many random pool items (0: off)")
    ap.add_argument("--cv-temperature", action="store_true",
                    help="`model.train` with its 3-fold cross-validated temperature (CALIBRATION_FOLDS = 3)")
    ap.add_argument("--label-spreading", type=float, default=0.0,
                    help="self-train on label spreading's pool labels with at least this probability (0: off)")
    ap.add_argument("--spread-screen", action="store_true",
                    help="only screen label spreading's pseudo-labels on random labelled sets (no simulation)")
    args = ap.parse_args()
    if args.spread_screen:
        return spread_screen(args.dataset)
    register()
    if args.cv_temperature:
        from loop.core import model as model_lib

        model_lib.CALIBRATION_FOLDS = 3
    X, y, X_test, y_test = embedded(args.dataset)
    if args.label_spreading:
        spread_on_pool(X, args.label_spreading)
    if args.calibrate_gold:
        calibrate_on_gold(X, y, args.calibrate_gold)
    noisy = args.annotator_error != "0"
    cfg = SimConfig(strategies=args.strategy.split(","), batch=args.batch, budget=args.budget, seeds=args.seeds,
                    annotators=args.annotators, overlap=args.overlap,
                    annotator_error=[float(e) for e in args.annotator_error.split(",")], relabel=[args.relabel])
    start = time.perf_counter()
    result = simulate(X, y, X_test, y_test, cfg)
    result["seconds"] = round(time.perf_counter() - start, 1)
    out = Path(args.out or REPO / "docs" / "bench" / f"candidates-{args.dataset}{'-noisy' if noisy else ''}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    print(f"{args.dataset}: full-data accuracy {result['full_data_accuracy']:.3f}  ({result['seconds']} s)")
    for name, e in result["strategies"].items():
        print(f"{name:>22}: 95% {e['labels_to_95']} {e['labels_to_95_per_seed']} "
              f"98% {e['labels_to_98']} {e['labels_to_98_per_seed']} "
              f"x margin {e.get('labels_to_98_ratio_to_margin')} x random {e.get('labels_to_98_ratio_to_random')} "
              f"AUC {e['auc']} {e['auc_per_seed']} stop {e['stop']['fired']}/{e['stop']['of']} "
              f"at {e['stop']['labels_mean']}", flush=True)


if __name__ == "__main__":
    main()
