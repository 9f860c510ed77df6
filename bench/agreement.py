"""Aggregation methods and agreement measures on real multi-annotator data.

    .venv/bin/python -m bench.agreement                 # both parts, markdown tables
    .venv/bin/python -m bench.agreement --json          # the same numbers as JSON

Part 1, aggregation (weather_sentiment: 1000 tweets, 20 crowd labels each, 5 classes): for k in
--ks, draw k of each item's 20 labels (--draws seeded draws), aggregate the draw by majority vote,
by Dawid-Skene, by majority vote with Dawid-Skene breaking ties and by hierarchical Dawid-Skene
(`loop.labels.aggregation.aggregate` methods "majority", "dawid-skene", "majority-ds",
"hierarchical-ds"), and measure the share of items whose label equals
each reference: majority vote and Dawid-Skene on all 20 labels, CrowdFlower's own aggregate
(items.jsonl `crowdflower_aggregated_label`, a trust-weighted vote of the same 20 labels) and that
aggregate where a second crowd job confirmed it (items.jsonl `label`, 992 items).

Part 1b, the same against a reference that shares no label with the draw: on items with at
least k + 2 labels, the strict majority of the labels not drawn (weather_sentiment, md_agreement,
convabuse; other items keep all their labels as context).

Part 2, agreement (`loop.labels.agreement.agreement_report`) on md_agreement, convabuse, armis and
weather_sentiment, plus how often the two aggregation methods disagree there.

Reads ../shared/data/<name>/annotations.jsonl (and weather_sentiment/items.jsonl). None of these
references is independent gold: bench/aggregation.py measures the methods against expert gold.
"""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np

from loop.labels.aggregation import aggregate, dawid_skene, labels_by_item
from loop.labels.agreement import agreement_report, fleiss_kappa
from loop.labels.label_files import read_label_file

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
METHODS = ("majority", "dawid-skene", "majority-ds", "hierarchical-ds")


def _labels(aggregated: dict) -> dict:
    return {item: d["label"] for item, d in aggregated.items()}


def _agree(pred: dict, ref: dict) -> float:
    common = [k for k in ref if k in pred]
    return float(np.mean([pred[k] == ref[k] for k in common]))


def _draw(by_item: dict[str, list[dict]], k: int, rng: np.random.Generator) -> list[dict]:
    """k labels per item, in the drawn order (so a majority tie goes to a random one of them)."""
    out = []
    for item in sorted(by_item):
        recs = by_item[item]
        out += [recs[j] for j in rng.permutation(len(recs))[:k]]
    return out


def aggregation_part(ks: list[int], draws: int, seed: int, sweep: list[float]) -> dict:
    folder = DATA / "weather_sentiment"
    records = read_label_file(folder / "annotations.jsonl")
    items = [json.loads(line) for line in (folder / "items.jsonl").open(encoding="utf-8")]
    refs = {
        "majority-20": _labels(aggregate(records, "majority")),
        "dawid-skene-20": _labels(aggregate(records, "dawid-skene")),
        "platform": {r["item_id"]: r["crowdflower_aggregated_label"] for r in items
                     if r.get("crowdflower_aggregated_label")},
        "platform-confirmed": {r["item_id"]: r["label"] for r in items if r.get("label")},
    }
    by_item: dict[str, list[dict]] = defaultdict(list)
    for rec in records:
        by_item[rec["item_id"]].append(rec)
    rows = []
    for k in ks:
        scores: dict[str, dict[str, list[float]]] = {m: defaultdict(list) for m in METHODS}
        seconds: dict[str, list[float]] = defaultdict(list)
        extra: dict[str, list[float]] = defaultdict(list)
        for d in range(draws):
            sub = _draw(by_item, k, np.random.default_rng([seed, k, d]))
            out = {}
            for m in METHODS:
                start = time.perf_counter()
                out[m] = aggregate(sub, m)
                seconds[m].append(time.perf_counter() - start)
                labels = _labels(out[m])
                for name, ref in refs.items():
                    scores[m][name].append(_agree(labels, ref))
            extra["ds_converged"].append(float(dawid_skene(sub).converged))
            extra["tie_share"].append(np.mean([d["decided_by"] == "tie-break" for d in out["majority"].values()]))
            extra["ds_differs_from_majority"].append(1 - _agree(_labels(out["dawid-skene"]), _labels(out["majority"])))
        context = {n: float(np.mean(v)) for n, v in extra.items()}
        for m in METHODS:
            rows.append({"k": k, "method": m, "draws": draws, "seconds": float(np.mean(seconds[m])),
                         **{name: {"mean": float(np.mean(v)), "sd": float(np.std(v))} for name, v in scores[m].items()},
                         "context": context})
    full_labels = {"majority": refs["majority-20"], "dawid-skene": refs["dawid-skene-20"],
                   "majority-ds": _labels(aggregate(records, "majority-ds")),
                   "hierarchical-ds": _labels(aggregate(records, "hierarchical-ds"))}
    full = {m: {name: _agree(full_labels[m], ref) for name, ref in refs.items()} for m in METHODS}
    # Dawid-Skene's one free parameter, on the same draws (dawid_skene called directly).
    sensitivity = []
    for s in sweep:
        row = {"smoothing": s}
        for k in ks + [20]:
            vals = []
            for d in range(draws if k < 20 else 1):
                sub = records if k == 20 else _draw(by_item, k, np.random.default_rng([seed, k, d]))
                model = dawid_skene(sub, smoothing=s)
                labels = {it: model.classes[int(model.posteriors[i].argmax())] for i, it in enumerate(model.items)}
                vals.append(_agree(labels, refs["platform"]))
            row[str(k)] = float(np.mean(vals))
        sensitivity.append(row)
    return {"dataset": "weather_sentiment", "references": {n: len(r) for n, r in refs.items()},
            "rows": rows, "full": full, "smoothing_sensitivity": sensitivity}


