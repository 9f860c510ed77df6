"""`loop simulate`: replay the loop on an already-labelled dataset, with simulated annotators.

Each simulated annotator answers the true label, flipped to a random wrong label at their error
rate; a spammer answers any label at random. Everything else is the real loop's code:
`core.assign` spreads items over annotators, `labels.aggregation.aggregate` (the default method)
turns several labels into one, `core.relabel.choose_relabels` sends doubtful labels back (with
`relabel`), `core.learning.choose_batch` trains and selects, `core.learning.measure_round` and
`core.stopping.StabilizingPredictions` decide when to stop.

Each run reports, at every budget, the model's test accuracy and the accuracy of the training
labels (the aggregated labels against the truth): a strategy that buys a better model with worse
labels shows it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
from sklearn.metrics import accuracy_score

from loop.core import model as model_lib
from loop.core import relabel as relabel_lib
from loop.core.assign import assign
from loop.core.cover import check_share, plan_cover
from loop.core.coverage import cluster_embeddings
from loop.core.dataset import read_items
from loop.core.embeddings import embed_texts
from loop.core.learning import choose_batch, fit, measure_round
from loop.core.stopping import STOP_SET_SIZE, StabilizingPredictions
from loop.core.strategies import get_strategy
from loop.curation.validate import DEFAULT_NEGATIVES
from loop.errors import ConfigError, DataError
from loop.labels.aggregation import DEFAULT_METHOD, aggregate
from loop.workflows.progress import Progress, no_progress


@dataclass(frozen=True)
class SimConfig:
    strategies: Sequence[str]
    batch: int = 50             # items per round (new items and relabels), as in `next-round --size`
    budget: int = 3000          # labels (annotations) bought, as in `next-round --budget`
    seeds: int = 3
    annotators: int = 3
    overlap: int = 2
    annotator_error: Sequence[float] = (0.0,)
    spammers: int = 0           # the last `spammers` annotators answer at random
    relabel: Sequence[str | int] = (relabel_lib.DEFAULT_MODE,)  # `next-round --relabel` modes to compare
    cover_share: Sequence[float] = (0.0,)  # `next-round --cover-share` to compare (0: no coverage picks)
    stop_rule: StabilizingPredictions = field(default_factory=StabilizingPredictions)

    def check(self) -> None:
        for name in self.strategies:
            get_strategy(name)
        for mode in self.relabel:
            relabel_lib.parse_mode(mode)
        for share in self.cover_share:
            check_share(share)
        if self.batch < 1 or self.budget < self.overlap or self.seeds < 1:
            raise ConfigError("--batch and --seeds must be at least 1, and --budget at least --overlap")
        if not 1 <= self.overlap <= self.annotators:
            raise ConfigError(f"--overlap {self.overlap} must be between 1 and --annotators ({self.annotators})")
        if any(not 0 <= e < 1 for e in self.annotator_error):
            raise ConfigError("--annotator-error rates must be in [0, 1)")
        if not 0 <= self.spammers < self.annotators:
            raise ConfigError(f"--spammers {self.spammers} must be between 0 and --annotators - 1 "
                              f"({self.annotators - 1}): someone has to answer honestly")

    @property
    def modes(self) -> list[str | int]:
        return list(dict.fromkeys(relabel_lib.parse_mode(m) for m in self.relabel))

    @property
    def shares(self) -> list[float]:
        return list(dict.fromkeys(float(s) for s in self.cover_share))

    def arm(self, strategy: str, mode: str | int, share: float = 0.0) -> str:
        """A compared configuration's name: the strategy, and the relabel mode and cover share when
        several are compared."""
        name = strategy if len(self.modes) == 1 else f"{strategy}, relabel {mode}"
        return name if len(self.shares) == 1 else f"{name}, cover {share:g}"


def _answer(truth: str, error: float, classes: np.ndarray, rng: np.random.Generator) -> str:
    if rng.random() >= error:
        return truth
    return str(rng.choice([c for c in classes if c != truth]))


def simulated_answers(y: np.ndarray, classes: np.ndarray, errors: Sequence[float], spammers: int,
                      rng: np.random.Generator) -> np.ndarray:
    """answers[item, annotator]: what each annotator would say about each item, drawn up front so
    two runs with one seed (relabel on and off) face the same annotators answering the same way.
    Annotator k errs at errors[k] to a uniformly chosen wrong label; the last `spammers` pick any
    label uniformly."""
    n, people = len(y), len(errors)
    code = np.searchsorted(classes, y)
    shift = rng.integers(1, len(classes), size=(n, people)) if len(classes) > 1 else np.zeros((n, people), int)
    wrong = rng.random((n, people)) < np.asarray(errors)
    answers = np.where(wrong, (code[:, None] + shift) % len(classes), code[:, None])
    if spammers:
        answers[:, people - spammers:] = rng.integers(0, len(classes), size=(n, spammers))
    return classes[answers]


def run_once(X: np.ndarray, y: np.ndarray, X_test: np.ndarray, y_test: np.ndarray, strategy: str, seed: int,
             cfg: SimConfig, relabel: str | int = "off", *, cover_share: float = 0.0,
             X_production: np.ndarray | None = None, test_clusters: np.ndarray | None = None) -> dict:
    """One replay: the learning curve (labels bought vs test accuracy), the training labels'
    accuracy at the same points, kappas and the stop point. With `test_clusters` (the cluster of
    each test row) also the worst cluster's accuracy and the bottom decile's at each point
    (`cluster_accuracy`). With `cover_share` > 0, each round spends that share on coverage of
    `X_production` (default: the test set) as `next-round --cover` does: the pool and production
    are clustered together once per run."""
    relabel = relabel_lib.parse_mode(relabel)
    cover_share = check_share(cover_share)
    if cover_share > 0:
        X_prod = X_test if X_production is None else X_production
        joint = cluster_embeddings(np.concatenate([X, X_prod]), seed=seed)
        cover_k, pool_cluster, prod_cluster = joint.k, joint.labels[:len(X)], joint.labels[len(X):]
    rng = np.random.default_rng(seed)
    classes = np.unique(y)
    people = [f"sim{i}" for i in range(cfg.annotators)]
    errors = [cfg.annotator_error[i % len(cfg.annotator_error)] for i in range(cfg.annotators)]
    stop_idx = rng.choice(len(X), size=min(STOP_SET_SIZE, len(X)), replace=False)
    answers = simulated_answers(np.asarray(y, dtype=str), classes, errors, cfg.spammers, rng)
    labels: dict[int, list[tuple[str, str]]] = {}
    spent, previous = 0, None
    curve, label_curve, kappas, stop_at, relabelled = [], [], [], None, 0
    worst_curve, decile_curve, covered = [], [], 0
    pool = np.arange(len(X))
    round_no = 0

    def ask(item: int, who: str) -> None:
        labels.setdefault(item, []).append((who, str(answers[item, people.index(who)])))

    while True:
        round_seed = seed * 10_000 + round_no
        lab = np.fromiter(labels, dtype=np.int64)
        decisions = _decisions(labels)
        y_lab = [decisions[i]["label"] for i in lab]
        clf = fit(X[lab], y_lab, seed=round_seed)
        room = cfg.budget - spent
        size = min(cfg.batch, room)
        again = _relabels(labels, decisions, lab, y_lab, X, clf, relabel, size, people, round_seed)
        new = min(size - len(again), (room - len(again)) // cfg.overlap, len(pool))
        batch = choose_batch(X[lab], y_lab, X[pool], max(new, 1), strategy, seed=round_seed, classifier=clf)
        chosen = batch.picked[:max(new, 0)]
        if cover_share > 0 and new >= 1:
            plan = plan_cover(cover_k, pool_cluster[pool], pool_cluster[lab], prod_cluster, X[pool], clf, chosen,
                              new, cover_share, negatives=DEFAULT_NEGATIVES, seed=round_seed)
            chosen, covered = plan.picked, covered + len(plan.cover)
        if clf is not None:
            m = measure_round(clf, previous, X[stop_idx], None, None, n_labels=spent)
            predicted = clf.predict(X_test)
            acc = float(accuracy_score(y_test, predicted))
            curve.append((spent, acc))
            if test_clusters is not None:
                worst, decile = cluster_accuracy(predicted == y_test, test_clusters)
                worst_curve.append((spent, worst))
                decile_curve.append((spent, decile))
            label_curve.append((spent, _label_accuracy(decisions, y)))
            kappas.append(m.kappa)
            decision = cfg.stop_rule(kappas, [n for n, _ in curve])  # per label: rounds differ in size
            if decision.stop and stop_at is None:
                stop_at = {"labels": spent, "accuracy": acc, "round": round_no, "kappa": decision.value}
            previous = clf
        if new < 1 and not again:
            break
        for item, (who,) in again.items():
            ask(int(item), who)
        picked = pool[chosen]
        for item, who in assign([str(i) for i in picked], people, cfg.overlap).items():
            for person in who:
                ask(int(item), person)
        spent += len(again) + len(picked) * cfg.overlap
        relabelled += len(again)
        pool = np.setdiff1d(pool, picked, assume_unique=True)
        round_no += 1
    return {"strategy": strategy, "relabel": relabel, "seed": seed, "curve": curve, "label_curve": label_curve,
            "kappas": kappas, "stop": stop_at, "relabelled": relabelled, "cover_share": cover_share,
            "covered": covered, "worst_cluster_curve": worst_curve, "bottom_decile_curve": decile_curve,
            "labelled": sorted(int(i) for i in labels),
            "label_noise": 1.0 - _label_accuracy(_decisions(labels), y) if labels else 0.0}


def _relabels(labels: dict[int, list[tuple[str, str]]], decisions: dict[int, dict], lab: np.ndarray,
              y_lab: list[str], X: np.ndarray, clf, mode: str | int, size: int,
              people: list[str], seed: int) -> dict[str, list[str]]:
    """This round's relabels, chosen as `next-round --relabel` chooses them."""
    if mode == "off" or clf is None or size < 1:
        return {}
    labelled_by = {str(i): {who for who, _ in labels[i]} for i in lab}
    eligible = np.array([len(labels[i]) < relabel_lib.MAX_LABELS and len(labelled_by[str(i)]) < len(people)
                         for i in lab], dtype=bool)
    rows = relabel_lib.choose_relabels(
        X[lab], y_lab, np.array([decisions[i]["confidence"] for i in lab]),
        np.array([decisions[i]["n_labels"] for i in lab]), eligible, mode, size, seed=seed)
    return relabel_lib.assign_relabels([str(lab[r]) for r in rows], people, labelled_by)


