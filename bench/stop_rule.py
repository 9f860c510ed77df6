"""Where the stop rule fires (issue 15): replay `loop simulate` runs of the default strategy, keep
each round's kappa and test accuracy, and evaluate stop rules on them offline.

    OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 nice -n 10 .venv/bin/python -m bench.stop_rule \\
        --dataset trec --seeds 3 --batch 25 --budget 2500
    # the noisy default simulation: 3 annotators 0.05/0.1/0.3, overlap 2
    ... --dataset trec --seeds 3 --batch 50 --budget 4000 --annotators 3 --overlap 2 --annotator-error 0.05,0.1,0.3

Each run is `loop.workflows.simulate.run_once` (the code behind `loop simulate`); the kappas do not
depend on the stop rule, so one replay scores every rule in `RULES`: for each, the labels and the
accuracy (as a share of full-data accuracy) where it first fires, and the labels spent after the
run first reached 98% of full. Writes docs/bench/stop-<dataset>[-noisy].json (the raw series too).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from loop.core import model as model_lib
from loop.core.stopping import StabilizingPredictions
from loop.workflows.simulate import SimConfig, labels_to_reach, run_once

REPO = Path(__file__).resolve().parents[1]

# (rule, whether it is given the label counts): per round (kappa >= threshold, as first published)
# and per label ((1 - kappa) / labels added <= rate, the default since issue 15)
RULES = {f"kappa>={t} over {w}": (StabilizingPredictions(threshold=t, window=w), False)
         for t in (0.99, 0.995, 0.998) for w in (3, 5, 8)}
RULES |= {f"per label<={r:g} over {w}": (StabilizingPredictions(window=w, disagreement_per_label=r), True)
          for r in (1.5e-4, 1.75e-4, 2e-4, 2.25e-4, 2.5e-4, 3e-4) for w in (3, 5, 8, 10, 12)}


def fires(rule, per_label: bool, kappas: list, curve: list) -> dict | None:
    """Where `rule` first says stop when fed the run's kappas (and label counts) round by round."""
    labels = [n for n, _ in curve]
    for i in range(len(kappas)):
        if rule(kappas[: i + 1], labels[: i + 1] if per_label else None).stop:
            return {"labels": curve[i][0], "accuracy": curve[i][1], "round": i}
    return None


def score(runs: list[dict], full: float) -> dict:
    out = {}
    for name, (rule, per_label) in RULES.items():
        rows = []
        for r in runs:
            hit = fires(rule, per_label, r["kappas"], r["curve"])
            at98 = labels_to_reach(r["curve"], 0.98 * full)
            rows.append({"fired": hit is not None, "labels": hit and hit["labels"],
                         "share_of_full": hit and round(hit["accuracy"] / full, 4),
                         "reached_98_at": at98,
                         "after_98": None if hit is None or at98 is None else hit["labels"] - at98})
        fired = [x for x in rows if x["fired"]]
        out[name] = {"fired": len(fired), "of": len(rows),
                     "labels_mean": float(np.mean([x["labels"] for x in fired])) if fired else None,
                     "share_of_full_mean": float(np.mean([x["share_of_full"] for x in fired])) if fired else None,
                     "within_2pct": sum(x["share_of_full"] >= 0.98 for x in fired), "per_seed": rows}
    return out


def main() -> None:
    from bench.label_efficiency import embedded

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", default="trec")
    ap.add_argument("--strategy", default="margin-diverse")
    ap.add_argument("--batch", type=int, default=25)
    ap.add_argument("--budget", type=int, default=2500)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--annotators", type=int, default=1)
    ap.add_argument("--overlap", type=int, default=1)
    ap.add_argument("--annotator-error", default="0")
    ap.add_argument("--rescore", action="store_true", help="score RULES on the saved runs of the JSON, no replay")
    args = ap.parse_args()
    noisy = args.annotator_error != "0"
    out = REPO / "docs" / "bench" / f"stop-{args.dataset}{'-noisy' if noisy else ''}.json"
    if args.rescore:
        result = json.loads(out.read_text())
        result["rules"] = score(result["runs"], result["full_data_accuracy"])
        out.write_text(json.dumps(result, indent=1))
        return report(result, noisy)
    X, y, X_test, y_test = embedded(args.dataset)
    y, y_test = np.asarray(y, dtype=str), np.asarray(y_test, dtype=str)
    full = float((model_lib.train(X, list(y)).predict(X_test) == y_test).mean())
    cfg = SimConfig(strategies=[args.strategy], batch=args.batch, budget=args.budget, seeds=args.seeds,
                    annotators=args.annotators, overlap=args.overlap,
                    annotator_error=[float(e) for e in args.annotator_error.split(",")], relabel=["off"])
    cfg.check()
    start = time.perf_counter()
    runs = []
    for seed in range(args.seeds):
        r = run_once(X, y, X_test, y_test, args.strategy, seed, cfg, relabel="off")
        runs.append({"seed": seed, "kappas": r["kappas"], "curve": r["curve"]})
        print(f"seed {seed} done ({time.perf_counter() - start:.0f} s)", flush=True)
    result = {"dataset": args.dataset, "full_data_accuracy": full, "config": vars(args),
              "seconds": round(time.perf_counter() - start, 1), "rules": score(runs, full), "runs": runs}
    out.write_text(json.dumps(result, indent=1))
    report(result, noisy)


def report(result: dict, noisy: bool) -> None:
    print(f"{result['dataset']}{' noisy' if noisy else ''}: full {result['full_data_accuracy']:.3f} "
          f"({result['seconds']} s)")
    for name, e in result["rules"].items():
        print(f"{name:>28}: fired {e['fired']}/{e['of']} at {e['labels_mean']} labels, "
              f"{e['share_of_full_mean']} of full, within 2%: {e['within_2pct']}; per seed "
              + ", ".join(f"{x['labels']}/{x['share_of_full']}/after98 {x['after_98']}" for x in e["per_seed"]))


if __name__ == "__main__":
    main()
