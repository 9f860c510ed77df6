"""Coverage-aware rounds (`next-round --cover`): what they cost or gain in accuracy and in worst-cluster accuracy.

    nice -n 10 .venv/bin/python -m bench.cover --setting banking77-shift --seeds 3

`loop simulate`'s replay (`loop.workflows.simulate.simulate`) with --cover-share 0 against 0.2,
on ../shared/data (train = the pool, test = held out), embedded once into the repository's cache.
Settings:

- `banking77`: production = the test set's texts as they are (40 per intent, while the pool has
  35-187 per intent: a mild natural shift).
- `banking77-shift`: a planted gap. 10 intents (seeded choice) keep only 10% of their training
  rows in the pool, and production sends each of their test texts 3 times (so those intents are
  25% of production and about 1.5% of the pool). Accuracy is measured on the plain test set.
- `trec`: production = trec's test texts (its question types in other proportions than the pool).

Per arm: test accuracy, worst-cluster and bottom-decile accuracy (the test set in
`choose_k` clusters, `loop.core.coverage`), at the whole budget and as AUC (mean over the budget);
mean and sd over seeds. Writes docs/bench/cover-<setting>.json.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from bench.label_efficiency import embedded
from loop.core import cover as cover_lib
from loop.workflows.simulate import SimConfig, simulate

REPO = Path(__file__).resolve().parents[1]
SETTINGS = {"banking77": ("banking77", 1000, 50), "banking77-shift": ("banking77", 1000, 50), "trec": ("trec", 600, 30)}


def shifted(X, y, X_test, y_test, seed: int = 0, intents: int = 10, keep: float = 0.1, repeat: int = 3):
    """The planted gap: `intents` intents keep `keep` of their pool rows; production repeats their test rows."""
    rng = np.random.default_rng(seed)
    y, y_test = np.asarray(y), np.asarray(y_test)
    rare = rng.choice(np.unique(y), size=intents, replace=False)
    drop = np.zeros(len(y), dtype=bool)
    for c in rare:
        rows = np.flatnonzero(y == c)
        drop[rng.choice(rows, size=len(rows) - max(1, int(keep * len(rows))), replace=False)] = True
    in_rare = np.isin(y_test, rare)
    X_prod = np.concatenate([X_test] + [X_test[in_rare]] * (repeat - 1))
    return X[~drop], y[~drop], X_prod, sorted(rare.tolist())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--setting", choices=sorted(SETTINGS), default="banking77-shift")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--shares", default="0,0.2")
    ap.add_argument("--strategy", default="margin-diverse")
    ap.add_argument("--budget", type=int)
    ap.add_argument("--batch", type=int)
    ap.add_argument("--tag", default="", help="appended to the output file's name")
    ap.add_argument("--negative-part", type=float, help="the part of the cover picks for negative-looking items "
                    "(default: loop.core.cover.NEGATIVE_PART, 0.25); 0 for the gap picks alone")
    args = ap.parse_args()
    dataset, budget, batch = SETTINGS[args.setting]
    if args.negative_part is not None:
        cover_lib.NEGATIVE_PART = args.negative_part
    X, y, X_test, y_test = embedded(dataset)
    X_prod, rare = None, None
    if args.setting == "banking77-shift":
        X, y, X_prod, rare = shifted(X, y, X_test, y_test)
    cfg = SimConfig(strategies=args.strategy.split(","), batch=args.batch or batch, budget=args.budget or budget,
                    seeds=args.seeds, annotators=1, overlap=1, annotator_error=[0.0], relabel=["off"],
                    cover_share=[float(s) for s in args.shares.split(",")])
    started = time.time()
    result = simulate(X, y, X_test, y_test, cfg, X_production=X_prod)
    result["seconds"] = round(time.time() - started, 1)
    result["setting"], result["planted_rare_intents"] = args.setting, rare
    result["negative_part"] = cover_lib.NEGATIVE_PART
    out = REPO / "docs" / "bench" / f"cover-{args.setting}{'-' + args.tag if args.tag else ''}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    print(f"{args.setting}: pool {len(y)}, test {len(y_test)}, production {result['config']['production']}, "
          f"{result['test_clusters']} test clusters, budget {cfg.budget} labels in rounds of {cfg.batch}, "
          f"{cfg.seeds} seeds, {result['seconds']} s; full data: accuracy {result['full_data_accuracy']:.3f}, "
          f"worst cluster {result['full_data_worst_cluster_accuracy']:.3f}, "
          f"bottom decile {result['full_data_bottom_decile_accuracy']:.3f}")
    print(table(result))


def _last(entry: dict, key: str) -> str:
    return f"{entry[f'{key}_mean'][-1]:.3f} ± {entry[f'{key}_std'][-1]:.3f}"


def table(result: dict) -> str:
    """The markdown table of docs/benchmarks.md: per arm, at the whole budget and as AUC."""
    rows = ["| arm | cover picks | accuracy | worst cluster | bottom decile | AUC | worst-cluster AUC | "
            "bottom-decile AUC |", "|---|---|---|---|---|---|---|---|"]
    for name, e in result["strategies"].items():
        rows.append(f"| {name} | {e['covered_mean']:.0f} | {_last(e, 'accuracy')} | "
                    f"{_last(e, 'worst_cluster_accuracy')} | {_last(e, 'bottom_decile_accuracy')} | {e['auc']:.3f} | "
                    f"{e['worst_cluster_auc']:.3f} | {e['bottom_decile_auc']:.3f} |")
    return "\n".join(rows)

if __name__ == "__main__":
    main()