def _decisions(labels: dict[int, list[tuple[str, str]]]) -> dict[int, dict]:
    """One decision per item from the simulated (annotator, label) votes, as the real loop aggregates."""
    records = [{"item_id": i, "annotator": who, "label": label} for i, votes in labels.items() for who, label in votes]
    return aggregate(records, DEFAULT_METHOD) if records else {}


def _label_accuracy(decisions: dict[int, dict], y: np.ndarray) -> float:
    """Share of labelled items whose aggregated label is the true one."""
    return float(np.mean([d["label"] == str(y[i]) for i, d in decisions.items()])) if decisions else 1.0


def cluster_accuracy(correct: np.ndarray, clusters: np.ndarray) -> tuple[float, float]:
    """(the worst cluster's accuracy, the mean accuracy of the worst decile of clusters: the
    ceil(k / 10) worst) from whether each test row was right and its cluster."""
    k = int(clusters.max()) + 1
    sizes = np.bincount(clusters, minlength=k)
    per = np.bincount(clusters, weights=correct.astype(float), minlength=k)[sizes > 0] / sizes[sizes > 0]
    per = np.sort(per)
    return float(per[0]), float(per[: int(np.ceil(len(per) / 10))].mean())


def labels_to_reach(curve: Sequence[tuple[int, float]], target: float) -> int | None:
    for labels, acc in curve:
        if acc >= target:
            return labels
    return None


