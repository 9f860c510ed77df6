"""Relabel or label new: `loop simulate --relabel auto,off` on real data with noisy annotators.

    .venv/bin/python -m bench.relabel --dataset trec --crowd noisy
    .venv/bin/python -m bench.relabel --dataset trec --crowd spammer

Crowds (3 annotators, 2 labels per new item, as `loop simulate`'s defaults):
  noisy    error rates 0.05, 0.1, 0.3
  spammer  error rates 0.05, 0.1, and the third answers at random

Both modes face the same annotators giving the same answers (drawn once per seed), so the gap is
the relabelling alone. Writes docs/bench/relabel-<dataset>-<crowd>.json and .png and prints the
markdown rows of docs/benchmarks.md ("Relabel or label new").
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from bench.label_efficiency import REPO, embedded
from loop.core.strategies import DEFAULT_STRATEGY
from loop.workflows.simulate import SimConfig, plot, simulate, value_at

CROWDS = {"noisy": ([0.05, 0.1, 0.3], 0), "spammer": ([0.05, 0.1, 0.0], 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", default="trec")
    ap.add_argument("--crowd", choices=sorted(CROWDS), default="noisy")
    ap.add_argument("--strategy", default=DEFAULT_STRATEGY)
    ap.add_argument("--batch", type=int, default=25)
    ap.add_argument("--budget", type=int, default=3000)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--every", type=int, default=500, help="Print the table at every this many labels.")
    ap.add_argument("--out", default=str(REPO / "docs" / "bench"))
    args = ap.parse_args()

    X, y, X_test, y_test = embedded(args.dataset)
    errors, spammers = CROWDS[args.crowd]
    cfg = SimConfig(strategies=[args.strategy], batch=args.batch, budget=args.budget, seeds=args.seeds,
                    annotators=3, overlap=2, annotator_error=errors, spammers=spammers, relabel=["auto", "off"])
    start = time.perf_counter()
    result = simulate(X, y, X_test, y_test, cfg)
    result["seconds"] = round(time.perf_counter() - start, 1)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    name = f"relabel-{args.dataset}-{args.crowd}"
    (out / f"{name}.json").write_text(json.dumps(result, indent=1))
    plot(result, str(out / f"{name}.png"), title=f"{args.dataset}, {args.crowd} crowd: test accuracy vs labels")

    auto, off = (result["strategies"][cfg.arm(args.strategy, m)] for m in ("auto", "off"))
    full = result["full_data_accuracy"]
    print(f"{args.dataset}, {args.crowd} crowd: full-data accuracy {full:.3f} ({result['seconds']} s); "
          f"relabels bought (auto): {auto['relabelled_mean']:.0f}")
    print("| labels | training labels correct, auto | off | test accuracy, auto | off |")
    print("|---:|---:|---:|---:|---:|")
    for budget in sorted({*range(args.every, args.budget + 1, args.every), args.budget}):
        row = [_mean_at(e, key, budget) for e in (auto, off) for key in ("label_accuracy_mean",)]
        row += [_mean_at(e, key, budget) for e in (auto, off) for key in ("accuracy_mean",)]
        print(f"| {budget} | " + " | ".join("-" if v is None else f"{v:.3f}" for v in row) + " |")
    for e, mode in ((auto, "auto"), (off, "off")):
        print(f"{mode}: labels to 95% {e['labels_to_95']} {e['labels_to_95_per_seed']}, "
              f"to 98% {e['labels_to_98']} {e['labels_to_98_per_seed']}; stop {e['stop']['labels_mean']} "
              f"({e['stop']['fired']}/{e['stop']['of']}) at accuracy {e['stop']['accuracy_mean']}")


def _mean_at(entry: dict, key: str, budget: int) -> float | None:
    return value_at(list(zip(entry["labels"], entry[key])), budget)


if __name__ == "__main__":
    main()