def heldout_part(plan: list[tuple[str, int]], draws: int, seed: int) -> list[dict]:
    """Aggregate k drawn labels per item and compare with the majority of the item's other labels.

    The reference shares no label with what is aggregated, unlike the full-crowd ones. Items with
    at least k + 2 labels are evaluated (those whose held-out labels have a strict majority);
    other items keep all their labels, as context for Dawid-Skene's annotator estimates.
    """
    out = []
    cache: dict[str, dict] = {}
    for name, k in plan:
        if name not in cache:
            grouped = labels_by_item(read_label_file(DATA / name / "annotations.jsonl"))  # one label per annotator
            cache[name] = {item: [{"item_id": item, "annotator": a, "label": lab} for a, lab in labs]
                           for item, labs in grouped.labels.items()}
        by_item = cache[name]
        scores: dict[str, list[float]] = defaultdict(list)
        n_eval = []
        for d in range(draws):
            rng = np.random.default_rng([seed, k, d, 1])
            sub, ref = [], {}
            for item in sorted(by_item):
                recs = by_item[item]
                if len(recs) < k + 2:
                    sub += recs
                    continue
                order = rng.permutation(len(recs))
                sub += [recs[j] for j in order[:k]]
                held = Counter(recs[j]["label"] for j in order[k:]).most_common()
                if len(held) == 1 or held[0][1] > held[1][1]:
                    ref[item] = held[0][0]
            n_eval.append(len(ref))
            for m in METHODS:
                scores[m].append(_agree(_labels(aggregate(sub, m)), ref))
        out.append({"dataset": name, "k": k, "draws": draws, "eval_items": float(np.mean(n_eval)),
                    **{m: {"mean": float(np.mean(v)), "sd": float(np.std(v))} for m, v in scores.items()}})
    return out


def agreement_part(names: list[str]) -> list[dict]:
    out = []
    for name in names:
        records = read_label_file(DATA / name / "annotations.jsonl")
        start = time.perf_counter()
        rep = agreement_report(records)
        seconds = time.perf_counter() - start
        row = {"dataset": name, "seconds": seconds,
               **{k: rep[k] for k in ("n_records", "n_items", "n_annotators", "labels_per_item",
                                      "duplicates_dropped", "percent_agreement", "krippendorff_alpha",
                                      "fleiss_kappa", "warnings")},
               "cohen_kappa": {k: v for k, v in rep["cohen_kappa"].items() if k != "pairs"},
               "top_confusion": rep["confusions"][0] if rep["confusions"] else None}
        if rep["fleiss_kappa"]["value"] is None and rep["labels_per_item"]:
            # Fleiss on the items with the most common number of labels, clearly marked as a subset.
            grouped = labels_by_item(records)
            sizes = defaultdict(int)
            for labs in grouped.labels.values():
                sizes[len(labs)] += 1
            mode = max(sizes, key=lambda s: (sizes[s], s))
            keep = {it for it, labs in grouped.labels.items() if len(labs) == mode}
            latest = [{"item_id": it, "annotator": a, "label": lab}
                      for it, labs in grouped.labels.items() if it in keep for a, lab in labs]
            row["fleiss_subset"] = {**fleiss_kappa(latest), "labels_per_item": mode}
        maj, ds = _labels(aggregate(records, "majority")), _labels(aggregate(records, "dawid-skene"))
        row["methods_differ"] = 1 - _agree(ds, maj)
        out.append(row)
    return out


def _f(x, nd=3):
    return "n/a" if x is None else f"{x:.{nd}f}"