def value_at(curve: Sequence[tuple[int, float]], budget: int) -> float | None:
    """What a run had at `budget` labels: its last measurement with at most that many (runs with
    relabels spend unevenly per round, so curves are compared at common budgets)."""
    seen = [v for spent, v in curve if spent <= budget]
    return seen[-1] if seen else None


def learning_curve_area(curve: Sequence[tuple[int, float]], budget: int) -> float:
    """The area under the learning curve up to `budget` labels, divided by `budget` (so in [0, 1]):
    the accuracy a run had at each label bought, averaged over the budget. Between measurements
    the last accuracy holds (as in `value_at`); before the first model it is 0."""
    if budget <= 0:
        return 0.0
    area, prev_spent, prev_acc = 0.0, 0, 0.0
    for spent, acc in curve:
        if spent > budget:
            break
        area += (spent - prev_spent) * prev_acc
        prev_spent, prev_acc = spent, acc
    area += (budget - prev_spent) * prev_acc
    return area / budget


def budgets(cfg: SimConfig) -> list[int]:
    """The budgets every arm is compared at: each round's worth of labels, and the whole budget."""
    step = cfg.batch * cfg.overlap
    return sorted(set(range(step, cfg.budget + 1, step)) | {cfg.budget})


def summarise(runs: list[dict], full_accuracy: float, arms: Sequence[str], grid: Sequence[int]) -> dict:
    """Per arm: mean and sd curves, labels to 95% / 98% of full-data accuracy (mean and per seed),
    the area under the learning curve up to the budget (`learning_curve_area`, mean and per seed),
    the stop rule, and the ratios of labels to 95% / 98% to random's and to plain margin's (with
    the same relabel mode) when those are among the arms."""
    out: dict = {"full_data_accuracy": full_accuracy, "strategies": {}}
    for name in arms:
        mine = [r for r in runs if r["arm"] == name]
        points = [b for b in grid if all(value_at(r["curve"], b) is not None for r in mine)]
        accs = np.array([[value_at(r["curve"], b) for b in points] for r in mine]).reshape(len(mine), len(points))
        label_accs = np.array([[value_at(r["label_curve"], b) for b in points] for r in mine]
                              ).reshape(len(mine), len(points))
        entry = {"strategy": mine[0]["strategy"], "relabel": mine[0]["relabel"], "labels": points,
                 "accuracy_mean": accs.mean(axis=0).round(4).tolist(),
                 "accuracy_std": accs.std(axis=0).round(4).tolist(),
                 "label_accuracy_mean": label_accs.mean(axis=0).round(4).tolist(),
                 "label_accuracy_std": label_accs.std(axis=0).round(4).tolist(),
                 "relabelled_mean": float(np.mean([r["relabelled"] for r in mine])), "seeds": len(mine),
                 "cover_share": mine[0].get("cover_share", 0.0),
                 "covered_mean": float(np.mean([r.get("covered", 0) for r in mine]))}
        for key in ("worst_cluster", "bottom_decile"):  # the tail: per-cluster accuracy on the test set
            if all(r.get(f"{key}_curve") for r in mine):
                tail = np.array([[value_at(r[f"{key}_curve"], b) for b in points] for r in mine]
                                ).reshape(len(mine), len(points))
                entry[f"{key}_accuracy_mean"] = tail.mean(axis=0).round(4).tolist()
                entry[f"{key}_accuracy_std"] = tail.std(axis=0).round(4).tolist()
                entry[f"{key}_auc"] = round(float(np.mean([learning_curve_area(r[f"{key}_curve"], grid[-1])
                                                           for r in mine])), 4) if grid else None
        for frac in (0.95, 0.98):
            reached = [labels_to_reach(r["curve"], frac * full_accuracy) for r in mine]
            ok = [v for v in reached if v is not None]
            entry[f"labels_to_{int(frac * 100)}"] = float(np.mean(ok)) if len(ok) == len(reached) else None
            entry[f"labels_to_{int(frac * 100)}_per_seed"] = reached
        areas = [learning_curve_area(r["curve"], grid[-1]) for r in mine] if grid else []
        entry["auc"] = round(float(np.mean(areas)), 4) if areas else None
        entry["auc_per_seed"] = [round(a, 4) for a in areas]
        stops = [r["stop"] for r in mine]
        fired = [s for s in stops if s]
        entry["stop"] = {"fired": len(fired), "of": len(stops),
                         "labels_mean": float(np.mean([s["labels"] for s in fired])) if fired else None,
                         "accuracy_mean": float(np.mean([s["accuracy"] for s in fired])) if fired else None,
                         "per_seed": stops}
        entry["label_noise_mean"] = float(np.mean([r["label_noise"] for r in mine]))
        out["strategies"][name] = entry
    for entry in out["strategies"].values():
        for reference in ("random", "margin"):
            base = next((e for e in out["strategies"].values()
                         if e["strategy"] == reference and e["relabel"] == entry["relabel"]), None)
            for key in ("labels_to_95", "labels_to_98"):
                entry[f"{key}_ratio_to_{reference}"] = (round(entry[key] / base[key], 3)
                                                        if base and entry[key] and base[key] else None)
    return out


