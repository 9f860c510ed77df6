"""`loop simulate`: replay the loop on an already-labelled dataset, with simulated annotators.

Each simulated annotator answers the true label, flipped to a random wrong label at their error
rate. Everything else is the real loop's code: `core.assign` spreads items over annotators,
`labels.aggregation.aggregate` (the default method) turns several labels into one,
`core.learning.choose_batch` trains and selects, `core.learning.measure_round` and
`core.stopping.StabilizingPredictions` decide when to stop.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
from sklearn.metrics import accuracy_score

from loop.core import model as model_lib
from loop.core.assign import assign
from loop.core.dataset import read_items
from loop.core.embeddings import embed_texts
from loop.core.learning import choose_batch, measure_round
from loop.core.stopping import STOP_SET_SIZE, StabilizingPredictions
from loop.core.strategies import get_strategy
from loop.errors import ConfigError, DataError
from loop.labels.aggregation import DEFAULT_METHOD, aggregate
from loop.workflows.progress import Progress, no_progress


@dataclass(frozen=True)
class SimConfig:
    strategies: Sequence[str]
    batch: int = 50
    budget: int = 3000          # labels (annotations) bought, as in `next-round --budget`
    seeds: int = 3
    annotators: int = 3
    overlap: int = 2
    annotator_error: Sequence[float] = (0.0,)
    stop_rule: StabilizingPredictions = field(default_factory=StabilizingPredictions)

    def check(self) -> None:
        for name in self.strategies:
            get_strategy(name)
        if self.batch < 1 or self.budget < self.overlap or self.seeds < 1:
            raise ConfigError("--batch and --seeds must be at least 1, and --budget at least --overlap")
        if not 1 <= self.overlap <= self.annotators:
            raise ConfigError(f"--overlap {self.overlap} must be between 1 and --annotators ({self.annotators})")
        if any(not 0 <= e < 1 for e in self.annotator_error):
            raise ConfigError("--annotator-error rates must be in [0, 1)")


def _answer(truth: str, error: float, classes: np.ndarray, rng: np.random.Generator) -> str:
    if rng.random() >= error:
        return truth
    return str(rng.choice([c for c in classes if c != truth]))


def run_once(X: np.ndarray, y: np.ndarray, X_test: np.ndarray, y_test: np.ndarray, strategy: str, seed: int,
             cfg: SimConfig) -> dict:
    """One replay: the learning curve (labels bought vs test accuracy), kappas and the stop point."""
    rng = np.random.default_rng(seed)
    classes = np.unique(y)
    people = [f"sim{i}" for i in range(cfg.annotators)]
    error = {p: cfg.annotator_error[i % len(cfg.annotator_error)] for i, p in enumerate(people)}
    stop_idx = rng.choice(len(X), size=min(STOP_SET_SIZE, len(X)), replace=False)
    labels: dict[int, list[str]] = {}
    spent, previous = 0, None
    curve, kappas, stop_at = [], [], None
    pool = np.arange(len(X))
    round_no = 0
    while True:
        lab = np.fromiter(labels, dtype=np.int64)
        agreed = _agreed(labels)
        y_lab = [agreed[i] for i in lab]
        room = (cfg.budget - spent) // cfg.overlap
        size = min(cfg.batch, room, len(pool))
        batch = choose_batch(X[lab], y_lab, X[pool], max(size, 1), strategy, seed=seed * 10_000 + round_no)
        clf = batch.classifier
        if clf is not None:
            m = measure_round(clf, previous, X[stop_idx], None, None, n_labels=spent)
            acc = float(accuracy_score(y_test, clf.predict(X_test)))
            curve.append((spent, acc))
            kappas.append(m.kappa)
            decision = cfg.stop_rule(kappas)
            if decision.stop and stop_at is None:
                stop_at = {"labels": spent, "accuracy": acc, "round": round_no, "kappa": decision.value}
            previous = clf
        if size < 1:
            break
        picked = pool[batch.picked[:size]]
        for item, who in assign([str(i) for i in picked], people, cfg.overlap).items():
            labels[int(item)] = [(p, _answer(str(y[int(item)]), error[p], classes, rng)) for p in who]
        spent += len(picked) * cfg.overlap
        pool = np.setdiff1d(pool, picked, assume_unique=True)
        round_no += 1
    return {"strategy": strategy, "seed": seed, "curve": curve, "kappas": kappas, "stop": stop_at,
            "label_noise": _label_noise(labels, y)}


def _agreed(labels: dict[int, list[tuple[str, str]]]) -> dict[int, str]:
    """One label per item from the simulated (annotator, label) votes, as the real loop aggregates."""
    records = [{"item_id": i, "annotator": who, "label": label} for i, votes in labels.items() for who, label in votes]
    return {i: v["label"] for i, v in aggregate(records, DEFAULT_METHOD).items()}


def _label_noise(labels: dict[int, list[tuple[str, str]]], y: np.ndarray) -> float:
    """Share of items whose aggregated label is wrong."""
    agreed = _agreed(labels)
    return float(np.mean([agreed[i] != str(y[i]) for i in labels])) if labels else 0.0


def labels_to_reach(curve: Sequence[tuple[int, float]], target: float) -> int | None:
    for labels, acc in curve:
        if acc >= target:
            return labels
    return None


def summarise(runs: list[dict], full_accuracy: float, strategies: Sequence[str]) -> dict:
    out: dict = {"full_data_accuracy": full_accuracy, "strategies": {}}
    for name in strategies:
        mine = [r for r in runs if r["strategy"] == name]
        length = min(len(r["curve"]) for r in mine)
        labels = [mine[0]["curve"][i][0] for i in range(length)]
        accs = np.array([[r["curve"][i][1] for i in range(length)] for r in mine])
        entry = {"labels": labels, "accuracy_mean": accs.mean(axis=0).round(4).tolist(),
                 "accuracy_std": accs.std(axis=0).round(4).tolist(), "seeds": len(mine)}
        for frac in (0.95, 0.98):
            reached = [labels_to_reach(r["curve"], frac * full_accuracy) for r in mine]
            ok = [v for v in reached if v is not None]
            entry[f"labels_to_{int(frac * 100)}"] = float(np.mean(ok)) if len(ok) == len(reached) else None
            entry[f"labels_to_{int(frac * 100)}_per_seed"] = reached
        stops = [r["stop"] for r in mine]
        fired = [s for s in stops if s]
        entry["stop"] = {"fired": len(fired), "of": len(stops),
                         "labels_mean": float(np.mean([s["labels"] for s in fired])) if fired else None,
                         "accuracy_mean": float(np.mean([s["accuracy"] for s in fired])) if fired else None,
                         "per_seed": stops}
        entry["label_noise_mean"] = float(np.mean([r["label_noise"] for r in mine]))
        out["strategies"][name] = entry
    if "random" in out["strategies"]:
        base = out["strategies"]["random"]
        for entry in out["strategies"].values():
            for key in ("labels_to_95", "labels_to_98"):
                entry[f"{key}_ratio_to_random"] = (round(entry[key] / base[key], 3)
                                                   if entry[key] and base[key] else None)
    return out


def simulate(X: np.ndarray, y: Sequence[str], X_test: np.ndarray, y_test: Sequence[str], cfg: SimConfig,
             progress: Callable[[int], None] | None = None) -> dict:
    cfg.check()
    y, y_test = np.asarray(y, dtype=str), np.asarray(y_test, dtype=str)
    full = model_lib.train(X, list(y))
    full_accuracy = float(accuracy_score(y_test, full.predict(X_test)))
    runs = []
    for name in cfg.strategies:
        for seed in range(cfg.seeds):
            runs.append(run_once(X, y, X_test, y_test, name, seed, cfg))
            if progress:
                progress(1)
    result = summarise(runs, full_accuracy, cfg.strategies)
    result["config"] = {"batch": cfg.batch, "budget": cfg.budget, "seeds": cfg.seeds, "annotators": cfg.annotators,
                        "overlap": cfg.overlap, "annotator_error": list(cfg.annotator_error),
                        "stop_rule": vars(cfg.stop_rule), "pool": len(y), "test": len(y_test)}
    return result


def simulate_files(ctx, data: str | Path, test: str | Path, cfg: SimConfig, *, text_field: str = "text",
                   label_field: str = "label", progress: Progress = no_progress) -> dict:
    """`loop simulate`: read a labelled pool and a labelled test file, embed both through the cache
    (once per text), and replay the loop on them."""
    cfg.check()
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
                    progress=progress("simulating", len(cfg.strategies) * cfg.seeds))


def plot(result: dict, path: str, title: str = "") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5))
    full = result["full_data_accuracy"]
    for name, entry in result["strategies"].items():
        x, mean, std = np.array(entry["labels"]), np.array(entry["accuracy_mean"]), np.array(entry["accuracy_std"])
        line, = ax.plot(x, mean, label=name)
        ax.fill_between(x, mean - std, mean + std, alpha=0.2, color=line.get_color())
        if entry["stop"]["labels_mean"] is not None:
            ax.axvline(entry["stop"]["labels_mean"], color=line.get_color(), linestyle=":", linewidth=1)
    for frac in (0.95, 0.98):
        ax.axhline(frac * full, color="grey", linestyle="--", linewidth=0.8)
        ax.text(ax.get_xlim()[0], frac * full, f" {int(frac * 100)}% of full data", va="bottom", fontsize=8)
    ax.set_xlabel("labels bought")
    ax.set_ylabel("test accuracy")
    ax.set_title(title or "loop simulate: learning curves (mean ± sd over seeds; dotted: stop rule)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