def print_markdown(agg: dict, heldout: list[dict], agr: list[dict]) -> None:
    refs = ["majority-20", "dawid-skene-20", "platform", "platform-confirmed"]
    print(f"Aggregation on {agg['dataset']} (agreement with each reference; mean ± sd over draws)\n")
    print("| labels/item | method | vs " + " | vs ".join(refs) + " | s |")
    print("|---:|---|" + "---:|" * len(refs) + "---:|")
    for r in agg["rows"]:
        cells = " | ".join(f"{r[n]['mean']:.3f} ± {r[n]['sd']:.3f}" for n in refs)
        print(f"| {r['k']} | {r['method']} | {cells} | {r['seconds']:.2f} |")
    for m, vals in agg["full"].items():
        print(f"| 20 (all) | {m} | " + " | ".join(f"{vals[n]:.3f}" for n in refs) + " | |")
    print("\n| labels/item | items tied (majority) | Dawid-Skene differs from majority | Dawid-Skene converged |")
    print("|---:|---:|---:|---:|")
    seen = set()
    for r in agg["rows"]:
        if r["k"] in seen:
            continue
        seen.add(r["k"])
        c = r["context"]
        print(f"| {r['k']} | {c['tie_share']:.3f} | {c['ds_differs_from_majority']:.3f} | {c['ds_converged']:.1f} |")
    if heldout:
        print("\nAgainst the majority of the held-out labels (mean ± sd over draws)\n")
        print("| dataset | labels drawn | items evaluated | " + " | ".join(METHODS) + " |")
        print("|---|---:|---:|" + "---:|" * len(METHODS))
        for r in heldout:
            print(f"| {r['dataset']} | {r['k']} | {r['eval_items']:.0f} | "
                  + " | ".join(f"{r[m]['mean']:.3f} ± {r[m]['sd']:.3f}" for m in METHODS) + " |")
    print("\nDawid-Skene smoothing vs platform aggregate (mean over draws)\n")
    ks = [k for k in agg["smoothing_sensitivity"][0] if k != "smoothing"] if agg["smoothing_sensitivity"] else []
    if ks:
        print("| smoothing | " + " | ".join(f"k={k}" for k in ks) + " |")
        print("|---:|" + "---:|" * len(ks))
        for r in agg["smoothing_sensitivity"]:
            print(f"| {r['smoothing']} | " + " | ".join(f"{r[k]:.3f}" for k in ks) + " |")
    print("\nAgreement\n")
    print("| dataset | items | labels | annotators | labels/item | alpha | % agreement | kappa mean (pairs) "
          "| kappa weighted | kappa mean, pairs >= 20 items | Fleiss | DS differs from majority | report s |")
    print("|---|---:|---:|---:|---|---:|---:|---:|---:|---:|---|---:|---:|")
    for r in agr:
        lpi = r["labels_per_item"]
        k = r["cohen_kappa"]
        fl = r["fleiss_kappa"]
        if fl["value"] is not None:
            fleiss = _f(fl["value"])
        elif "fleiss_subset" in r and r["fleiss_subset"]["value"] is not None:
            sub = r["fleiss_subset"]
            fleiss = f"undefined; {_f(sub['value'])} on the {sub['n_items']} items with {sub['labels_per_item']}"
        else:
            fleiss = "undefined"
        print(f"| {r['dataset']} | {r['n_items']} | {r['n_records']} | {r['n_annotators']} | "
              f"{lpi['min']}-{lpi['max']} | {_f(r['krippendorff_alpha']['value'])} | "
              f"{_f(r['percent_agreement']['value'])} | {_f(k['mean'])} ({k['n_defined']}/{k['n_pairs']}) | "
              f"{_f(k['weighted_mean'])} | {_f(k['mean_min_items'])} ({k['n_min_items']}) | {fleiss} | "
              f"{r['methods_differ']:.3f} | {r['seconds']:.1f} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ks", default="2,3,5,10", help="labels per item to draw (weather_sentiment has 20)")
    ap.add_argument("--draws", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--smoothing", default="0.1,1,3", help="Dawid-Skene smoothing values to compare ('' to skip)")
    ap.add_argument("--heldout", default="weather_sentiment:2,weather_sentiment:3,weather_sentiment:5,"
                    "weather_sentiment:10,md_agreement:2,md_agreement:3,convabuse:2",
                    help="dataset:k pairs for the held-out-majority comparison ('' to skip)")
    ap.add_argument("--datasets", default="md_agreement,convabuse,armis,weather_sentiment")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    start = time.perf_counter()
    agg = aggregation_part([int(k) for k in args.ks.split(",")], args.draws, args.seed,
                           [float(s) for s in args.smoothing.split(",") if s])
    plan = [(p.split(":")[0], int(p.split(":")[1])) for p in args.heldout.split(",") if p]
    heldout = heldout_part(plan, args.draws, args.seed)
    agr = agreement_part(args.datasets.split(","))
    if args.json:
        print(json.dumps({"aggregation": agg, "heldout": heldout, "agreement": agr}, indent=1))
    else:
        print_markdown(agg, heldout, agr)
        print(f"\nTotal {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