def simulate(X: np.ndarray, y: Sequence[str], X_test: np.ndarray, y_test: Sequence[str], cfg: SimConfig,
             progress: Callable[[int], None] | None = None, X_production: np.ndarray | None = None) -> dict:
    """Every arm (strategy x relabel mode x cover share) over `cfg.seeds` seeds. The test set is
    clustered once (`core.coverage.cluster_embeddings`, seed 0), so every arm's worst-cluster
    accuracy is measured on one partition. `X_production`: what coverage aims at (default: the test set)."""
    cfg.check()
    y, y_test = np.asarray(y, dtype=str), np.asarray(y_test, dtype=str)
    full = model_lib.train(X, list(y))
    full_predicted = full.predict(X_test)
    full_accuracy = float(accuracy_score(y_test, full_predicted))
    test_clusters = cluster_embeddings(X_test, seed=0).labels
    runs, arms = [], []
    for name in cfg.strategies:
        for mode in cfg.modes:
            for share in cfg.shares:
                arms.append(cfg.arm(name, mode, share))
                for seed in range(cfg.seeds):
                    runs.append({**run_once(X, y, X_test, y_test, name, seed, cfg, relabel=mode, cover_share=share,
                                            X_production=X_production, test_clusters=test_clusters),
                                 "arm": arms[-1]})
                    if progress:
                        progress(1)
    result = summarise(runs, full_accuracy, arms, budgets(cfg))
    worst, decile = cluster_accuracy(full_predicted == y_test, test_clusters)
    result["full_data_worst_cluster_accuracy"], result["full_data_bottom_decile_accuracy"] = worst, decile
    result["test_clusters"] = int(test_clusters.max()) + 1
    result["config"] = {"batch": cfg.batch, "budget": cfg.budget, "seeds": cfg.seeds, "annotators": cfg.annotators,
                        "overlap": cfg.overlap, "annotator_error": list(cfg.annotator_error),
                        "spammers": cfg.spammers, "relabel": cfg.modes, "cover_share": cfg.shares,
                        "production": len(X_test) if X_production is None else len(X_production),
                        "aggregation": DEFAULT_METHOD,
                        "stop_rule": vars(cfg.stop_rule), "pool": len(y), "test": len(y_test)}
    return result


def simulate_files(ctx, data: str | Path, test: str | Path, cfg: SimConfig, *, text_field: str = "text",
                   label_field: str = "label", progress: Progress = no_progress,
                   production: str | Path | None = None) -> dict:
    """`loop simulate`: read a labelled pool and a labelled test file, embed both through the cache
    (once per text), and replay the loop on them. `production`: what `--cover-share` aims at (a
    file of texts, as `next-round --cover` reads it; default: the test file)."""
    cfg.check()
    X_production = None
    if production is not None:
        from loop.workflows.coverage import read_production

        _, X_production = read_production(ctx, production, text_field=text_field)
    pool = read_items(data, text_field=text_field, label_field=label_field)
    held = read_items(test, text_field=text_field, label_field=label_field)
    for name, path, rows in (("pool", data, pool), ("test", test, held)):
        missing = [i.id for i in rows if i.label is None]
        if missing:
            raise DataError(f"{path}: {len(missing)} {name} rows have no {label_field!r} (e.g. {missing[0]}); "
                            "simulation needs every row labelled")
    X, _ = embed_texts([i.text for i in pool], ctx.cache, ctx.embedder, progress=progress("embedding pool", len(pool)))
    X_test, _ = embed_texts([i.text for i in held], ctx.cache, ctx.embedder,
                            progress=progress("embedding test", len(held)))
    return simulate(X, [i.label for i in pool], X_test, [i.label for i in held], cfg,
                    progress=progress("simulating", len(cfg.strategies) * len(cfg.modes) * len(cfg.shares) * cfg.seeds),
                    X_production=X_production)


def legend_label(name: str, entry: dict) -> str:
    """An arm's name with its labels to 98% of full-data accuracy, their ratios to random and to
    plain margin (where measured) and its AUC: what the plot's legend shows."""
    parts = [f"98% at {entry['labels_to_98']:.0f}" if entry.get("labels_to_98") is not None else "98% not reached"]
    for reference in ("random", "margin"):
        value = entry.get(f"labels_to_98_ratio_to_{reference}")
        if value is not None and entry["strategy"] != reference:
            parts.append(f"{value:.2f}x {reference}")
    if entry.get("auc") is not None:
        parts.append(f"AUC {entry['auc']:.3f}")
    return f"{name} ({', '.join(parts)})"


def plot(result: dict, path: str, title: str = "") -> None:
    """Two panels over labels bought: the model's test accuracy (dotted: where the stop rule fired)
    and the training labels' accuracy against the truth."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, ax_labels) = plt.subplots(1, 2, figsize=(13, 5))
    full = result["full_data_accuracy"]
    for name, entry in result["strategies"].items():
        x = np.array(entry["labels"])
        for axis, key in ((ax, "accuracy"), (ax_labels, "label_accuracy")):
            mean, std = np.array(entry[f"{key}_mean"]), np.array(entry[f"{key}_std"])
            line, = axis.plot(x, mean, label=legend_label(name, entry))
            axis.fill_between(x, mean - std, mean + std, alpha=0.2, color=line.get_color())
        if entry["stop"]["labels_mean"] is not None:
            ax.axvline(entry["stop"]["labels_mean"], color=line.get_color(), linestyle=":", linewidth=1)
    for frac in (0.95, 0.98):
        ax.axhline(frac * full, color="grey", linestyle="--", linewidth=0.8)
        ax.text(ax.get_xlim()[0], frac * full, f" {int(frac * 100)}% of full data", va="bottom", fontsize=8)
    ax.set_xlabel("labels bought")
    ax.set_ylabel("test accuracy")
    ax.set_title(title or "test accuracy (mean ± sd over seeds; dotted: stop rule)\n"
                          "legend: labels to 98% of full data, x random, x margin; AUC up to the budget", fontsize=10)
    ax.legend(fontsize=8)
    ax_labels.set_xlabel("labels bought")
    ax_labels.set_ylabel("training labels correct (aggregated vs truth)")
    ax_labels.set_title("accuracy of the training labels")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
